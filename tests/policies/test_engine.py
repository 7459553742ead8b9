"""Grants, decide, redact and references: table-driven, no database, no HTTP."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from policies.engine import (
    ObjectFacts,
    ReadGrant,
    WriteGrant,
    decide,
    read_grant,
    redact,
    references,
    write_grant,
)
from policies.schemas import AgreementDoc
from policies.tlp import LEVELS, TLP_1_0, TLP_2_0, object_tlp, rank

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000
HOUR_US = 3600 * 1_000_000
EXCHANGE = "identity--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061"
THIRD_PARTY = "identity--a463ffb3-1bd9-4d94-b02d-74e4f1658283"
INDICATOR = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
MALWARE = "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b"


def agreement(**changes: Any) -> AgreementDoc:
    data: dict[str, Any] = {
        "partner": "cert-in",
        "title": "MoU",
        "valid_from": "2024-03-05",
        "valid_until": "2029-03-04",
        "status": "active",
        "read": {"collections": ["indicators", "incidents"], "max_tlp": "amber"},
        "write": {"collections": ["partner-submissions"], "types": ["indicator", "sighting"]},
    }
    for key, value in changes.items():
        if key.startswith("read_"):
            data["read"][key.removeprefix("read_")] = value
        else:
            data[key] = value
    return AgreementDoc.model_validate(data)


def grant(**changes: Any) -> ReadGrant:
    found = read_grant(agreement(**changes), collection="indicators", now=NOW)
    assert found is not None
    return found


def facts(**changes: Any) -> ObjectFacts:
    base = ObjectFacts(
        stix_id=INDICATOR,
        type="indicator",
        tlp_rank=rank("green"),
        default_tlp_rank=rank("amber"),
        confidence=80,
        date_added_us=NOW_US - 48 * HOUR_US,
        audience=None,
    )
    return replace(base, **changes)


# --- grants: status, partner, window, collection ---------------------------------------------


def test_an_active_agreement_grants_what_it_says() -> None:
    doc = agreement(
        read_types=["indicator"],
        read_min_confidence=50,
        read_embargo="24h",
        read_redact=["x_notes", "extensions.x-ext.secret"],
        read_anonymize_source=True,
    )
    assert read_grant(doc, collection="indicators", now=NOW) == ReadGrant(
        partner="cert-in",
        collection="indicators",
        max_tlp_rank=2,
        types=frozenset({"indicator"}),
        min_confidence=50,
        embargo_us=24 * HOUR_US,
        redact=("x_notes", "extensions.x-ext.secret"),
        anonymize_source=True,
    )
    assert write_grant(doc, collection="partner-submissions", now=NOW) == WriteGrant(
        partner="cert-in",
        collection="partner-submissions",
        types=frozenset({"indicator", "sighting"}),
        require_signature=False,
    )


def test_omitted_types_grant_every_type_and_no_embargo() -> None:
    found = grant()
    assert found.types is None and found.min_confidence is None and found.embargo_us == 0
    assert found.redact == () and found.anonymize_source is False


@pytest.mark.parametrize(
    ("level", "expected_rank"),
    [
        ("clear", 0),
        ("green", 1),
        ("amber", 2),
        ("amber+strict", 3),
        ("red", 3),
    ],
)
def test_the_grant_ceiling_never_reaches_red(level: str, expected_rank: int) -> None:
    assert grant(read_max_tlp=level).max_tlp_rank == expected_rank


@pytest.mark.parametrize(
    ("changes", "partner_active", "now"),
    [
        pytest.param({"status": "draft"}, True, NOW, id="draft"),
        pytest.param({"status": "suspended"}, True, NOW, id="suspended"),
        pytest.param({}, False, NOW, id="suspended-partner"),
        pytest.param({"valid_until": "2026-05-31"}, True, NOW, id="expired-yesterday"),
        pytest.param({"valid_from": "2026-06-02"}, True, NOW, id="starts-tomorrow"),
        pytest.param({"valid_from": "2030-01-01", "valid_until": "2031-01-01"}, True, NOW, id="future"),
        pytest.param({"valid_from": "2020-01-01", "valid_until": "2021-01-01"}, True, NOW, id="long-expired"),
        # 01:00 on 2 June in Dhaka is still 1 June in UTC: the window is in UTC dates.
        pytest.param(
            {"valid_from": "2026-06-02"},
            True,
            datetime(2026, 6, 2, 1, 0, tzinfo=timezone(timedelta(hours=6))),
            id="utc-date",
        ),
    ],
)
def test_no_grant_outside_an_active_window(
    changes: dict[str, Any], partner_active: bool, now: datetime
) -> None:
    doc = agreement(**changes)
    assert read_grant(doc, collection="indicators", now=now, partner_active=partner_active) is None
    assert write_grant(doc, collection="partner-submissions", now=now, partner_active=partner_active) is None


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "now", "granted"),
    [
        ("2026-06-01", "2026-06-30", datetime(2026, 6, 1, 0, 0, 0, tzinfo=UTC), True),
        ("2026-06-01", "2026-06-30", datetime(2026, 5, 31, 23, 59, 59, 999999, tzinfo=UTC), False),
        ("2026-05-01", "2026-06-01", datetime(2026, 6, 1, 23, 59, 59, 999999, tzinfo=UTC), True),
        ("2026-05-01", "2026-06-01", datetime(2026, 6, 2, 0, 0, 0, tzinfo=UTC), False),
        ("2026-06-01", "2026-06-01", datetime(2026, 6, 1, 12, 0, tzinfo=UTC), True),
        ("2026-06-01", "2026-06-01", datetime(2026, 6, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))), True),
        ("2026-06-01", "2026-06-01", datetime(2026, 6, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))), False),
    ],
)
def test_window_boundaries_are_inclusive_utc_dates(
    valid_from: str, valid_until: str, now: datetime, granted: bool
) -> None:
    doc = agreement(valid_from=valid_from, valid_until=valid_until)
    assert (read_grant(doc, collection="indicators", now=now) is not None) is granted
    assert (write_grant(doc, collection="partner-submissions", now=now) is not None) is granted


def test_naive_now_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="timezone"):
        read_grant(agreement(), collection="indicators", now=datetime(2026, 6, 1))


@pytest.mark.parametrize("collection", ["partner-submissions", "other", "", "INDICATORS"])
def test_no_read_grant_for_a_collection_not_listed(collection: str) -> None:
    assert read_grant(agreement(), collection=collection, now=NOW) is None


@pytest.mark.parametrize("collection", ["indicators", "other"])
def test_no_write_grant_for_a_collection_not_listed(collection: str) -> None:
    assert write_grant(agreement(), collection=collection, now=NOW) is None


def test_no_grant_without_the_section() -> None:
    doc = agreement(read=None, write=None)
    assert read_grant(doc, collection="indicators", now=NOW) is None
    assert write_grant(doc, collection="partner-submissions", now=NOW) is None


def test_partner_active_must_be_true_not_merely_truthy() -> None:
    assert read_grant(agreement(), collection="indicators", now=NOW, partner_active="no") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"max_tlp_rank": 4},
        {"max_tlp_rank": -1},
        {"embargo_us": -1},
        {"min_confidence": 101},
        {"redact": ("id",)},
        {"redact": ("object_marking_refs",)},
    ],
)
def test_a_read_grant_cannot_be_built_to_leak(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(grant(), **changes)


# --- TLP: every object level against every ceiling, TLP 1.0 and 2.0 markings -------------------

MARKINGS: dict[str, list[str]] = {
    "1.0 white": [TLP_1_0["white"]["id"]],
    "1.0 green": [TLP_1_0["green"]["id"]],
    "1.0 amber": [TLP_1_0["amber"]["id"]],
    "1.0 red": [TLP_1_0["red"]["id"]],
    "2.0 clear": [TLP_2_0["clear"]["id"]],
    "2.0 green": [TLP_2_0["green"]["id"]],
    "2.0 amber": [TLP_2_0["amber"]["id"]],
    "2.0 amber+strict": [TLP_2_0["amber+strict"]["id"]],
    "2.0 red": [TLP_2_0["red"]["id"]],
    "1.0 white + 2.0 green": [TLP_1_0["white"]["id"], TLP_2_0["green"]["id"]],
    "2.0 clear + 1.0 amber": [TLP_2_0["clear"]["id"], TLP_1_0["amber"]["id"]],
    "1.0 amber + 2.0 amber+strict": [TLP_1_0["amber"]["id"], TLP_2_0["amber+strict"]["id"]],
    "2.0 green + 1.0 red": [TLP_2_0["green"]["id"], TLP_1_0["red"]["id"]],
    "1.0 green + 2.0 green": [TLP_1_0["green"]["id"], TLP_2_0["green"]["id"]],
}
EXPECTED_LEVEL = {
    "1.0 white": "clear",
    "1.0 green": "green",
    "1.0 amber": "amber",
    "1.0 red": "red",
    "2.0 clear": "clear",
    "2.0 green": "green",
    "2.0 amber": "amber",
    "2.0 amber+strict": "amber+strict",
    "2.0 red": "red",
    "1.0 white + 2.0 green": "green",
    "2.0 clear + 1.0 amber": "amber",
    "1.0 amber + 2.0 amber+strict": "amber+strict",
    "2.0 green + 1.0 red": "red",
    "1.0 green + 2.0 green": "green",
}
# What each ceiling lets out: written out by hand, not computed.
LETS_OUT = {
    "clear": {"clear"},
    "green": {"clear", "green"},
    "amber": {"clear", "green", "amber"},
    "amber+strict": {"clear", "green", "amber", "amber+strict"},
    "red": {"clear", "green", "amber", "amber+strict"},  # red never leaves
}


@pytest.mark.parametrize("ceiling", LEVELS)
@pytest.mark.parametrize("marking", list(MARKINGS))
def test_every_tlp_pair(marking: str, ceiling: str) -> None:
    obj = {"type": "indicator", "id": INDICATOR, "object_marking_refs": MARKINGS[marking]}
    level = object_tlp(obj)
    assert level == EXPECTED_LEVEL[marking]
    decision = decide(grant(read_max_tlp=ceiling), facts(tlp_rank=rank(level)), now_us=NOW_US)
    assert decision.allowed is (level in LETS_OUT[ceiling]), decision
    if not decision.allowed:
        assert "tlp" in decision.reason and level in decision.reason


def test_granular_markings_count_too() -> None:
    obj = {
        "type": "indicator",
        "id": INDICATOR,
        "object_marking_refs": [TLP_2_0["green"]["id"]],
        "granular_markings": [{"marking_ref": TLP_2_0["amber+strict"]["id"], "selectors": ["name"]}],
    }
    level = object_tlp(obj)
    assert level == "amber+strict"
    assert not decide(grant(read_max_tlp="amber"), facts(tlp_rank=rank(level)), now_us=NOW_US).allowed
    assert decide(grant(read_max_tlp="amber+strict"), facts(tlp_rank=rank(level)), now_us=NOW_US).allowed


@pytest.mark.parametrize(
    ("object_level", "ceiling", "reason"),
    [
        ("amber+strict", "amber", "tlp amber+strict above ceiling amber"),
        ("amber", "green", "tlp amber above ceiling green"),
        ("green", "clear", "tlp green above ceiling clear"),
        ("red", "amber+strict", "tlp red never leaves the exchange"),
        ("red", "red", "tlp red never leaves the exchange"),
    ],
)
def test_tlp_reasons(object_level: str, ceiling: str, reason: str) -> None:
    decision = decide(grant(read_max_tlp=ceiling), facts(tlp_rank=rank(object_level)), now_us=NOW_US)
    assert decision.allowed is False
    assert decision.reason == reason


@pytest.mark.parametrize("ceiling", LEVELS)
@pytest.mark.parametrize("default", LEVELS)
def test_unmarked_objects_take_the_collection_default(default: str, ceiling: str) -> None:
    decision = decide(
        grant(read_max_tlp=ceiling), facts(tlp_rank=None, default_tlp_rank=rank(default)), now_us=NOW_US
    )
    assert decision.allowed is (default in LETS_OUT[ceiling]), decision


def test_a_marked_object_ignores_the_collection_default() -> None:
    # Marked clear in a collection whose unmarked objects are red: its own marking decides.
    assert decide(grant(), facts(tlp_rank=0, default_tlp_rank=4), now_us=NOW_US).allowed
    assert not decide(grant(), facts(tlp_rank=4, default_tlp_rank=0), now_us=NOW_US).allowed


@pytest.mark.parametrize(("tlp_rank", "default"), [(5, 0), (-1, 0), (None, 5), (None, -1), (True, 0)])
def test_an_unknown_rank_is_withheld(tlp_rank: Any, default: int) -> None:
    decision = decide(
        replace(grant(), max_tlp_rank=3), facts(tlp_rank=tlp_rank, default_tlp_rank=default), now_us=NOW_US
    )
    assert not decision.allowed and "unknown tlp rank" in decision.reason


def test_a_hand_built_grant_above_amber_strict_still_refuses_red() -> None:
    rogue = ReadGrant.__new__(ReadGrant)  # bypasses __post_init__, as a careless caller might
    for name, value in vars(grant()).items():
        object.__setattr__(rogue, name, value)
    object.__setattr__(rogue, "max_tlp_rank", 4)
    assert decide(rogue, facts(tlp_rank=4), now_us=NOW_US).reason == "tlp red never leaves the exchange"


# --- types, confidence, embargo, audience, closure, revocation ---------------------------------


@pytest.mark.parametrize(
    ("types", "kind", "allowed"),
    [
        (None, "malware", True),
        (["indicator", "malware"], "malware", True),
        (["indicator"], "malware", False),
        ([], "indicator", False),
        (["indicator"], "x-custom-thing", False),
    ],
)
def test_types(types: list[str] | None, kind: str, allowed: bool) -> None:
    decision = decide(grant(read_types=types), facts(type=kind), now_us=NOW_US)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason == f"type {kind!r} not granted"


@pytest.mark.parametrize(
    ("minimum", "confidence", "reason"),
    [
        (None, None, "allowed"),
        (None, 0, "allowed"),
        (50, 50, "allowed"),
        (50, 100, "allowed"),
        (50, 49, "confidence 49 below minimum 50"),
        (50, 0, "confidence 0 below minimum 50"),
        (50, None, "no confidence and a minimum of 50 applies"),
        (0, None, "no confidence and a minimum of 0 applies"),
        (0, 0, "allowed"),
        (100, 99, "confidence 99 below minimum 100"),
    ],
)
def test_min_confidence(minimum: int | None, confidence: int | None, reason: str) -> None:
    decision = decide(grant(read_min_confidence=minimum), facts(confidence=confidence), now_us=NOW_US)
    assert decision.reason == reason
    assert decision.allowed is (reason == "allowed")


@pytest.mark.parametrize(
    ("added_us", "allowed"),
    [
        (NOW_US - 24 * HOUR_US, True),  # exactly 24 h ago: visible
        (NOW_US - 24 * HOUR_US - 1, True),
        (NOW_US - 24 * HOUR_US + 1, False),  # one microsecond short
        (NOW_US, False),
        (NOW_US - 48 * HOUR_US, True),
    ],
)
def test_embargo_boundary(added_us: int, allowed: bool) -> None:
    decision = decide(grant(read_embargo="24h"), facts(date_added_us=added_us), now_us=NOW_US)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason.startswith("under embargo until ")


def test_embargo_reason_names_the_moment() -> None:
    decision = decide(grant(read_embargo="1h"), facts(date_added_us=NOW_US), now_us=NOW_US)
    assert decision.reason == "under embargo until 2026-06-01T13:00:00.000000Z"


def test_no_embargo_shows_objects_at_once() -> None:
    assert decide(grant(), facts(date_added_us=NOW_US), now_us=NOW_US).allowed


@pytest.mark.parametrize(
    ("audience", "allowed"),
    [
        (None, True),
        (frozenset({"cert-in"}), True),
        (frozenset({"cert-xx", "cert-in"}), True),
        (frozenset({"cert-xx"}), False),
        (frozenset(), False),
        (frozenset({"CERT-IN"}), False),
    ],
)
def test_audience(audience: frozenset[str] | None, allowed: bool) -> None:
    decision = decide(grant(), facts(audience=audience), now_us=NOW_US)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason == "audience excludes cert-in"


def test_refs_not_visible_withholds() -> None:
    decision = decide(grant(), facts(type="relationship", refs_visible=False), now_us=NOW_US)
    assert decision == decide(grant(), facts(refs_visible=False), now_us=NOW_US)
    assert decision.allowed is False
    assert decision.reason == "references an object the partner cannot see"


def test_revoked_objects_are_served_so_partners_learn_of_it() -> None:
    assert decide(grant(), facts(revoked=True), now_us=NOW_US).allowed


@pytest.mark.parametrize(
    "changes",
    [
        {"tlp_rank": 4},
        {"tlp_rank": 3},
        {"audience": frozenset({"cert-xx"})},
        {"refs_visible": False},
    ],
)
def test_revocation_does_not_lift_the_other_rules(changes: dict[str, Any]) -> None:
    assert not decide(grant(), facts(revoked=True, **changes), now_us=NOW_US).allowed


def test_no_grant_denies_even_clear_objects() -> None:
    decision = decide(None, facts(tlp_rank=0), now_us=NOW_US)
    assert decision.allowed is False and decision.reason == "no read grant"


def test_everything_in_order_is_allowed() -> None:
    strict = grant(read_types=["indicator"], read_min_confidence=50, read_embargo="24h")
    decision = decide(strict, facts(audience=frozenset({"cert-in"})), now_us=NOW_US)
    assert decision.allowed and decision.reason == "allowed"


# --- redact -------------------------------------------------------------------------------------


def stix_object(**extra: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": INDICATOR,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "pattern": "[ipv4-addr:value = '10.0.0.1']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        "created_by_ref": THIRD_PARTY,
        "x_bd_internal_notes": "sourced from a liaison officer",
        "extensions": {
            "x-bd-ext": {"extension_type": "property-extension", "handler": "A. Rahman", "case": "BD-1"},
        },
        "external_references": [
            {"source_name": "internal", "url": "https://intranet.example/1", "description": "d"},
            {"source_name": "public", "external_id": "CVE-2024-0001"},
        ],
        "object_marking_refs": [TLP_2_0["amber"]["id"]],
        **extra,
    }


@pytest.mark.parametrize(
    ("paths", "anonymize", "identity", "expected_changes"),
    [
        pytest.param(
            ("x_bd_internal_notes",), False, None, lambda o: o.pop("x_bd_internal_notes"), id="top-level"
        ),
        pytest.param(
            ("extensions.x-bd-ext.handler",),
            False,
            None,
            lambda o: o["extensions"]["x-bd-ext"].pop("handler"),
            id="nested-path",
        ),
        pytest.param(
            ("extensions.x-bd-ext",),
            False,
            None,
            lambda o: o["extensions"].pop("x-bd-ext"),
            id="whole-extension",
        ),
        pytest.param(
            ("external_references.url",),
            False,
            None,
            lambda o: o["external_references"][0].pop("url"),
            id="through-a-list",
        ),
        pytest.param(
            ("x_bd_internal_notes", "missing.path", "extensions.x-bd-ext.case"),
            False,
            None,
            lambda o: (o.pop("x_bd_internal_notes"), o["extensions"]["x-bd-ext"].pop("case")),
            id="several",
        ),
        pytest.param((), True, EXCHANGE, lambda o: o.update(created_by_ref=EXCHANGE), id="anonymize"),
        pytest.param(
            ("x_bd_internal_notes",),
            True,
            EXCHANGE,
            lambda o: (o.pop("x_bd_internal_notes"), o.update(created_by_ref=EXCHANGE)),
            id="redact-and-anonymize",
        ),
        pytest.param(
            (),
            True,
            None,
            lambda o: o.pop("created_by_ref"),
            id="anonymize-without-identity-drops-the-source",
        ),
    ],
)
def test_redact(paths: tuple[str, ...], anonymize: bool, identity: str | None, expected_changes: Any) -> None:
    the_grant = replace(grant(), redact=paths, anonymize_source=anonymize)
    obj = stix_object()
    before = copy.deepcopy(obj)
    result = redact(obj, the_grant, exchange_identity=identity)
    expected = copy.deepcopy(obj)
    expected_changes(expected)
    assert result == expected
    assert obj == before  # the input is never mutated
    assert result is not obj


@pytest.mark.parametrize(
    ("paths", "anonymize", "obj"),
    [
        pytest.param((), False, stix_object(), id="nothing-to-do"),
        pytest.param(
            ("x_absent", "extensions.x-other.y", "pattern.deeper"), False, stix_object(), id="absent-paths"
        ),
        pytest.param((), True, stix_object(created_by_ref=EXCHANGE), id="already-ours"),
        pytest.param(
            (), True, {k: v for k, v in stix_object().items() if k != "created_by_ref"}, id="no-creator"
        ),
    ],
)
def test_redact_returns_none_when_nothing_changes(
    paths: tuple[str, ...], anonymize: bool, obj: dict[str, Any]
) -> None:
    the_grant = replace(grant(), redact=paths, anonymize_source=anonymize)
    before = copy.deepcopy(obj)
    assert redact(obj, the_grant, exchange_identity=EXCHANGE) is None
    assert obj == before


def test_redact_never_removes_what_makes_an_object() -> None:
    rogue = ReadGrant.__new__(ReadGrant)  # bypasses __post_init__
    for name, value in vars(grant()).items():
        object.__setattr__(rogue, name, value)
    object.__setattr__(
        rogue, "redact", ("id", "type", "spec_version", "created", "modified", "object_marking_refs")
    )
    assert redact(stix_object(), rogue) is None


def test_redacting_one_object_leaves_the_next_intact() -> None:
    the_grant = replace(grant(), redact=("extensions.x-bd-ext.handler",))
    first, second = stix_object(), stix_object()
    redact(first, the_grant)
    assert second["extensions"]["x-bd-ext"]["handler"] == "A. Rahman"
    assert first["extensions"]["x-bd-ext"]["handler"] == "A. Rahman"


# --- references -----------------------------------------------------------------------------------

GREEN2 = TLP_2_0["green"]["id"]
STATEMENT = "marking-definition--d81f86b9-975b-4c0b-875e-810c5ad45a4f"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {
                "type": "relationship",
                "source_ref": INDICATOR,
                "target_ref": MALWARE,
                "created_by_ref": THIRD_PARTY,
            },
            {INDICATOR, MALWARE},
            id="relationship",
        ),
        pytest.param(
            {
                "type": "sighting",
                "sighting_of_ref": INDICATOR,
                "observed_data_refs": ["observed-data--1"],
                "where_sighted_refs": [THIRD_PARTY],
            },
            {INDICATOR, "observed-data--1", THIRD_PARTY},
            id="sighting",
        ),
        pytest.param(
            {"type": "report", "object_refs": [INDICATOR, MALWARE]}, {INDICATOR, MALWARE}, id="report"
        ),
        pytest.param({"type": "note", "object_refs": [INDICATOR]}, {INDICATOR}, id="note"),
        pytest.param({"type": "opinion", "object_refs": [MALWARE]}, {MALWARE}, id="opinion"),
        pytest.param({"type": "grouping", "object_refs": [INDICATOR]}, {INDICATOR}, id="grouping"),
        pytest.param(
            {
                "type": "indicator",
                "object_marking_refs": [GREEN2, STATEMENT],
                "granular_markings": [
                    {"marking_ref": STATEMENT, "selectors": ["name"]},
                    {"lang": "fr", "selectors": ["description"]},
                ],
            },
            {GREEN2, STATEMENT},
            id="markings",
        ),
        pytest.param(
            {
                "type": "relationship",
                "source_ref": INDICATOR,
                "target_ref": MALWARE,
                "object_marking_refs": [GREEN2],
            },
            {INDICATOR, MALWARE, GREEN2},
            id="relationship-marked",
        ),
        pytest.param(
            {"type": "indicator", "created_by_ref": THIRD_PARTY}, set(), id="creator-is-not-closure"
        ),
        # Observed SCO ids are deterministic: withholding the SCO but serving its id leaks its value.
        pytest.param(
            {"type": "observed-data", "object_refs": ["ipv4-addr--1"]}, {"ipv4-addr--1"}, id="observed-data"
        ),
        pytest.param(
            {
                "type": "network-traffic",
                "src_ref": "ipv4-addr--1",
                "dst_ref": "ipv4-addr--2",
                "extensions": {"http-request-ext": {"message_body_data_ref": "artifact--1"}},
            },
            {"ipv4-addr--1", "ipv4-addr--2", "artifact--1"},
            id="sco-refs-and-extensions",
        ),
        pytest.param(
            {
                "type": "malware-analysis",
                "sample_ref": "file--1",
                "analysis_sco_refs": ["domain-name--1"],
                "x_acme_related_refs": ["indicator--9"],
                "extensions": {"extension-definition--1": {"nested": [{"x_source_ref": "identity--9"}]}},
            },
            {"file--1", "domain-name--1", "indicator--9", "identity--9"},
            id="custom-and-nested",
        ),
        pytest.param({"type": "relationship", "source_ref": 7, "target_ref": None}, set(), id="malformed"),
        pytest.param({"type": ["relationship"]}, set(), id="type-not-a-string"),
    ],
)
def test_references(obj: dict[str, Any], expected: set[str]) -> None:
    assert references(obj) == expected


@pytest.mark.parametrize(
    ("kind", "stix_id", "created_by", "allowed"),
    [
        ("partner", "identity--cert", None, False),
        ("feed", "identity--cert", None, False),
        ("partner", "indicator--1", "identity--cert", False),
        ("feed", "indicator--1", "identity--cert", False),
        ("partner", "indicator--1", "identity--partner", True),
        ("partner", "indicator--1", None, True),
        ("analyst", "identity--cert", "identity--cert", True),
        # Registered partners: identity--partner is the writer's own, identity--other another's.
        ("partner", "indicator--1", "identity--other", False),
        ("partner", "identity--other", None, False),
        ("partner", "identity--partner", None, True),
        ("feed", "indicator--1", "identity--other", True),  # a partner's server mirrored
        ("analyst", "indicator--1", "identity--other", True),
    ],
)
def test_only_staff_publish_as_the_exchange(
    kind: str, stix_id: str, created_by: str | None, allowed: bool
) -> None:
    from policies.engine import Writer, decide_authorship

    decision = decide_authorship(
        Writer(kind=kind, name="w", identity="identity--partner" if kind == "partner" else None),
        stix_id=stix_id,
        created_by_ref=created_by,
        exchange_identity="identity--cert",
        partner_identities=frozenset({"identity--partner", "identity--other"}),
    )
    assert decision.allowed is allowed


def test_anonymisation_renames_the_source_wherever_it_is_referenced() -> None:
    from policies.engine import ReadGrant, redact

    grant = ReadGrant("cert-in", "c", 2, None, None, 0, (), True)
    sighting = {
        "type": "sighting",
        "id": "sighting--1",
        "created_by_ref": "identity--src",
        "where_sighted_refs": ["identity--src", "identity--other"],
        "extensions": {"x": {"x_reporter_ref": "identity--src"}},
    }
    out = redact(sighting, grant, exchange_identity="identity--cert")
    assert out is not None and "identity--src" not in str(out)
    assert out["where_sighted_refs"] == ["identity--cert", "identity--other"]
    dropped = redact(sighting, grant)
    assert dropped is not None and "identity--src" not in str(dropped)
