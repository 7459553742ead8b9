"""The partner path's shortcuts keep the rules: the ledger by primary key, the cached grant
predicates, the gate's memo of `decide`, the ledger written beside the signature."""

from __future__ import annotations

import dataclasses
import uuid
from collections import namedtuple

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import event, func, select, union_all

from exchange.database.core import make_session_factory, session_scope
from exchange.disclosure import service as disclosure
from exchange.disclosure.models import Delivery, Disclosure
from exchange.errors import ServiceUnavailableError
from exchange.intel import ingest, query, service
from exchange.intel.models import DeletedVersion, ObjectVersion
from exchange.partner import service as partner_service
from exchange.sharing import gate, visibility
from exchange.sharing.access import CollectionAccess
from policies.engine import ObjectFacts, ReadGrant, decide

GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"


def _stored(db, settings, count: int) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    """A collection holding `count` indicators; its pk and their version pks."""
    root = service.get_api_root(db, settings.api_root)
    assert root is not None
    coll = service.create_collection(db, api_root=root, alias=f"c-{uuid.uuid4().hex[:10]}", title="t")
    objects = [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "pattern": f"[ipv4-addr:value = '10.0.0.{i + 1}']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
            "object_marking_refs": [GREEN],
        }
        for i in range(count)
    ]
    ingest.ingest(
        db,
        collection=coll,
        objects=ingest.prepare(objects),
        origin="analyst",
        added_by="test",
        writer=None,
        exchange_identity="identity--6d0f8d36-1b3c-4ad1-9b05-6b5c4a6f3f9e",
    )
    pks = list(db.scalars(select(ObjectVersion.pk).where(ObjectVersion.collection_pk == coll.pk)))
    return coll.pk, pks


def _partner(db) -> int:  # type: ignore[no-untyped-def]
    partner, _, _ = partner_service.create(
        db, slug=f"p-{uuid.uuid4().hex[:8]}", name="P", country="IN", actor="test"
    )
    return partner.pk


def _ledger_rows(db, collection_pk: int) -> list[tuple[int, str, str]]:  # type: ignore[no-untyped-def]
    """(version pk, STIX id, version) of each ledger row of the collection's deliveries, as the
    store names them (stored or deleted versions)."""
    named = union_all(
        select(ObjectVersion.pk, ObjectVersion.stix_id, ObjectVersion.version_text),
        select(DeletedVersion.pk, DeletedVersion.stix_id, DeletedVersion.version_text),
    ).subquery()
    return [
        (r.object_version_pk, r.stix_id, r.version_text)
        for r in db.execute(
            select(Disclosure.object_version_pk, named.c.stix_id, named.c.version_text)
            .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
            .join(named, named.c.pk == Disclosure.object_version_pk)
            .where(Delivery.collection_pk == collection_pk)
        )
    ]


def _deliveries(db, collection_pk: int) -> list[tuple[str | None, str | None, str, int]]:  # type: ignore[no-untyped-def]
    return [
        tuple(r)
        for r in db.execute(
            select(Delivery.credential_id, Delivery.requested_by, Delivery.channel, Delivery.objects).where(
                Delivery.collection_pk == collection_pk
            )
        )
    ]


def test_one_delivery_row_says_who_and_how_and_each_served_version_has_its_row(db, settings) -> None:  # type: ignore[no-untyped-def]
    coll_pk, pks = _stored(db, settings, 5)
    partner_pk = _partner(db)
    written = disclosure.record_versions(
        db,
        partner_pk=partner_pk,
        credential_id="cred-x",
        requested_by="cred-x",
        object_version_pks=pks,
        collection_pk=coll_pk,
        channel="taxii",
    )
    assert written == 5
    stored = {
        r.pk: (r.pk, r.stix_id, r.version_text)
        for r in db.execute(
            select(ObjectVersion.pk, ObjectVersion.stix_id, ObjectVersion.version_text).where(
                ObjectVersion.pk.in_(pks)
            )
        )
    }
    assert sorted(_ledger_rows(db, coll_pk)) == sorted(stored.values())
    assert _deliveries(db, coll_pk) == [("cred-x", "cred-x", "taxii", 5)]


