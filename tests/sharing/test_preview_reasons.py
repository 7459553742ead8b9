"""The preview of a draft agreement: what it would withhold and why, and what it changes
compared with the agreement in force, counted in SQL and checked against the objects the test
stored and the rules it knows each one fails."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from exchange.agreement import service as agreement_service
from exchange.database.types import utcnow
from exchange.intel import service as intel_service
from exchange.intel.ingest import ingest
from exchange.partner import service as partner_service
from exchange.sharing import preview as preview_service
from tests.support.partners import agreement_doc
from tests.support.stix import AMBER, GREEN, indicator, sdo


@pytest.fixture
def scene(db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One collection, ten latest objects, each failing a known set of rules of the narrow draft."""
    root = intel_service.get_api_root(db, "root")
    alias = f"pv-{uuid.uuid4().hex[:8]}"
    coll = intel_service.create_collection(db, api_root=root, alias=alias, title="t", default_tlp="green")
    slug, other = (f"p-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for s in (slug, other):
        partner_service.create(db, slug=s, name=s, country="IN", actor="test")
    greens = [indicator(marking=GREEN, confidence=80) for _ in range(3)]
    ambers = [indicator(marking=AMBER, confidence=80) for _ in range(2)]
    low = indicator(marking=GREEN, confidence=10)
    unknown = indicator(marking=GREEN)  # no confidence: withheld under min_confidence (fail closed)
    malware = sdo("malware", GREEN, name="m", is_family=False, confidence=80)
    rel = sdo(
        "relationship",
        GREEN,
        relationship_type="related-to",
        source_ref=greens[0]["id"],
        target_ref=ambers[0]["id"],
        confidence=80,
    )
    objects = [*greens, *ambers, low, unknown, malware, rel]
    assert ingest(db, collection=coll, objects=objects, origin="analyst").failures == []
    narrowed = indicator(marking=GREEN, confidence=80)
    assert ingest(db, collection=coll, objects=[narrowed], origin="analyst", audience=[other]).failures == []
    return {
        "db": db,
        "alias": alias,
        "slug": slug,
        "visible_wide": {o["id"] for o in objects},  # everything but the object narrowed to `other`
        "greens": greens,
    }


WIDE = {"max_tlp": "amber"}
NARROW = {"max_tlp": "green", "types": ["indicator", "relationship", "malwre"], "min_confidence": 50}


def _doc(scene: dict[str, Any], read: dict[str, Any] | None, collections: list[str] | None = None) -> Any:
    body = agreement_doc(
        scene["slug"], read=None if read is None else {"collections": collections or [scene["alias"]], **read}
    )
    return agreement_service.validate(scene["db"], body)


def _apply(scene: dict[str, Any], read: dict[str, Any]) -> None:
    agreement_service.apply(
        scene["db"],
        agreement_doc(scene["slug"], read={"collections": [scene["alias"]], **read}),
        actor="test",
    )


def _coll(report: dict[str, Any], alias: str) -> dict[str, Any]:
    return next(c for c in report["collections"] if c["collection"] == alias)


def test_a_narrowing_draft_says_what_it_withholds_and_why(scene):
    _apply(scene, WIDE)
    report = preview_service.preview(scene["db"], _doc(scene, NARROW), now=utcnow())
    mine = _coll(report, scene["alias"])
    assert mine["total"] == 3  # the three green indicators with confidence 80
    assert {o["id"] for o in mine["sample"]} <= {o["id"] for o in scene["greens"]}
    assert mine["withheld"] == 7
    assert mine["withheld_by"] == {"tlp": 2, "type": 1, "confidence": 2, "audience": 1, "references": 1}
    # In force now: nine objects (all but the one narrowed to another partner); the draft keeps three.
    assert mine["change"] == {
        "becomes_visible": 0,
        "becomes_withheld": 6,
        "withheld_by": {"tlp": 2, "type": 1, "confidence": 2, "references": 1},
    }
    assert report["change"]["becomes_withheld"] == 6 and report["compared_with"] == "agreement in force"
    assert report["withheld_by"] == mine["withheld_by"]
    assert any("'malwre'" in w and "did you mean 'malware'" in w for w in report["warnings"])


def test_a_widening_draft_counts_what_becomes_visible(scene):
    _apply(scene, NARROW)
    report = preview_service.preview(scene["db"], _doc(scene, WIDE), now=utcnow())
    mine = _coll(report, scene["alias"])
    assert mine["total"] == len(scene["visible_wide"]) == 9
    assert {o["id"] for o in mine["sample"]} <= scene["visible_wide"]
    assert mine["withheld_by"] == {"audience": 1}
    assert mine["change"]["becomes_visible"] == 6 and mine["change"]["becomes_withheld"] == 0
    assert report["warnings"] == []


def test_dropping_a_collection_withholds_all_it_showed(scene):
    _apply(scene, WIDE)
    report = preview_service.preview(scene["db"], _doc(scene, WIDE, collections=["indicators"]), now=utcnow())
    dropped = _coll(report, scene["alias"])
    assert dropped["granted"] is False
    assert dropped["change"] == {
        "becomes_visible": 0,
        "becomes_withheld": 9,
        "withheld_by": {"collection": 9},
    }
    no_read = preview_service.preview(scene["db"], _doc(scene, None), now=utcnow())
    assert no_read["change"]["becomes_withheld"] == 9 and no_read["total"] == 0


def test_an_embargo_and_no_agreement_in_force(scene):
    report = preview_service.preview(scene["db"], _doc(scene, {**WIDE, "embargo": "24h"}), now=utcnow())
    mine = _coll(report, scene["alias"])
    assert report["compared_with"].startswith("nothing")
    assert mine["total"] == 0 and mine["withheld_by"]["embargo"] == 10
    assert mine["change"] == {"becomes_visible": 0, "becomes_withheld": 0, "withheld_by": {}}
    first = preview_service.preview(scene["db"], _doc(scene, WIDE), now=utcnow())
    assert first["change"]["becomes_visible"] == 9


def test_previewing_the_agreement_in_force_changes_nothing(scene):
    _apply(scene, WIDE)
    current = agreement_service.validate(
        scene["db"], agreement_service.current_document(scene["db"], scene["slug"])
    )
    report = preview_service.preview(scene["db"], current, now=utcnow())
    assert report["unchanged"] is True and report["change"]["becomes_visible"] == 0
    assert _coll(report, scene["alias"])["total"] == 9


def test_a_draft_outside_its_window_withholds_everything_as_not_in_force(scene):
    _apply(scene, WIDE)
    body = agreement_doc(
        scene["slug"], read={"collections": [scene["alias"]], **WIDE}, days_before=400, days_after=-10
    )
    report = preview_service.preview(scene["db"], agreement_service.validate(scene["db"], body), now=utcnow())
    mine = _coll(report, scene["alias"])
    assert mine["granted"] is False and report["total"] == 0
    assert mine["change"] == {"becomes_visible": 0, "becomes_withheld": 9, "withheld_by": {"not_in_force": 9}}


def test_a_suspended_partner_is_previewed_as_seeing_nothing(scene):
    _apply(scene, WIDE)
    partner_service.set_status(scene["db"], scene["slug"], "suspended", actor="test")
    report = preview_service.preview(scene["db"], _doc(scene, WIDE), now=utcnow())
    assert report["total"] == 0 and report["partner_status"] == "suspended"
    # Nothing is in force for a suspended partner either, so the draft changes nothing.
    assert report["change"] == {"becomes_visible": 0, "becomes_withheld": 0, "withheld_by": {}}
