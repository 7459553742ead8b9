"""Originator control as a table: who may receive a version, given where it came from."""

from __future__ import annotations

import pytest

from policies.engine import (
    ObjectFacts,
    Provenance,
    ReadGrant,
    anonymize_relayed,
    decide,
    decide_relay,
    relayers_for,
    relays,
)
from policies.schemas import AgreementError, validate_agreement

P, Q, R = "cert-p", "cert-q", "cert-r"

CASES = [
    # provenance, recipient, relayers, allowed, reason starts with
    (None, R, frozenset(), True, "allowed"),
    (Provenance(), R, frozenset(), True, "allowed"),
    (Provenance(source=P, originator=P), P, frozenset({P}), False, "originator"),
    (Provenance(source=P, originator=P), R, frozenset(), False, "relay"),
    (Provenance(source=P, originator=P), R, frozenset({P}), True, "allowed"),
    (Provenance(source=P, originator=P), R, frozenset({Q}), False, "relay"),
    # a copy Q re-posted of P's object: both must relay, and neither gets it back
    (Provenance(source=Q, originator=P), R, frozenset({Q}), False, "relay"),
    (Provenance(source=Q, originator=P), R, frozenset({P}), False, "relay"),
    (Provenance(source=Q, originator=P), R, frozenset({P, Q}), True, "allowed"),
    (Provenance(source=Q, originator=P), Q, frozenset({P, Q}), False, "originator"),
    (Provenance(source=Q, originator=P), P, frozenset({P, Q}), False, "originator"),
    # the CERT's new version of P's object stays under P's control
    (Provenance(source=None, originator=P), R, frozenset(), False, "relay"),
    (Provenance(source=None, originator=P), P, frozenset({P}), False, "originator"),
    # an SCO P sent: no originator, its sender decides
    (Provenance(source=P), R, frozenset({P}), True, "allowed"),
    (Provenance(source=P), P, frozenset({P}), False, "originator"),
    # sightings flow back to the originator of what they sighted, and only to it
    (Provenance(source=R, originator=R, sighted_originator=Q), Q, frozenset(), True, "allowed"),
    (Provenance(source=R, originator=R, sighted_originator=Q), P, frozenset(), False, "relay"),
    (Provenance(source=R, originator=R, sighted_originator=R), R, frozenset(), False, "originator"),
    (Provenance(source=None, originator=None, sighted_originator=Q), Q, frozenset(), True, "allowed"),
]


@pytest.mark.parametrize(("provenance", "recipient", "relayers", "allowed", "reason"), CASES)
def test_decide_relay(provenance, recipient, relayers, allowed, reason):
    decision = decide_relay(provenance, recipient, relayers)
    assert decision.allowed is allowed
    assert decision.reason.startswith(reason)


def test_decide_applies_relay_before_closure():
    grant = ReadGrant(R, "c", 2, None, None, 0, (), False)
    facts = ObjectFacts("indicator--x", "indicator", 1, 1, None, 0, None, refs_visible=False)
    assert decide(grant, facts, now_us=1).reason.startswith("references")
    relayed = ObjectFacts(
        "indicator--x", "indicator", 1, 1, None, 0, None, provenance=Provenance(source=P, originator=P)
    )
    assert decide(grant, relayed, now_us=1).reason.startswith("relay")
    assert decide(grant, relayed, now_us=1, relayers=frozenset({P})).allowed
    # the other rules still apply to a relayed object
    red = ObjectFacts("indicator--x", "indicator", 4, 1, None, 0, None, provenance=Provenance(P, P))
    assert not decide(grant, red, now_us=1, relayers=frozenset({P})).allowed


@pytest.mark.parametrize(
    ("relay_to", "recipient", "expected"),
    [
        ("none", R, False),
        ("all", R, True),
        ([R], R, True),
        ([Q], R, False),
        ([], R, False),
        ("bogus", R, False),
    ],
)
def test_relays(relay_to, recipient, expected):
    assert relays(relay_to, recipient) is expected


def _doc(slug, relay_to="none", status="active", write=True, **write_extra):
    data = {
        "partner": slug,
        "title": "t",
        "valid_from": "2024-01-01",
        "valid_until": "2030-01-01",
        "status": status,
        "read": {"collections": ["c"], "max_tlp": "amber"},
    }
    if write:
        data["write"] = {"collections": ["c"], "relay_to": relay_to, **write_extra}
    return validate_agreement(data, known_collections={"c"}, known_partners={P, Q, R})


def test_relayers_for_reads_active_agreements_only():
    docs = {
        P: _doc(P, "all"),
        Q: _doc(Q, [R]),
        R: _doc(R, "all"),
        "cert-s": _doc(P, "all", status="suspended").model_copy(update={"partner": "cert-s"}),
        "cert-t": _doc(P, "all", status="draft").model_copy(update={"partner": "cert-t"}),
        "cert-u": _doc(P, write=False).model_copy(update={"partner": "cert-u"}),
    }
    assert relayers_for(R, docs) == {P, Q}
    assert relayers_for(Q, docs) == {P, R}
    assert relayers_for(P, docs) == {R}


def test_schema_defaults_and_refusals():
    doc = _doc(P)
    assert doc.write is not None and doc.write.relay_to == "none" and doc.write.anonymize_on_relay is False
    assert _doc(P, [Q, R]).write.relay_to == [Q, R]
    for bad, where in [
        ([P], "write.relay_to[0]"),  # itself
        (["nobody-here"], "write.relay_to[0]"),  # unknown partner
        ("some", "write.relay_to"),
        ([Q, Q], "write.relay_to"),
        (["Not A Slug"], "write.relay_to"),
    ]:
        with pytest.raises(AgreementError) as caught:
            _doc(P, bad)
        assert any(path.startswith(where) for path, _ in caught.value.problems), caught.value.problems


def test_anonymize_relayed_renames_the_creator_everywhere():
    obj = {
        "type": "sighting",
        "id": "sighting--1",
        "created_by_ref": "identity--p",
        "sighting_of_ref": "indicator--1",
        "where_sighted_refs": ["identity--p", "identity--other"],
    }
    out = anonymize_relayed(obj, "identity--p", exchange_identity="identity--cert")
    assert out is not None and out["created_by_ref"] == "identity--cert"
    assert out["where_sighted_refs"] == ["identity--cert", "identity--other"]
    assert obj["created_by_ref"] == "identity--p"  # not mutated
    assert anonymize_relayed({"type": "x", "id": "x--1"}, None, exchange_identity="identity--cert") is None
    gone = anonymize_relayed(obj, "identity--p", exchange_identity=None)
    assert (
        gone is not None
        and "created_by_ref" not in gone
        and gone["where_sighted_refs"] == ["identity--other"]
    )