def test_nothing_served_writes_no_delivery(db, settings) -> None:  # type: ignore[no-untyped-def]
    coll_pk, _ = _stored(db, settings, 1)
    written = disclosure.record_versions(
        db,
        partner_pk=_partner(db),
        credential_id="cred-x",
        requested_by="cred-x",
        object_version_pks=[],
        collection_pk=coll_pk,
        channel="taxii",
    )
    assert written == 0 and _deliveries(db, coll_pk) == []


def test_a_version_served_twice_is_recorded_twice(db, settings) -> None:  # type: ignore[no-untyped-def]
    coll_pk, pks = _stored(db, settings, 3)
    partner_pk = _partner(db)
    served = [pks[0], pks[1], pks[0], pks[2], pks[0]]
    written = disclosure.record_versions(
        db,
        partner_pk=partner_pk,
        credential_id=None,
        requested_by="analyst",
        object_version_pks=served,
        collection_pk=coll_pk,
        channel="export",
    )
    assert written == 5
    counts = dict(
        db.execute(
            select(Disclosure.object_version_pk, func.count())
            .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
            .where(Delivery.collection_pk == coll_pk)
            .group_by(Disclosure.object_version_pk)
        ).all()
    )
    assert counts == {pks[0]: 3, pks[1]: 1, pks[2]: 1}
    assert _deliveries(db, coll_pk) == [(None, "analyst", "export", 5)]


def test_a_version_deleted_before_its_ledger_row_fails_the_page(db, settings) -> None:  # type: ignore[no-untyped-def]
    """A TAXII DELETE between a page's read and its ledger write (or a page read from a replica
    that has not replayed the delete yet): the withdrawn object is not served (503), and nothing
    is half recorded, delivery row included."""
    coll_pk, pks = _stored(db, settings, 4)
    partner_pk = _partner(db)
    gone_id = db.scalar(select(ObjectVersion.stix_id).where(ObjectVersion.pk == pks[2]))
    savepoint = db.begin_nested()
    assert query.delete_versions(
        db, collection_pk=coll_pk, stix_id=gone_id, flt=query.ObjectFilter(versions=("all",))
    )
    with pytest.raises(ServiceUnavailableError):
        disclosure.record_versions(
            db,
            partner_pk=partner_pk,
            credential_id="cred-x",
            requested_by="cred-x",
            object_version_pks=pks,
            collection_pk=coll_pk,
            channel="taxii",
        )
    savepoint.rollback()  # what the request's session_scope does with the error
    assert _ledger_rows(db, coll_pk) == [] and _deliveries(db, coll_pk) == []


def test_a_deleted_newest_versions_pk_is_never_given_to_another_version(db, settings) -> None:  # type: ignore[no-untyped-def]
    """The ledger names versions by pk: a pk freed by deleting the newest version (SQLite numbers
    after the largest pk present) must not come back, or the next version would inherit who
    received the deleted one."""
    coll_pk, pks = _stored(db, settings, 2)
    newest = max(pks)
    newest_id = db.scalar(select(ObjectVersion.stix_id).where(ObjectVersion.pk == newest))
    disclosure.record_versions(
        db,
        partner_pk=_partner(db),
        credential_id="cred-x",
        requested_by="cred-x",
        object_version_pks=[newest],
        collection_pk=coll_pk,
        channel="taxii",
    )
    assert query.delete_versions(
        db, collection_pk=coll_pk, stix_id=newest_id, flt=query.ObjectFilter(versions=("all",))
    )
    _, fresh = _stored(db, settings, 1)
    assert fresh[0] > newest
    fresh_id = db.scalar(select(ObjectVersion.stix_id).where(ObjectVersion.pk == fresh[0]))
    assert disclosure.recipients(db, fresh_id)["received"] == []
    assert [r["credential_id"] for r in disclosure.recipients(db, newest_id)["received"]] == ["cred-x"]


