"""What the exchange itself produces is clean STIX 2.1 by the OASIS validator's strict rules."""

from __future__ import annotations

import pytest
from stix2validator import ValidationOptions, validate_instance

from exchange.demo import sample_objects
from exchange.intel.ids import deterministic_id
from policies.tlp import CANONICAL_MARKINGS

OBJECTS = [o for objs in sample_objects().values() for o in objs]


@pytest.mark.parametrize("obj", OBJECTS + list(CANONICAL_MARKINGS.values()), ids=lambda o: o["id"])
def test_strictly_valid(obj):
    result = validate_instance(obj, ValidationOptions(version="2.1", strict=True))
    assert result.is_valid and not result.warnings, [str(e) for e in result.errors + result.warnings]


def test_deterministic_ids_are_stable_v4_shaped_and_distinct():
    first = deterministic_id("indicator", "[ipv4-addr:value = '10.0.0.1']")
    assert first == deterministic_id("indicator", "[ipv4-addr:value = '10.0.0.1']")
    assert first != deterministic_id("indicator", "[ipv4-addr:value = '10.0.0.2']")
    assert first[len("indicator--") :][14] == "4" and first[len("indicator--") :][19] in "89ab"


def test_the_demo_partner_receives_the_demo_strictly_valid_and_misp_reads_its_incident(db, settings):
    import orjson

    from exchange import demo
    from exchange.export.service import export_bundle
    from exchange.intel.service import get_api_root
    from tests.support.strict import bundle_problems, to_misp

    demo.load(db, get_api_root(db, settings.api_root))
    credential_id, key, _ = demo.load_partner(db)
    assert credential_id and key
    ours = {o["id"] for o in OBJECTS}
    received = {}
    for alias in ("indicators", "incidents"):
        result = export_bundle(
            db,
            partner_slug=demo.DEMO_PARTNER,
            collection_ref=alias,
            api_root=settings.api_root,
            actor="test",
            exchange_identity=settings.identity_id,
        )
        bundle = orjson.loads(result.unsigned_bytes)
        # The shared test database holds other tests' objects too: judge the demo's.
        bundle["objects"] = [o for o in bundle["objects"] if o["id"] in ours]
        assert bundle_problems(bundle) == []
        received[alias] = bundle["objects"]
    assert {o["type"] for o in received["indicators"]} >= {"indicator", "malware", "relationship"}
    [event] = to_misp(received["incidents"])
    assert event.info == "Phishing wave against bank customers"
    assert {"severity:high", "incident-type:phishing", "tlp:amber"} <= {t.name for t in event.tags}
