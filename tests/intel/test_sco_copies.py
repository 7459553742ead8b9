"""SCOs have no originator, only senders: each party's copy of a value is its own, and no
party's copy decides anything (revocation, duplicates, versions) for another's."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from exchange.intel import ingest as ingest_service
from exchange.intel import service
from exchange.intel.models import Collection, ObjectVersion
from tests.support.stix import AMBER, GREEN, RED

# Partner pks as ingest records them; no agreement is read here.
NP, LK = 9_000_001, 9_000_002


@pytest.fixture
def coll(db, settings) -> Collection:  # type: ignore[no-untyped-def]
    root = service.get_api_root(db, settings.api_root)
    return service.create_collection(db, api_root=root, alias=f"t-{uuid.uuid4().hex[:10]}", title="t")


@pytest.fixture
def other(db, settings) -> Collection:  # type: ignore[no-untyped-def]
    root = service.get_api_root(db, settings.api_root)
    return service.create_collection(db, api_root=root, alias=f"o-{uuid.uuid4().hex[:10]}", title="o")


def sco(**extra: Any) -> dict[str, Any]:
    n = uuid.uuid4().int
    value = f"10.{n % 250}.{n // 250 % 250}.{n // 62500 % 250}"
    ns = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
    return {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": f"ipv4-addr--{uuid.uuid5(ns, json.dumps({'value': value}))}",
        "value": value,
        **extra,
    }


def by_partner(db, coll, objs, pk):  # type: ignore[no-untyped-def]
    return ingest_service.ingest(
        db, collection=coll, objects=objs, origin="partner", added_by=f"cred-{pk}", origin_partner_pk=pk
    )


def by_analyst(db, coll, objs):  # type: ignore[no-untyped-def]
    return ingest_service.ingest(db, collection=coll, objects=objs, origin="analyst", added_by="cred-analyst")


def stored(db, stix_id):  # type: ignore[no-untyped-def]
    return list(db.scalars(select(ObjectVersion).where(ObjectVersion.stix_id == stix_id)))


def test_a_partner_cannot_revoke_a_value_for_everyone(db, coll, other):
    value = sco()
    refused = by_partner(db, other, [value | {"revoked": True}], NP)
    assert refused.created == 0 and "'revoked'" in refused.failures[0]["message"]
    assert by_analyst(db, coll, [value]).created == 1


def test_a_revoked_sco_stored_before_decides_nothing_for_other_copies(db, coll, other):
    # A row stored before validation refused `revoked` on SCOs: it stays the partner's own copy.
    value = sco()
    assert by_partner(db, other, [value], NP).created == 1
    db.execute(
        update(ObjectVersion)
        .where(ObjectVersion.stix_id == value["id"])
        .values(revoked=True, body=orjson.dumps(value | {"revoked": True}).decode())
    )
    analyst = by_analyst(db, coll, [value])
    assert (analyst.created, analyst.failures, analyst.conflicts) == (1, [], [])
    assert by_partner(db, other, [value], LK).created == 1
    assert (
        ingest_service.ingest(db, collection=coll, objects=[value | {"x_n": 1}], origin="feed").created == 1
    )


def test_a_partners_sco_is_stored_beside_the_certs_and_its_status_names_only_its_own_time(db, coll):
    # The CERT holds the value as RED: a partner posting each marking variant learns nothing
    # from the answers, and every post of its own is stored as its own copy.
    plain = sco()
    held = plain | {"object_marking_refs": [RED]}
    cert = by_analyst(db, coll, [held])
    cert_time = cert.successes[0]["version"]
    answers = {}
    for marking in (None, GREEN, AMBER, RED):
        variant = plain if marking is None else plain | {"object_marking_refs": [marking]}
        result = by_partner(db, coll, [variant], NP)
        answers[marking] = (result.created, result.duplicates, result.successes[0]["version"])
    assert [(created, dup) for created, dup, _ in answers.values()] == [(1, 0)] * 4
    assert cert_time not in {version for _, _, version in answers.values()}
    # Its own copy again is its own duplicate, with its own time.
    again = by_partner(db, coll, [held], NP)
    assert (again.created, again.duplicates, again.successes[0]["version"]) == (0, 1, answers[RED][2])


def test_a_partner_does_not_learn_another_partner_sent_a_value(db, coll):
    value = sco(object_marking_refs=[GREEN])
    first = by_partner(db, coll, [value], LK)
    second = by_partner(db, coll, [value], NP)
    assert (second.created, second.duplicates) == (1, 0)
    assert second.successes[0]["version"] != first.successes[0]["version"]
    assert {r.origin_partner_pk for r in stored(db, value["id"])} == {LK, NP}


def test_each_senders_newest_copy_stays_its_latest(db, coll):
    # Reads take latest versions: a partner's later copy must not push the CERT's (or another
    # partner's) copy out of what others read.
    value = sco(object_marking_refs=[GREEN])
    by_analyst(db, coll, [value])
    by_partner(db, coll, [value], NP)
    by_partner(db, coll, [value], LK)
    by_partner(db, coll, [value | {"x_seen": 2}], NP)
    latest = {(r.origin_partner_pk, r.body) for r in stored(db, value["id"]) if r.is_latest}
    assert {pk for pk, _ in latest} == {None, NP, LK} and len(latest) == 3
    assert (NP, orjson.dumps(value | {"x_seen": 2}, option=orjson.OPT_SORT_KEYS).decode()) in latest
