"""Push delivery to a partner's own TAXII server (a real medallion process): exactly what the
agreement allows, signed, once, resuming after an outage, never what the partner already has."""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import rfc8785
from sqlalchemy import select

from exchange.audit.models import AuditEvent
from exchange.disclosure.models import Delivery, Disclosure
from exchange.errors import BadRequestError
from exchange.intel.models import Collection, ObjectVersion
from exchange.partner import service as partner_service
from exchange.push import service as push_service
from exchange.push.service import push_status
from exchange.signing import KeyRing, default_directory
from feeds.delivery import push_partner, push_targets
from tests.signing import joserfc_verify, jwcrypto_verify
from tests.support.partners import Partners, agreement_doc
from tests.support.stix import TLP, sdo
from tests.support.taxii import TAXII, post
from tests.support.taxii_peer import Medallion, start_medallion

pytestmark = pytest.mark.live

PUSH_USER, PUSH_PASSWORD = "exchange-push", "pw-Push-Secret-4711"
# The test's own reading of the agreement below, written out rather than asked of the code.
ORDER = ["clear", "green", "amber", "amber+strict", "red"]
DEFAULT_TLP = "amber"
MAX_TLP = "green"
MIN_CONFIDENCE = 50
TYPES = ["indicator", "relationship"]
STAMP = "2026-02-01T10:00:00.000Z"


@dataclass
class Item:
    obj: dict[str, Any]
    level: str | None  # TLP marking, None for unmarked


def _stix(kind: str, level: str | None, confidence: int | None = 90, **extra: Any) -> Item:
    obj = sdo(kind, None if level is None else TLP[level], created=STAMP, modified=STAMP, **extra)
    if confidence is not None:
        obj["confidence"] = confidence
    return Item(obj, level)


def indicator(level: str | None, confidence: int | None = 90, **extra: Any) -> Item:
    n = uuid.uuid4().int
    return _stix(
        "indicator",
        level,
        confidence,
        name=f"C2 {n % 1000}",
        pattern_type="stix",
        pattern=f"[ipv4-addr:value = '198.51.{n // 256 % 256}.{n % 256}']",
        valid_from=STAMP,
        **extra,
    )


def malware(level: str) -> Item:
    return _stix("malware", level, name="dropper", is_family=False)


def relationship(source: Item, target: Item, level: str = "green") -> Item:
    return _stix(
        "relationship",
        level,
        relationship_type="related-to",
        source_ref=source.obj["id"],
        target_ref=target.obj["id"],
    )


def expected_ids(items: list[Item], known: list[Item] | None = None) -> set[str]:
    """What the agreement allows, decided here from the objects' own properties."""
    every = {i.obj["id"]: i for i in (known or []) + items}

    def plain(item: Item) -> bool:
        level = item.level or DEFAULT_TLP
        confidence = item.obj.get("confidence")
        return (
            ORDER.index(level) <= ORDER.index(MAX_TLP)
            and confidence is not None
            and confidence >= MIN_CONFIDENCE
            and item.obj["type"] in TYPES
        )

    def allowed(item: Item) -> bool:
        ends = [item.obj[k] for k in ("source_ref", "target_ref") if k in item.obj]
        return plain(item) and all(end in every and plain(every[end]) for end in ends)

    return {i.obj["id"] for i in items if allowed(i)}


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as medallion gives it back, without medallion's own bookkeeping members."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


@dataclass
class Setup:
    live: Any
    factory: Any
    settings: Any
    keyring: KeyRing
    peer: Medallion
    slug: str
    credential: tuple[str, str]
    coll: Collection
    http: httpx.Client

    def publish(self, items: list[Item]) -> None:
        status = post(
            self.http, self.live.collection_url(self.coll), {"objects": [i.obj for i in items]}
        ).json()
        assert status["success_count"] == len(items), status

    def push(self):  # type: ignore[no-untyped-def]
        return push_partner(self.factory, self.settings, self.keyring, self.slug, holder="test")

    def inbox_ids(self) -> set[str]:
        return {o["id"] for o in self.peer.objects("inbox", user=PUSH_USER)}

    def pushed_version_pks(self) -> set[int]:
        with self.live.session() as db:
            partner = partner_service.get_by_slug(db, self.slug)
            return set(
                db.scalars(
                    select(Disclosure.object_version_pk)
                    .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
                    .where(Delivery.partner_pk == partner.pk, Delivery.channel == "push")
                )
            )  # type: ignore[union-attr]

    def version_pks(self, ids: set[str]) -> set[int]:
        with self.live.session() as db:
            return set(
                db.scalars(
                    select(ObjectVersion.pk).where(
                        ObjectVersion.collection_pk == self.coll.pk, ObjectVersion.stix_id.in_(ids)
                    )
                )
            )

    def status(self) -> dict[str, Any]:
        with self.live.session() as db:
            rows = push_status(db, self.slug)
        assert [r["collection"] for r in rows] == [self.coll.alias]
        return rows[0]

    def agree(self, **read: Any) -> None:
        Partners(self.live).apply(self.doc(self.slug, **read))

    def doc(self, slug: str, **read: Any) -> dict[str, Any]:
        grant = {
            "collections": [self.coll.alias],
            "max_tlp": MAX_TLP,
            "min_confidence": MIN_CONFIDENCE,
            "types": TYPES,
            "redact": ["x_internal_notes"],
            **read,
        }
        return agreement_doc(slug, read=grant) | {
            "push": {"url": self.peer.collection_url("inbox"), "every": "1h"}
        }