def _grant(**kwargs) -> ReadGrant:  # type: ignore[no-untyped-def]
    base = {
        "partner": "cert-x",
        "collection": "c",
        "max_tlp_rank": 2,
        "types": None,
        "min_confidence": None,
        "embargo_us": 0,
        "redact": (),
        "anonymize_source": False,
    }
    return ReadGrant(**(base | kwargs))


SCOPE = visibility.RelayScope(partner_pk=7, partner="cert-x")


def test_cached_predicates_follow_every_input() -> None:
    cg = visibility.CollectionGrant(1, 2, _grant(), SCOPE)
    first = visibility.read_predicates(cg, [cg], now_us=1)
    again = visibility.read_predicates(cg, [cg], now_us=999)
    assert [str(p) for p in first] == [str(p) for p in again]
    assert all(a is b for a, b in zip(first, again, strict=True))  # built once
    # What the gate alone reads (names, identities) shares the SQL; what the SQL reads does not.
    renamed = visibility.RelayScope(partner_pk=7, partner="cert-x", names={8: "cert-y"})
    same = visibility.CollectionGrant(1, 2, _grant(), renamed)
    assert all(a is b for a, b in zip(first, visibility.read_predicates(same, [same], now_us=1), strict=True))
    for scope in (
        visibility.RelayScope(partner_pk=7, partner="cert-x", relayers=frozenset({8})),
        visibility.RelayScope(partner_pk=9, partner="cert-z"),
    ):
        other = visibility.CollectionGrant(1, 2, _grant(), scope)
        assert visibility.read_predicates(other, [other], now_us=1)[-1] is not first[-1]
    narrower = visibility.CollectionGrant(1, 2, _grant(max_tlp_rank=1), SCOPE)
    assert visibility.read_predicates(narrower, [narrower], now_us=1)[0] is not first[0]


def test_an_embargo_builds_the_predicates_for_the_moment() -> None:
    cg = visibility.CollectionGrant(1, 2, _grant(embargo_us=1_000), SCOPE)
    early = visibility.read_predicates(cg, [cg], now_us=10_000)
    late = visibility.read_predicates(cg, [cg], now_us=20_000)

    def bound(predicates) -> set[object]:  # type: ignore[no-untyped-def]
        values: set[object] = set()
        for p in predicates:
            values.update(p.compile().params.values())
        return values

    assert 9_000 in bound(early) and 9_000 not in bound(late) and 19_000 in bound(late)


Row = namedtuple(
    "Row",
    "pk stix_id type tlp_rank confidence date_added_us audience revoked has_refs body"
    " origin_partner_pk originator_partner_pk sighting_of_ref",
)


def _row(pk: int, **kwargs) -> Row:  # type: ignore[no-untyped-def]
    values = {
        "pk": pk,
        "stix_id": f"indicator--{uuid.UUID(int=pk)}",
        "type": "indicator",
        "tlp_rank": 1,
        "confidence": 80,
        "date_added_us": 1_000,
        "audience": None,
        "revoked": False,
        "has_refs": False,
        "body": "{}",
        "origin_partner_pk": None,
        "originator_partner_pk": None,
        "sighting_of_ref": None,
    }
    return Row(**(values | kwargs))


def _access(grant: ReadGrant, now_us: int = 10**15) -> CollectionAccess:
    cg = visibility.CollectionGrant(1, 2, grant, SCOPE)
    return CollectionAccess(
        can_read=True,
        can_write=False,
        read_grant=grant,
        collection_grant=cg,
        all_grants=[cg],
        now_us=now_us,
        relay=SCOPE,
    )


def test_the_gate_decides_each_row_on_its_own_facts(db) -> None:  # type: ignore[no-untyped-def]
    """Rows alike but for one fact each: the memo never lends one row's decision to another."""
    grant = _grant(partner="cert-x", min_confidence=50, types=frozenset({"indicator"}))
    rows = [
        _row(1),
        _row(2, audience=",cert-y,"),  # narrowed to another partner
        _row(3),
        _row(4, confidence=40),
        _row(5, tlp_rank=3),
        _row(6, type="malware"),
        _row(7, audience=",cert-x,"),
        _row(8, tlp_rank=4),
        _row(9, confidence=None),
        _row(10),
    ]
    allowed = [r.pk for r in gate.check(db, rows, _access(grant))]
    assert allowed == [1, 3, 7, 10]


