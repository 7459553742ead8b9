"""A partner's stream: ordered by when an object became visible to it, resumable from the
headers it is given (even kept to the millisecond), revealing nothing it may not see."""

from __future__ import annotations

import time
from typing import Any

import httpx

from exchange.intel.timestamps import text_to_us, us_to_text
from tests.support.partners import agreement_doc
from tests.support.stix import AMBER, indicator, publish
from tests.support.taxii import TAXII


def poll(
    url: str, cred: tuple[str, str], *, added_after: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], httpx.Headers]:
    params: dict[str, Any] = {"limit": limit}
    if added_after:
        params["added_after"] = added_after
    response = httpx.get(url + "objects/", params=params, auth=cred, headers={"Accept": TAXII}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json().get("objects", []), response.headers


def millis(text: str) -> str:
    """A timestamp cut to the millisecond, as OpenCTI's platform keeps X-TAXII-Date-Added-Last."""
    head, _, rest = text.partition(".")
    return f"{head}.{rest[:3]}Z" if rest else text


def test_a_client_that_keeps_milliseconds_gets_every_object_once(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    _slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    sent = []
    for _ in range(3):  # three batches, each stored within the same instant
        batch = [indicator() for _ in range(7)]
        publish(http, url, batch)
        sent += [o["id"] for o in batch]
    got: list[str] = []
    added_after = None
    for _ in range(20):
        objs, headers = poll(url, cred, added_after=added_after, limit=5)
        if not objs:
            break
        got += [o["id"] for o in objs]
        added_after = millis(headers["X-TAXII-Date-Added-Last"])
    assert sorted(got) == sorted(sent)  # none repeated, none skipped


def test_an_embargoed_object_reaches_a_poller_resuming_from_an_empty_page(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    read = {"collections": [coll.alias], "max_tlp": "green", "embargo": 2}
    _slug, cred = partners.add(lambda s: agreement_doc(s, read=read))
    obj = indicator()
    publish(http, url, [obj])
    objs, headers = poll(url, cred)
    assert objs == []
    resume = headers.get("X-TAXII-Date-Added-Last")
    time.sleep(2.5)
    objs, headers = poll(url, cred, added_after=resume)
    assert [o["id"] for o in objs] == [obj["id"]]
    # The partner's date_added is when the object became visible to it.
    with live_server.session() as db:
        from exchange.intel.models import ObjectVersion

        stored = db.query(ObjectVersion.date_added_us).filter(ObjectVersion.stix_id == obj["id"]).scalar()
    assert text_to_us(headers["X-TAXII-Date-Added-First"]) == stored + 2_000_000


def test_an_embargoed_object_reaches_a_poller_that_uses_its_own_clock(live_server, http, partners):
    """OpenCTI's TAXII connector asks added_after = the time of its previous run."""
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    read = {"collections": [coll.alias], "max_tlp": "green", "embargo": 2}
    _slug, cred = partners.add(lambda s: agreement_doc(s, read=read))
    obj = indicator()
    publish(http, url, [obj])
    time.sleep(0.2)
    previous_run = us_to_text(time.time_ns() // 1000)
    assert poll(url, cred)[0] == []
    time.sleep(2.5)
    objs, _ = poll(url, cred, added_after=previous_run)
    assert [o["id"] for o in objs] == [obj["id"]]


def test_an_empty_page_does_not_reveal_when_a_hidden_object_was_added(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    _slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    seen = indicator()
    publish(http, url, [seen])
    objs, headers = poll(url, cred)
    last_seen = headers["X-TAXII-Date-Added-Last"]
    publish(http, url, [indicator(marking=AMBER)])
    staff = http.get(url + "objects/").headers["X-TAXII-Date-Added-Last"]
    for after in (None, last_seen):
        objs, headers = poll(url, cred, added_after=after)
        if after is None:
            assert [o["id"] for o in objs] == [seen["id"]]
            assert headers["X-TAXII-Date-Added-Last"] == last_seen
        else:
            assert objs == []
            assert headers.get("X-TAXII-Date-Added-Last") in (None, last_seen)
        assert staff not in headers.get("X-TAXII-Date-Added-Last", "")
    manifest = httpx.get(
        url + "manifest/", params={"added_after": last_seen}, auth=cred, headers={"Accept": TAXII}
    )
    assert manifest.headers.get("X-TAXII-Date-Added-Last") in (None, last_seen)


def test_an_empty_next_page_under_an_embargo_resumes_where_the_stream_is(live_server, http, partners):
    """A partner's cursor holds a position in its stream (embargo included): an empty page that
    follows it must not add the embargo again, or the poller resuming from its header skips what
    became visible within one embargo after that point."""
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    embargo = 3.0
    read = {"collections": [coll.alias], "max_tlp": "green", "embargo": int(embargo)}
    _slug, cred = partners.add(lambda s: agreement_doc(s, read=read))
    first, second, later = indicator(), indicator(), indicator()
    publish(http, url, [first])
    publish(http, url, [second])
    time.sleep(2.0)
    publish(http, url, [later])
    later_visible = time.monotonic() + embargo
    time.sleep(embargo - 2.0 + 0.2)  # the first two are visible to the partner, `later` not yet
    page = httpx.get(url + "objects/", params={"limit": 1}, auth=cred, headers={"Accept": TAXII}, timeout=30)
    assert [o["id"] for o in page.json()["objects"]] == [first["id"]] and page.json()["more"] is True
    # Staff delete what the next page would have held: that page comes back empty.
    assert http.delete(url + f"objects/{second['id']}/").status_code == 200
    empty = httpx.get(
        url + "objects/",
        params={"limit": 1, "next": page.json()["next"]},
        auth=cred,
        headers={"Accept": TAXII},
        timeout=30,
    )
    assert empty.status_code == 200 and empty.json().get("objects", []) == []
    resume = empty.headers["X-TAXII-Date-Added-Last"]
    assert resume == page.headers["X-TAXII-Date-Added-Last"]  # where the stream was, not later
    assert time.monotonic() < later_visible, "too slow: `later` became visible before the empty page"
    time.sleep(max(0.0, later_visible - time.monotonic()) + 0.3)  # `later` is visible now
    objs, _ = poll(url, cred, added_after=resume)
    assert [o["id"] for o in objs] == [later["id"]]