@pytest.fixture
def peer(tmp_path) -> Iterator[Medallion]:  # type: ignore[no-untyped-def]
    server = start_medallion(tmp_path, collections={"inbox": []}, users={PUSH_USER: PUSH_PASSWORD})
    yield server
    server.stop()


@pytest.fixture
def setup(live_server, factory, settings, peer, http) -> Setup:  # type: ignore[no-untyped-def]
    coll = live_server.collection(default_tlp=DEFAULT_TLP)
    small = settings.model_copy(update={"push_batch_size": 2, "push_timeout_seconds": 5.0})
    s = Setup(
        live_server, factory, small, KeyRing(default_directory(settings)), peer, "", ("", ""), coll, http
    )
    s.slug, s.credential = Partners(live_server).add(lambda slug: s.doc(slug))
    with live_server.session() as db:
        push_service.set_push_auth(
            db, s.slug, {"username": PUSH_USER, "password": PUSH_PASSWORD}, actor="test"
        )
    return s


def _clear_recorded_posts(peer: Medallion) -> None:
    # medallion_peer numbers its records from 1 in each process, so a restarted peer would
    # overwrite the earlier files; start the record afresh instead.
    for path in peer.record_dir.glob("post-*.json"):
        path.unlink()


def test_push_delivers_exactly_what_the_agreement_allows_signed_and_once(setup: Setup) -> None:
    s = setup
    clear, green = indicator("clear"), indicator("green", x_internal_notes="source: liaison officer")
    amber, red, unmarked = indicator("amber"), indicator("red"), indicator(None)
    low, unknown = indicator("green", confidence=10), indicator("green", confidence=None)
    family = malware("green")
    items = [
        clear,
        green,
        amber,
        red,
        unmarked,
        low,
        unknown,
        family,
        relationship(clear, green),
        relationship(green, amber),
        relationship(green, family),
    ]
    s.publish(items)
    allowed = expected_ids(items)
    assert allowed == {clear.obj["id"], green.obj["id"], items[8].obj["id"]}  # the rules above, spelled out

    with s.live.session() as db:
        target = next(t for t in push_targets(db) if t.slug == s.slug)
    assert (target.every_seconds, target.url) == (3600, s.peer.collection_url("inbox"))

    summary = s.push()
    assert (summary.status, summary.delivered, summary.error) == ("ok", 3, None), summary.line()
    received = {o["id"]: stored(o) for o in s.peer.objects("inbox", user=PUSH_USER)}
    assert set(received) == allowed
    originals = {i.obj["id"]: i.obj for i in items}
    for stix_id, obj in received.items():
        assert obj == {k: v for k, v in originals[stix_id].items() if k != "x_internal_notes"}

    posts = s.peer.posts()
    assert len(posts) == math.ceil(len(allowed) / s.settings.push_batch_size)
    jwks = s.keyring.jwks()
    for raw in posts:
        body = json.loads(raw)
        token = body.pop("x_exchange_jws")
        payload = rfc8785.dumps(body)
        for verify in (jwcrypto_verify, joserfc_verify):
            header = verify(token, payload, jwks)
            assert header["aud"] == s.slug and header["cty"] == "taxii+json;version=2.1"
            assert header["iss"] == s.settings.identity_id
        assert all("x_internal_notes" not in o for o in body["objects"])

    assert s.pushed_version_pks() == s.version_pks(allowed)
    state = s.status()
    assert (
        state["delivered_total"] == 3 and state["consecutive_failures"] == 0 and state["last_error"] is None
    )
    assert state["last_success_at"] is not None and state["delivered_us"] is not None

    again = s.push()
    assert (again.status, again.delivered) == ("nothing", 0), again.line()
    assert len(s.peer.posts()) == len(posts)
    assert s.pushed_version_pks() == s.version_pks(allowed)