def test_the_gate_reads_date_added_under_an_embargo(db) -> None:  # type: ignore[no-untyped-def]
    grant = _grant(embargo_us=500)
    rows = [_row(1, date_added_us=1_000), _row(2, date_added_us=1_600), _row(3, date_added_us=1_400)]
    allowed = [r.pk for r in gate.check(db, rows, _access(grant, now_us=2_000))]
    assert allowed == [1, 3]


# Every fact the gate's memo keys on, with values that change `decide`'s answer somewhere.
_FACT_VALUES = {
    "type": ["indicator", "malware", "sighting"],
    "tlp_rank": [None, 0, 1, 2, 3, 4],
    "confidence": [None, 10, 50, 90],
    "date_added_us": [1_000, 1_400, 1_600],
    "audience": [None, ",cert-x,", ",cert-y,"],
    "revoked": [False, True],
    "origin_partner_pk": [None, 7, 8, 9],
    "originator_partner_pk": [None, 7, 8, 9],
}
_ALLOWED_BASE = {
    "type": "indicator",
    "tlp_rank": 1,
    "confidence": 90,
    "date_added_us": 1_000,
    "audience": None,
    "revoked": False,
    "origin_partner_pk": None,
    "originator_partner_pk": None,
}


@examples(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.fixed_dictionaries({name: st.sampled_from(values) for name, values in _FACT_VALUES.items()}),
    max_tlp=st.sampled_from([0, 1, 2, 3]),
    min_confidence=st.sampled_from([None, 50]),
    types=st.sampled_from([None, frozenset({"indicator", "sighting"})]),
    embargo=st.sampled_from([0, 500]),
)
@example(base=_ALLOWED_BASE, max_tlp=2, min_confidence=50, types=frozenset({"indicator"}), embargo=500)
def test_the_gate_memo_agrees_with_decide_row_by_row(
    db, base, max_tlp, min_confidence, types, embargo
) -> None:  # type: ignore[no-untyped-def]
    """A page of rows alike but for one fact each (every value of every fact): the page's memo
    gives each row what `decide` alone gives it."""
    facts = [base] + [base | {name: v} for name, values in _FACT_VALUES.items() for v in values]
    grant = _grant(max_tlp_rank=max_tlp, min_confidence=min_confidence, types=types, embargo_us=embargo)
    scope = visibility.RelayScope(
        partner_pk=7, partner="cert-x", relayers=frozenset({8}), names={7: "cert-x", 8: "cert-y", 9: "cert-z"}
    )
    access = dataclasses.replace(_access(grant, now_us=2_000), relay=scope)
    rows = [_row(i + 1, **f) for i, f in enumerate(facts)]
    expected = [
        r.pk
        for r in rows
        if decide(
            grant,
            ObjectFacts(
                stix_id=r.stix_id,
                type=r.type,
                tlp_rank=r.tlp_rank,
                default_tlp_rank=2,
                confidence=r.confidence,
                date_added_us=r.date_added_us,
                audience=None if r.audience is None else frozenset(p for p in r.audience.split(",") if p),
                revoked=r.revoked,
                provenance=gate.provenance(r, scope, set()),
            ),
            now_us=2_000,
            relayers=scope.relayer_names,
        ).allowed
    ]
    assert [r.pk for r in gate.check(db, rows, access)] == expected


