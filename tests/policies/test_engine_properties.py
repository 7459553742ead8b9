"""Properties of `decide` and `redact` over random facts, grants and objects (hypothesis)."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.engine import ObjectFacts, ReadGrant, decide, read_grant, redact
from policies.schemas import AgreementDoc
from policies.tlp import LEVELS

PARTNERS = ["cert-in", "cert-xx", "cert-yy"]
TYPES = ["indicator", "malware", "relationship", "sighting", "report", "x-custom"]
NOW_US = 1_780_000_000 * 1_000_000
DAY_US = 86_400 * 1_000_000

confidences = st.none() | st.integers(min_value=0, max_value=100)
type_sets = st.none() | st.frozensets(st.sampled_from(TYPES))
audiences = st.none() | st.frozensets(st.sampled_from(PARTNERS))
# Ranks outside 0..4 stand for a corrupt row; decide must withhold them.
object_ranks = st.none() | st.integers(min_value=-2, max_value=6)
embargoes = st.sampled_from([0, 1, DAY_US]) | st.integers(min_value=0, max_value=30 * DAY_US)

grants = st.builds(
    ReadGrant,
    partner=st.sampled_from(PARTNERS),
    collection=st.just("indicators"),
    max_tlp_rank=st.integers(min_value=0, max_value=3),
    types=type_sets,
    min_confidence=confidences,
    embargo_us=embargoes,
    redact=st.just(()),
    anonymize_source=st.booleans(),
)
facts = st.builds(
    ObjectFacts,
    stix_id=st.just("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"),
    type=st.sampled_from(TYPES),
    tlp_rank=object_ranks,
    default_tlp_rank=st.integers(min_value=-1, max_value=5),
    confidence=confidences,
    date_added_us=st.integers(min_value=NOW_US - 40 * DAY_US, max_value=NOW_US + DAY_US),
    audience=audiences,
    refs_visible=st.booleans(),
    revoked=st.booleans(),
)


def rules_allow(grant: ReadGrant, f: ObjectFacts, now_us: int) -> bool:
    """Each rule of DESIGN.md "Sharing agreements", checked on its own."""
    level = f.default_tlp_rank if f.tlp_rank is None else f.tlp_rank
    shareable = {"clear": 0, "green": 1, "amber": 2, "amber+strict": 3}  # red is not in it
    tlp_ok = level in shareable.values() and level <= grant.max_tlp_rank
    type_ok = grant.types is None or f.type in grant.types
    confidence_ok = grant.min_confidence is None or (
        f.confidence is not None and f.confidence >= grant.min_confidence
    )
    embargo_ok = grant.embargo_us == 0 or f.date_added_us <= now_us - grant.embargo_us
    audience_ok = f.audience is None or grant.partner in f.audience
    return all([tlp_ok, type_ok, confidence_ok, embargo_ok, audience_ok, f.refs_visible])


@settings(max_examples=2000)
@given(
    grant=grants,
    f=facts,
    now_offset=st.integers(min_value=-DAY_US, max_value=DAY_US),
    at_embargo_edge=st.none() | st.integers(min_value=-2, max_value=2),
)
def test_decide_allows_exactly_when_every_rule_allows(
    grant: ReadGrant, f: ObjectFacts, now_offset: int, at_embargo_edge: int | None
) -> None:
    now_us = NOW_US + now_offset
    if at_embargo_edge is not None:  # a few microseconds either side of the embargo's end
        f = ObjectFacts(**{**vars(f), "date_added_us": now_us - grant.embargo_us + at_embargo_edge})
    decision = decide(grant, f, now_us=now_us)
    assert decision.allowed is rules_allow(grant, f, now_us)
    assert (decision.reason == "allowed") is decision.allowed
    level = f.default_tlp_rank if f.tlp_rank is None else f.tlp_rank
    if level == 4 or level not in range(5):
        assert not decision.allowed


@given(f=facts)
def test_no_grant_allows_nothing(f: ObjectFacts) -> None:
    assert not decide(None, f, now_us=NOW_US).allowed


@given(
    max_tlp=st.sampled_from([*LEVELS, "white", "AMBER+STRICT", "RED"]),
    f=facts,
    partner=st.sampled_from(PARTNERS),
    days_into=st.integers(min_value=-3, max_value=12),
    status=st.sampled_from(["draft", "active", "suspended"]),
    partner_active=st.booleans(),
)
def test_red_never_leaves_whatever_the_agreement_says(
    max_tlp: str, f: ObjectFacts, partner: str, days_into: int, status: str, partner_active: bool
) -> None:
    doc = AgreementDoc.model_validate(
        {
            "partner": partner,
            "title": "t",
            "valid_from": date(2026, 1, 1),
            "valid_until": date(2026, 1, 10),
            "status": status,
            "read": {"collections": ["indicators"], "max_tlp": max_tlp},
        }
    )
    now = datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(days=days_into)
    grant = read_grant(doc, collection="indicators", now=now, partner_active=partner_active)
    in_force = status == "active" and partner_active and 0 <= days_into <= 9
    assert (grant is not None) is in_force
    if grant is None:
        return
    assert grant.max_tlp_rank <= 3
    red = ObjectFacts(**{**vars(f), "tlp_rank": 4})
    assert not decide(grant, red, now_us=NOW_US).allowed
    unmarked_red = ObjectFacts(**{**vars(f), "tlp_rank": None, "default_tlp_rank": 4})
    assert not decide(grant, unmarked_red, now_us=NOW_US).allowed


json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "x_c"]), inner, max_size=3)
    ),
    max_leaves=10,
)
objects = st.fixed_dictionaries(
    {
        "type": st.just("indicator"),
        "id": st.just("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"),
        "spec_version": st.just("2.1"),
        "created": st.just("2026-01-01T00:00:00Z"),
        "modified": st.just("2026-01-01T00:00:00Z"),
    },
    optional={
        "created_by_ref": st.sampled_from(["identity--1", "identity--ours"]),
        "a": json_values,
        "x_c": json_values,
        "extensions": json_values,
    },
)
paths = st.lists(
    st.lists(st.sampled_from(["a", "b", "x_c", "extensions"]), min_size=1, max_size=3).map(".".join),
    max_size=3,
    unique=True,
).map(tuple)


@given(obj=objects, redact_paths=paths, anonymize=st.booleans())
def test_redact_never_mutates_and_returns_none_only_when_nothing_changes(
    obj: dict[str, Any], redact_paths: tuple[str, ...], anonymize: bool
) -> None:
    grant = ReadGrant("cert-in", "indicators", 2, None, None, 0, redact_paths, anonymize)
    before = copy.deepcopy(obj)
    result = redact(obj, grant, exchange_identity="identity--ours")
    assert obj == before
    if result is None:
        return
    assert result != obj
    for key in ("type", "id", "spec_version", "created", "modified"):
        assert result[key] == obj[key]
    if anonymize and "created_by_ref" in obj:
        assert result["created_by_ref"] == "identity--ours"