def test_an_outage_fails_the_run_and_the_next_run_sends_exactly_what_was_missed(setup: Setup) -> None:
    s = setup
    first = [indicator("green"), indicator("clear")]
    s.publish(first)
    assert s.push().status == "ok"
    ledger_before, cursor_before = s.pushed_version_pks(), s.status()["delivered_us"]

    s.peer.stop()
    missed = [indicator("green"), indicator("amber"), indicator("clear"), indicator("green")]
    s.publish(missed)
    failed = s.push()
    assert failed.status == "failed" and failed.delivered == 0
    assert "cannot connect" in failed.error and "127.0.0.1" in failed.error  # type: ignore[operator]
    state = s.status()
    assert state["consecutive_failures"] == 1 and state["last_error"] == failed.error
    assert state["delivered_us"] == cursor_before
    assert s.pushed_version_pks() == ledger_before
    assert s.push().status == "failed" and s.status()["consecutive_failures"] == 2

    _clear_recorded_posts(s.peer)
    s.peer.start_again()  # memory backend: back to its initial, empty inbox
    resumed = s.push()
    want = expected_ids(missed)
    assert len(want) == 3
    assert (resumed.status, resumed.delivered) == ("ok", 3), resumed.line()
    assert s.inbox_ids() == want
    sent = [o["id"] for raw in s.peer.posts() for o in json.loads(raw)["objects"]]
    assert sorted(sent) == sorted(want)  # each once
    assert s.pushed_version_pks() == ledger_before | s.version_pks(want)
    state = s.status()
    assert (
        state["consecutive_failures"] == 0 and state["last_error"] is None and state["delivered_total"] == 5
    )

    count = len(s.peer.posts())
    assert s.push().status == "nothing"
    assert len(s.peer.posts()) == count


def test_objects_the_partner_already_pulled_are_not_pushed_again(setup: Setup) -> None:
    s = setup
    objs = [
        indicator("green"),
        indicator("clear"),
        indicator("red"),
        indicator("green"),
        indicator("green"),
        indicator("clear"),
    ]
    s.publish(objs)
    # The partner pulls two of them, out of order, over TAXII with its own credential.
    pulled = {objs[0].obj["id"], objs[5].obj["id"]}
    answer = httpx.get(
        s.live.collection_url(s.coll) + "objects/",
        auth=s.credential,
        headers={"Accept": TAXII},
        params={"match[id]": ",".join(sorted(pulled))},
    )
    assert answer.status_code == 200, answer.text
    assert {o["id"] for o in answer.json()["objects"]} == pulled

    summary = s.push()
    want = expected_ids(objs) - pulled
    assert len(want) == 3
    assert (summary.status, summary.delivered) == ("ok", 3), summary.line()
    assert s.inbox_ids() == want
    sent = [o["id"] for raw in s.peer.posts() for o in json.loads(raw)["objects"]]
    assert sorted(sent) == sorted(want)
    assert s.pushed_version_pks() == s.version_pks(want)

    count = len(s.peer.posts())
    assert s.push().status == "nothing" and len(s.peer.posts()) == count
    fresh = [indicator("green")]
    s.publish(fresh)
    assert s.push().delivered == 1
    assert s.inbox_ids() == want | expected_ids(fresh)


def test_objects_the_partners_server_refuses_are_not_recorded_as_delivered(setup: Setup) -> None:
    s = setup
    objs = [indicator("green"), indicator("clear"), indicator("green")]
    s.publish(objs)
    # medallion answers an id and version it already holds with a failure in its status resource.
    s.peer.add("inbox", [objs[1].obj], user=PUSH_USER)
    summary = s.push()
    assert (summary.status, summary.delivered, summary.refused) == ("ok", 2, 1), summary.line()
    assert s.pushed_version_pks() == s.version_pks({objs[0].obj["id"], objs[2].obj["id"]})
    assert s.status()["delivered_total"] == 2
    assert s.push().status == "nothing"  # refused objects are not sent again and again


def test_embargoed_objects_are_pushed_once_the_embargo_no_longer_holds_them(setup: Setup) -> None:
    s = setup
    s.agree(embargo="1d")
    held = [indicator("green"), indicator("clear")]
    s.publish(held)
    assert s.push().status == "nothing" and s.peer.posts() == []

    s.agree()  # the embargo lifted: nothing published earlier was passed over meanwhile
    summary = s.push()
    assert (summary.status, summary.delivered) == ("ok", 2), summary.line()
    assert s.inbox_ids() == expected_ids(held)


