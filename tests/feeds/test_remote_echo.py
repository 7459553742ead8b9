"""A remote server that echoes what it received (the Authorization header, the query) in its
status line and error body never gets our credentials into push status, feed runs or the log."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from exchange.agreement.models import Agreement, AgreementVersion
from exchange.partner import service as partner_service
from exchange.push import service as push_service
from exchange.push.service import push_status
from exchange.signing import KeyRing, default_directory
from feeds.delivery import push_partner
from feeds.runner import run_feed
from tests.support.partners import Partners, agreement_doc
from tests.support.stix import indicator, publish

pytestmark = pytest.mark.live

COLLECTION = "/taxii2/root/collections/5f0a/"
USER = "pushuser"
# '+' and '/' are written differently percent-encoded: the echo's decoded copy differs.
PASSWORD = "pw+SECRET/" + uuid.uuid4().hex
TOKEN = "tok5ECRET" + uuid.uuid4().hex
KEY = "key5ECRET" + uuid.uuid4().hex
QUERY_KEY = "q5ECRET+" + uuid.uuid4().hex
QUERY_TOKEN = "qtok5ECRET" + uuid.uuid4().hex
QUERY_PWD = "qpw5ECRET" + uuid.uuid4().hex


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


AUTHS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "basic": (
        {"username": USER, "password": PASSWORD},
        [PASSWORD, f"{USER}:{PASSWORD}", _basic(USER, PASSWORD)],
    ),
    "bearer": ({"headers": {"Authorization": f"Bearer {TOKEN}"}}, [TOKEN]),
    "header": ({"headers": {"X-Api-Key": KEY}}, [KEY]),
}


def assert_no_part_of(secrets: list[str], *texts: str) -> None:
    for secret in secrets:
        pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}
        for text in texts:
            leaked = sorted(p for p in pieces if p in text)
            assert not leaked, f"part of a credential shown: {leaked[:3]} in {text!r}"


def _push_to(live_server, http, url: str, auth: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    coll = live_server.collection(default_tlp="green")
    doc = agreement_doc("x", read={"collections": [coll.alias], "max_tlp": "green"})
    slug, _ = Partners(live_server).add(
        lambda slug: doc | {"partner": slug, "push": {"url": url, "every": "1h"}}
    )
    with live_server.session() as db:
        push_service.set_push_auth(db, slug, auth, actor="test")
    publish(http, live_server.collection_url(coll), [indicator()])
    return slug


def _push(live_server, factory, settings, slug: str, caplog) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    keyring = KeyRing(default_directory(settings))
    with caplog.at_level(logging.INFO, logger="feeds.delivery"):
        summary = push_partner(factory, settings, keyring, slug, holder="test")
    assert summary.status == "failed" and summary.error, summary.line()
    with live_server.session() as db:
        [state] = push_status(db, slug)
    assert state["last_error"] == summary.error
    return summary.error, caplog.text


@pytest.mark.parametrize("kind", list(AUTHS))
def test_a_push_error_never_carries_an_echoed_credential(  # type: ignore[no-untyped-def]
    live_server, http, factory, settings, feed_server, caplog, kind
) -> None:
    auth, secrets = AUTHS[kind]
    feed_server.serve(COLLECTION + "objects/", status=401, echo=True)
    slug = _push_to(live_server, http, feed_server.base + COLLECTION, auth)
    error, logged = _push(live_server, factory, settings, slug, caplog)
    seen = feed_server.routes[COLLECTION + "objects/"].seen_headers
    assert len(seen) == 1 and any(s in str(seen[0]) for s in secrets)  # it was sent, and echoed
    assert "HTTP 401" in error and "bad credentials" in error, error
    assert "push credentials" in error
    assert_no_part_of(secrets, error, logged)


def test_a_stored_push_url_with_a_query_posts_to_its_objects_and_never_shows_the_query(  # type: ignore[no-untyped-def]
    live_server, http, factory, settings, feed_server, caplog
) -> None:
    auth, secrets = AUTHS["basic"]
    feed_server.serve(COLLECTION + "objects/", status=401, echo=True)
    query = f"?apikey={QUERY_KEY.replace('+', '%2B')}&token={QUERY_TOKEN}&pwd={QUERY_PWD}"
    slug = _push_to(live_server, http, feed_server.base + COLLECTION, auth)
    # An agreement version stored before such URLs were refused.
    with live_server.session() as db:
        partner = partner_service.get_by_slug(db, slug)
        assert partner is not None
        agreement_pk = db.scalars(select(Agreement.pk).where(Agreement.partner_pk == partner.pk)).one()
        version = db.scalars(
            select(AgreementVersion).where(AgreementVersion.agreement_pk == agreement_pk)
        ).one()
        document = orjson.loads(version.document)
        document["push"]["url"] += query
        db.execute(
            update(AgreementVersion)
            .where(AgreementVersion.pk == version.pk)
            .values(document=orjson.dumps(document).decode())
        )
    error, logged = _push(live_server, factory, settings, slug, caplog)
    route = feed_server.routes[COLLECTION + "objects/"]
    assert route.seen_paths == [COLLECTION + "objects/" + query]  # the objects endpoint, query kept
    assert "HTTP 401" in error and "bad credentials" in error, error
    assert_no_part_of([*secrets, QUERY_KEY, QUERY_TOKEN, QUERY_PWD], error, logged)


@pytest.mark.parametrize("kind", list(AUTHS))
def test_a_feed_run_error_never_carries_an_echoed_credential(  # type: ignore[no-untyped-def]
    feed_server, feeds, factory, feed_settings, caplog, kind
) -> None:
    auth, secrets = AUTHS[kind]
    url = feed_server.serve("/list.txt", status=401, echo=True) + f"?apikey={QUERY_KEY.replace('+', '%2B')}"
    name, _ = feeds.add("text", url, auth=auth)
    with caplog.at_level(logging.INFO, logger="feeds"):
        summary = run_feed(factory, feed_settings, name)
    assert summary.status == "failed" and summary.error, summary.line()
    seen = feed_server.routes["/list.txt"].seen_headers
    assert any(s in str(seen[0]) for s in secrets)  # it was sent, and echoed
    [run] = feeds.runs(name)
    assert run.error == summary.error and "HTTP 401" in run.error
    assert_no_part_of([*secrets, QUERY_KEY], summary.error, run.error, caplog.text)


def test_a_taxii_feeds_error_is_masked_before_it_is_shortened(
    feed_server, feeds, factory, feed_settings
) -> None:  # type: ignore[no-untyped-def]
    # taxii2-client quotes the server's Content-Type in its error; a credential the server puts
    # there, placed so that the 200-character cut falls inside it, left a piece no form matched.
    auth, secrets = AUTHS["basic"]
    echoed = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    content_type = "application/x-" + "a" * 130 + "; Basic " + echoed
    path = f"/taxii2/root/collections/{uuid.uuid4()}/"
    url = feed_server.serve(path, b"{}", content_type=content_type)
    name, _ = feeds.add("taxii21", url, auth=auth)
    summary = run_feed(factory, feed_settings, name)
    assert summary.status == "failed" and "did not answer as a TAXII 2.1 server" in (summary.error or "")
    [run] = feeds.runs(name)
    assert_no_part_of([*secrets, echoed], summary.error or "", run.error or "")
