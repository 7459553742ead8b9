"""A statement marking that reads like a TLP level ("TLP:RED") counts as that level, never as
unmarked: defined in the same envelope, stored earlier, or arriving after the objects it marks."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from exchange.intel import service as intel_service
from exchange.intel.ingest import ingest
from exchange.intel.models import ObjectVersion
from policies.tlp import rank, statement_level
from tests.support.partners import agreement_doc
from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, post


def statement(text: str, name: str | None = None) -> dict[str, Any]:
    marking: dict[str, Any] = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "definition_type": "statement",
        "definition": {"statement": text},
    }
    if name:
        marking["name"] = name
    return marking


def marked(marking: dict[str, Any], n: int = 0, **extra: Any) -> dict[str, Any]:
    obj = indicator(n, **extra)
    obj["object_marking_refs"] = [marking["id"]]
    return obj


@pytest.mark.parametrize(
    ("text", "name", "level"),
    [
        ("TLP:RED", None, "red"),
        ("TLP: AMBER+STRICT", None, "amber+strict"),
        ("tlp:amber", None, "amber"),
        ("TLP:AMBER + STRICT", None, "amber+strict"),
        ("TLP RED - do not share", None, "red"),
        ("Traffic Light Protocol: GREEN", None, "green"),
        ("TLP:WHITE", None, "clear"),
        ("Distribute under TLP:GREEN or TLP:RED", None, "red"),  # the most restrictive
        ("Copyright 2026 ACME", "TLP:AMBER", "amber"),  # the name counts too
        ("Copyright 2026 ACME", "PAP:RED", None),
        ("TLP:AMBERISH", None, None),
    ],
)
def test_statement_level(text: str, name: str | None, level: str | None) -> None:
    assert statement_level(statement(text, name)) == level


def _ranks(db, coll, ids) -> dict[str, int | None]:  # type: ignore[no-untyped-def]
    return dict(
        db.execute(
            select(ObjectVersion.stix_id, ObjectVersion.tlp_rank).where(
                ObjectVersion.collection_pk == coll.pk, ObjectVersion.stix_id.in_(ids)
            )
        ).all()
    )


def test_statement_markings_set_the_stored_level(db, settings):
    root = intel_service.get_api_root(db, settings.api_root)
    coll = intel_service.create_collection(db, api_root=root, alias=f"c-{uuid.uuid4().hex[:12]}", title="t")
    other = intel_service.create_collection(db, api_root=root, alias=f"c-{uuid.uuid4().hex[:12]}", title="t")
    red, strict = statement("TLP:RED"), statement("TLP: AMBER+STRICT")
    same_envelope = marked(red, 1)
    granular = indicator(2, granular_markings=[{"marking_ref": strict["id"], "selectors": ["name"]}])
    ingest(db, collection=coll, objects=[red, strict, same_envelope, granular], origin="analyst")
    assert _ranks(db, coll, [same_envelope["id"], granular["id"]]) == {
        same_envelope["id"]: rank("red"),
        granular["id"]: rank("amber+strict"),
    }
    # Stored earlier, even in another collection.
    later = marked(red, 3)
    ingest(db, collection=other, objects=[later], origin="analyst")
    assert _ranks(db, other, [later["id"]]) == {later["id"]: rank("red")}
    # The objects first, their marking definition afterwards.
    amber = statement("tlp:amber")
    early = marked(amber, 4)
    ingest(db, collection=other, objects=[early], origin="analyst")
    assert _ranks(db, other, [early["id"]]) == {early["id"]: None}
    ingest(db, collection=coll, objects=[amber], origin="analyst")
    assert _ranks(db, other, [early["id"]]) == {early["id"]: rank("amber")}
    # A stronger canonical marking stays; a statement never lowers a level.
    both = marked(amber, 5)
    both["object_marking_refs"].append(
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
    )  # TLP 2.0 RED
    ingest(db, collection=coll, objects=[both], origin="analyst")
    assert _ranks(db, coll, [both["id"]]) == {both["id"]: rank("red")}


@pytest.mark.live
def test_a_partner_never_receives_what_a_statement_marks_above_its_ceiling(live_server, partners):
    coll = live_server.collection(default_tlp="green")
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    _, cred = partners.add(lambda s: agreement_doc(s, read=read))
    red, strict, amber = statement("TLP:RED"), statement("TLP: AMBER+STRICT"), statement("tlp:amber")
    plain = indicator(0)
    objects = [red, strict, amber, marked(red, 1), marked(strict, 2), marked(amber, 3), plain]
    url = live_server.collection_url(coll)
    with httpx.Client(auth=live_server.credential("admin"), headers={"Accept": TAXII}, timeout=30) as staff:
        assert post(staff, url, envelope(objects)).json()["success_count"] == len(objects)
    with httpx.Client(auth=cred, headers={"Accept": TAXII}, timeout=30) as partner:
        served = partner.get(f"{url}objects/", params={"match[type]": "indicator"}).json().get("objects", [])
    assert sorted(o["id"] for o in served) == sorted([objects[5]["id"], plain["id"]])