def test_page_statements_are_kept_per_grant_but_not_for_caller_chosen_id_or_type_lists(db) -> None:  # type: ignore[no-untyped-def]
    cols = (ObjectVersion.pk, ObjectVersion.date_added_us)
    key = ("grant", uuid.uuid4().hex)
    before = len(query._STATEMENTS)
    query.keyset_page(
        db, key=key, collection_pk=1, flt=query.ObjectFilter(), after_us=None, limit=5, columns=cols
    )
    query.keyset_page(
        db, key=key, collection_pk=1, flt=query.ObjectFilter(), after_us=7, limit=5, columns=cols
    )
    assert len(query._STATEMENTS) == min(before + 1, query._STATEMENTS_KEPT)  # one, reused for the next page
    for n in range(3):
        chosen = query.ObjectFilter(ids=(f"indicator--{uuid.UUID(int=n)}",))
        query.keyset_page(db, key=key, collection_pk=1, flt=chosen, after_us=None, limit=5, columns=cols)
        query.keyset_page(
            db,
            key=key,
            collection_pk=1,
            flt=query.ObjectFilter(types=(f"t{n}",)),
            after_us=None,
            limit=5,
            columns=cols,
        )
    assert len(query._STATEMENTS) == min(before + 1, query._STATEMENTS_KEPT)
    kept = [k[2] for k in query._STATEMENTS if k[0] == key]
    assert kept == [query.ObjectFilter()]  # the lists' statements were built, used and dropped


def _committed(engine, settings, count: int) -> tuple[int, list[int], int]:  # type: ignore[no-untyped-def]
    """`count` stored versions and a partner, committed (what record_versions_committed sees)."""
    with session_scope(make_session_factory(engine), write=True) as db:
        coll_pk, pks = _stored(db, settings, count)
        return coll_pk, pks, _partner(db)


def _record_committed(engine, coll_pk: int, partner_pk: int, pks: list[int]) -> int:  # type: ignore[no-untyped-def]
    return disclosure.record_versions_committed(
        make_session_factory(engine),
        partner_pk=partner_pk,
        credential_id="cred-y",
        requested_by="cred-y",
        object_version_pks=pks,
        collection_pk=coll_pk,
        channel="taxii",
    )


def test_a_delivery_committed_on_its_own_is_there_for_every_session(engine, settings) -> None:  # type: ignore[no-untyped-def]
    """A TAXII page's ledger is committed before the page is answered, in one statement on
    PostgreSQL: another session sees the delivery and each of its rows, a repeat included."""
    coll_pk, pks, partner_pk = _committed(engine, settings, 3)
    statements: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _many):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert _record_committed(engine, coll_pk, partner_pk, [pks[0], pks[1], pks[2], pks[0]]) == 4
    finally:
        event.remove(engine, "before_cursor_execute", count)
    if engine.dialect.name == "postgresql":
        assert len(statements) == 1, statements
    with session_scope(make_session_factory(engine)) as db:
        assert _deliveries(db, coll_pk) == [("cred-y", "cred-y", "taxii", 4)]
        assert sorted(pk for pk, _, _ in _ledger_rows(db, coll_pk)) == sorted([pks[0], *pks])


def test_a_delivery_committed_on_its_own_with_a_deleted_version_leaves_nothing(engine, settings) -> None:  # type: ignore[no-untyped-def]
    """The statement is all or nothing without any rollback of the caller's: a version deleted
    since the page was read makes it 503 and records neither the delivery nor any row."""
    coll_pk, pks, partner_pk = _committed(engine, settings, 4)
    with session_scope(make_session_factory(engine), write=True) as db:
        gone_id = db.scalar(select(ObjectVersion.stix_id).where(ObjectVersion.pk == pks[1]))
        assert query.delete_versions(
            db, collection_pk=coll_pk, stix_id=gone_id, flt=query.ObjectFilter(versions=("all",))
        )
    with pytest.raises(ServiceUnavailableError):
        _record_committed(engine, coll_pk, partner_pk, pks)
    with session_scope(make_session_factory(engine)) as db:
        assert _ledger_rows(db, coll_pk) == [] and _deliveries(db, coll_pk) == []
    # The versions still stored are recorded as usual.
    assert _record_committed(engine, coll_pk, partner_pk, [pks[0], pks[2]]) == 2