def test_a_refused_push_credential_fails_clearly_without_revealing_it(setup: Setup, caplog) -> None:  # type: ignore[no-untyped-def]
    s = setup
    wrong = "Wrong-Password-0815"
    with s.live.session() as db:
        push_service.set_push_auth(db, s.slug, {"username": PUSH_USER, "password": wrong}, actor="test")
    s.publish([indicator("green")])
    with caplog.at_level(logging.INFO, logger="feeds.delivery"):
        summary = s.push()
    assert summary.status == "failed"
    assert "HTTP 401" in summary.error and "credentials" in summary.error  # type: ignore[operator]
    state = s.status()
    assert state["last_error"] == summary.error and state["consecutive_failures"] == 1
    assert s.pushed_version_pks() == set() and s.inbox_ids() == set()
    assert "HTTP 401" in caplog.text
    for text in (summary.error, caplog.text):
        assert wrong not in text and PUSH_PASSWORD not in text  # type: ignore[operator]
    with s.live.session() as db:
        events = list(
            db.scalars(
                select(AuditEvent.details).where(
                    AuditEvent.action == "partner.push-auth", AuditEvent.target == s.slug
                )
            )
        )
    assert len(events) == 2 and all(orjson.loads(d) == {"kind": "basic"} for d in events)
    assert not any(wrong in d or PUSH_PASSWORD in d for d in events)


@pytest.mark.parametrize(
    "auth",
    [
        {"username": PUSH_USER},
        {"password": "x"},
        {"username": "a:b", "password": "pw"},
        {"username": PUSH_USER, "password": ""},
        {"headers": {}},
        {"headers": {"Authorization": "Bearer a\r\nX-Injected: 1"}},
        {"headers": {"Bad Name": "v"}},
        {"token": "abc"},
        {"username": PUSH_USER, "password": "pw", "headers": {"A": "b"}},
    ],
)
def test_push_credentials_of_the_wrong_shape_are_refused_without_echoing_them(db, auth) -> None:  # type: ignore[no-untyped-def]
    partner, _, _ = partner_service.create(
        db, slug=f"p-{uuid.uuid4().hex[:8]}", name="P", country="IN", actor="t"
    )
    with pytest.raises(BadRequestError) as refused:
        push_service.set_push_auth(db, partner.slug, auth, actor="t")
    assert "Bearer" not in refused.value.message and "pw" not in refused.value.message
    assert partner.push_auth is None


def test_push_credentials_are_stored_and_cleared(db) -> None:  # type: ignore[no-untyped-def]
    partner, _, _ = partner_service.create(
        db, slug=f"p-{uuid.uuid4().hex[:8]}", name="P", country="IN", actor="t"
    )
    headers = {"headers": {"Authorization": "Bearer abc.def"}}
    push_service.set_push_auth(db, partner.slug, headers, actor="t")
    assert push_service.push_auth(partner) == headers
    push_service.set_push_auth(db, partner.slug, None, actor="t")
    assert partner.push_auth is None and push_service.push_auth(partner) == {}
    details = list(
        db.scalars(
            select(AuditEvent.details).where(
                AuditEvent.target == partner.slug, AuditEvent.action == "partner.push-auth"
            )
        )
    )
    assert [orjson.loads(d) for d in details] == [
        {"headers": ["Authorization"], "kind": "headers"},
        {"kind": None},
    ]


def test_only_partners_with_push_in_force_are_targets(setup: Setup) -> None:
    s = setup
    draft, _ = Partners(s.live).add(lambda slug: s.doc(slug) | {"status": "draft"})
    suspended, _ = Partners(s.live).add(lambda slug: s.doc(slug))
    lapsed, _ = Partners(s.live).add(lambda slug: s.doc(slug) | agreement_doc(slug, days_after=-1))
    without, _ = Partners(s.live).add(
        lambda slug: agreement_doc(slug, read={"collections": [s.coll.alias], "max_tlp": "green"})
    )
    with s.live.session() as db:
        partner_service.set_status(db, suspended, "suspended", actor="test")
        slugs = {t.slug for t in push_targets(db)}
    assert s.slug in slugs
    assert not slugs & {draft, suspended, lapsed, without}
    assert s.push().status == "nothing"
    for slug in (draft, suspended, lapsed, without):
        summary = push_partner(s.factory, s.settings, s.keyring, slug)
        assert summary.status == "nothing" and "no push delivery in force" in (summary.error or "")


def test_pushed_envelopes_carry_strictly_valid_stix(setup: Setup) -> None:
    from tests.support.strict import strict_problems

    s = setup
    first = indicator("green", description="C2 seen by the liaison", x_internal_notes="source: officer")
    second = indicator("clear", description="C2 fallback")
    items = [first, second, relationship(first, second)]
    s.publish(items)
    summary = s.push()
    assert (summary.status, summary.delivered) == ("ok", 3), summary.line()
    objects = [o for raw in s.peer.posts() for o in json.loads(raw)["objects"]]
    assert {o["id"] for o in objects} == {i.obj["id"] for i in items}
    # The redaction removed the one custom property: what arrives passes strict validation.
    assert [p for o in objects for p in strict_problems(o)] == []
