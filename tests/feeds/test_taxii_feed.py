"""medallion 3.0.0 as an external TAXII 2.1 feed: the first run pulls everything page by page, the
next only what was added since, nothing is duplicated, and outages and bad credentials are clear."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from exchange.database.core import session_scope
from exchange.intel.models import ObjectVersion
from feeds.runner import run_feed
from tests.peer.proxy import Proxy
from tests.support.stix import sdo
from tests.support.taxii_peer import start_medallion

USER, PASSWORD = "feeder", "feeder-Secret-9911"
STAMP = "2026-03-01T08:00:00.000Z"


def indicator(n: int) -> dict:
    """An unmarked indicator on the address 192.0.2.`n`."""
    return sdo(
        "indicator",
        None,
        created=STAMP,
        modified=STAMP,
        name=f"bad {n}",
        pattern=f"[ipv4-addr:value = '192.0.2.{n % 250}']",
        pattern_type="stix",
        valid_from=STAMP,
    )


@pytest.fixture
def peer(tmp_path):  # type: ignore[no-untyped-def]
    server = start_medallion(
        tmp_path,
        collections={"intel": [indicator(i) for i in range(23)]},
        users={USER: PASSWORD},
        max_page_size=5,
    )
    yield server
    server.stop()


def _stored(factory, coll) -> int:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        return db.scalar(
            select(func.count()).select_from(ObjectVersion).where(ObjectVersion.collection_pk == coll.pk)
        )


def test_first_run_pulls_all_then_only_what_was_added(peer, feeds, factory, feed_settings) -> None:
    name, coll = feeds.add(
        "taxii21",
        peer.collection_url("intel"),
        tlp="green",
        options={"page_size": 5},
        auth={"username": USER, "password": PASSWORD},
    )
    first = run_feed(factory, feed_settings, name)
    assert first.status == "ok", first.line()
    assert (first.counts["fetched"], first.counts["new"]) == (23, 23)
    assert _stored(factory, coll) == 23
    assert len(feeds.runs(name)) == 1

    added = [indicator(100 + i) for i in range(7)]
    peer.add("intel", added, USER)
    second = run_feed(factory, feed_settings, name)
    assert second.status == "ok", second.line()
    assert (second.counts["fetched"], second.counts["new"]) == (7, 7)
    assert _stored(factory, coll) == 30

    third = run_feed(factory, feed_settings, name)
    assert (third.status, third.counts["fetched"], third.counts["new"]) == ("ok", 0, 0)
    assert _stored(factory, coll) == 30


def test_wrong_credentials_are_a_clear_failure_without_the_password(
    peer, feeds, factory, feed_settings, caplog
) -> None:
    wrong = "wrong-" + PASSWORD
    name, _ = feeds.add("taxii21", peer.collection_url("intel"), auth={"username": USER, "password": wrong})
    result = run_feed(factory, feed_settings, name)
    assert result.status == "failed"
    assert "401" in (result.error or "") and "credentials" in (result.error or "")
    assert wrong not in (result.error or "") and wrong not in caplog.text


def test_an_outage_fails_the_run_and_the_next_run_picks_up(peer, feeds, factory, feed_settings) -> None:
    name, coll = feeds.add(
        "taxii21", peer.collection_url("intel"), auth={"username": USER, "password": PASSWORD}, timeout=5
    )
    assert run_feed(factory, feed_settings, name).counts["new"] == 23
    peer.stop()
    down = run_feed(factory, feed_settings, name)
    assert down.status == "failed" and "cannot connect" in (down.error or "")
    assert feeds.get(name).health == "failing"
    peer.start_again()  # medallion's memory backend starts again from its data file: the same 23
    peer.add("intel", [indicator(200), indicator(201)], USER)
    back = run_feed(factory, feed_settings, name)
    assert back.status == "ok", back.line()
    assert back.counts["new"] == 2 and _stored(factory, coll) == 25
    assert feeds.get(name).health == "ok"


def test_an_alias_url_is_resolved_to_the_collections_id_url(
    live_server, admin, feeds, factory, feed_settings
) -> None:
    """taxii2-client refuses `/collections/<alias>/`; the feed looks the alias up in the API root."""
    from taxii2client.v21 import Collection as TaxiiCollection

    from exchange.intel.ingest import ingest
    from exchange.intel.models import Collection
    from tests.support.stix import envelope

    source = live_server.collection()
    # Stored as another feed's objects: this exchange is both the feed's server and its target,
    # and only a feed may publish new versions of what a feed brought in.
    with live_server.session() as db:
        stored = ingest(
            db,
            collection=db.get(Collection, source.pk),
            objects=envelope([indicator(i) for i in range(4)])["objects"],
            origin="feed",
            added_by="feed:upstream",
        )
        assert stored.created == 4, stored.failures
    alias_url = f"{live_server.api_root}collections/{source.alias}/"
    with pytest.raises(Exception, match="does not match the url"):  # the stock client's refusal
        TaxiiCollection(alias_url, user=admin[0], password=admin[1]).get_objects()
    name, coll = feeds.add("taxii21", alias_url, auth={"username": admin[0], "password": admin[1]})
    result = run_feed(factory, feed_settings, name)
    assert result.status == "ok", result.line()
    assert (result.counts["new"], _stored(factory, coll)) == (4, 4)
    unknown = f"{live_server.api_root}collections/no-such-alias/"
    name, _ = feeds.add("taxii21", unknown, auth={"username": admin[0], "password": admin[1]})
    result = run_feed(factory, feed_settings, name)
    assert result.status == "failed" and "404" in (result.error or ""), result.line()


@pytest.mark.parametrize("header", ["2999-01-01T00:00:00.000Z", "x" * 60_000])
def test_a_resume_point_in_the_future_or_unreadable_fails_the_run_and_skips_nothing(
    peer, feeds, factory, feed_settings, tmp_path, header
) -> None:
    """X-TAXII-Date-Added-Last is the next run's added_after: taken in the future (or as garbage)
    it would make every later run skip what the server adds meanwhile."""
    proxy = Proxy(peer.port, tmp_path, None)
    try:
        url = peer.collection_url("intel").replace(peer.url, proxy.url)
        auth = {"username": USER, "password": PASSWORD}
        name, coll = feeds.add("taxii21", url, tlp="green", options={"page_size": 5}, auth=auth)
        proxy.controls.date_added_last = header
        first = run_feed(factory, feed_settings, name)
        assert first.status == "failed", first.line()
        assert "X-TAXII-Date-Added-Last" in (first.error or "") and header not in (first.error or "")
        second = run_feed(factory, feed_settings, name)
        assert second.status == "ok", second.line()
        assert _stored(factory, coll) == 23
    finally:
        proxy.stop()
