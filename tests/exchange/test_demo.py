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
