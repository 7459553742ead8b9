"""Agreement documents: durations, the schema, validation against what exists, and diffs."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from policies.duration import format_duration, parse_duration
from policies.schemas import (
    AgreementDoc,
    AgreementError,
    PushSection,
    ReadSection,
    diff_documents,
    validate_agreement,
)

COLLECTIONS = {"indicators", "incidents", "partner-submissions"}
PARTNERS = {"cert-in", "cert-xx"}

# DESIGN.md's example agreement, as administrators write it.
EXAMPLE_YAML = """
partner: cert-in
title: Bangladesh-India MoU on cyber security cooperation
valid_from: 2024-03-05
valid_until: 2029-03-04
read:
  collections: [indicators, incidents]
  max_tlp: amber
  types: [indicator, malware, vulnerability, attack-pattern, incident, sighting,
          relationship, identity, marking-definition, report, course-of-action]
  min_confidence: 50
  embargo: 24h
  redact: [x_bd_internal_notes]
  anonymize_source: true
write:
  collections: [partner-submissions]
  types: [indicator, sighting, observed-data, relationship, note]
  require_signature: false
push:
  url: https://taxii.partner.example/taxii2/root/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/
  every: 1h
"""


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_YAML)


def validate(data: dict[str, Any], **kwargs: Any) -> AgreementDoc:
    kwargs.setdefault("known_collections", COLLECTIONS)
    kwargs.setdefault("known_partners", PARTNERS)
    return validate_agreement(data, **kwargs)


def problems_of(data: Any, **kwargs: Any) -> AgreementError:
    with pytest.raises(AgreementError) as caught:
        validate(data, **kwargs)
    return caught.value


def changed(path: str, value: Any) -> dict[str, Any]:
    """The example with one dotted path set (or removed, for the sentinel DELETE)."""
    data = example()
    *parents, last = path.split(".")
    node = data
    for step in parents:
        node = node[step]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        (" 24h ", timedelta(hours=24)),
        ("PT24H", timedelta(hours=24)),
        ("P7D", timedelta(days=7)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P2W", timedelta(weeks=2)),
        ("pt15m", timedelta(minutes=15)),
        (3600, timedelta(hours=1)),
        ("3600", timedelta(hours=1)),
        (0, timedelta(0)),
        ("0s", timedelta(0)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_parse_duration_reads_compact_iso_and_seconds(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("-1h", "negative"),
        (-5, "negative"),
        ("-PT1H", "negative"),
        (timedelta(seconds=-1), "negative"),
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "cannot read"),
        ("h", "cannot read"),
        ("1x", "unknown unit 'x'"),
        ("5y", "unknown unit 'y'"),
        ("24H", "unknown unit 'H'"),
        ("1h1h", "each once"),
        ("30m1h", "largest first"),
        ("24 h", "cannot read"),
        ("P1M", "months or years"),
        ("P1Y", "months or years"),
        ("P", "cannot read"),
        ("PT", "cannot read"),
        ("1.5h", "fraction"),
        ("PT0.5S", "fraction"),
        (1.5, "not float"),
        (True, "cannot be True"),
        (None, "not NoneType"),
        ("9" * 40 + "d", "too long"),
        ("366d", "longer than the maximum of 365d"),
        ("999999999d", "longer than the maximum of 365d"),
        ("P53W", "longer than the maximum of 365d"),
        (366 * 86400, "longer than the maximum of 365d"),
    ],
)
def test_parse_duration_refuses_with_a_clear_message(text: Any, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=36), "1d12h"),
        (timedelta(hours=24), "1d"),
        (timedelta(weeks=2), "14d"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_is_the_inverse(td: timedelta, text: str) -> None:
    assert format_duration(td) == text
    assert parse_duration(text) == td


@pytest.mark.parametrize("td", [timedelta(seconds=-1), timedelta(milliseconds=500)])
def test_format_duration_refuses_what_it_cannot_write(td: timedelta) -> None:
    with pytest.raises(ValueError):
        format_duration(td)


# --- the example and round trips -----------------------------------------------------------


def test_design_example_validates_and_normalises() -> None:
    data = example()
    data["read"]["max_tlp"] = "AMBER"
    doc = validate(data)
    assert doc.partner == "cert-in"
    assert doc.valid_from == date(2024, 3, 5) and doc.valid_until == date(2029, 3, 4)
    assert doc.status == "draft"
    assert doc.read is not None and doc.read.max_tlp == "amber"
    assert doc.read.embargo == timedelta(hours=24)
    assert doc.push is not None and doc.push.every == timedelta(hours=1)
    assert doc.push.collection is None


def test_to_document_is_json_ready_and_round_trips() -> None:
    doc = validate(example())
    document = doc.to_document()
    assert document["valid_from"] == "2024-03-05"
    assert document["read"]["embargo"] == "1d"
    assert document["push"]["every"] == "1h"
    assert AgreementDoc.model_validate(document) == doc
    assert AgreementDoc.model_validate(document).to_document() == document
    assert json.loads(json.dumps(document)) == document


def test_to_document_of_a_minimal_agreement_round_trips() -> None:
    data = {"partner": "cert-xx", "title": "t", "valid_from": "2025-01-01", "valid_until": "2025-01-01"}
    doc = validate(data)
    assert doc.read is None and doc.write is None and doc.push is None
    assert AgreementDoc.model_validate(doc.to_document()) == doc


@pytest.mark.parametrize(
    ("level", "canonical"),
    [
        ("clear", "clear"),
        ("white", "clear"),
        ("WHITE", "clear"),
        ("Green", "green"),
        ("AMBER", "amber"),
        ("amber+strict", "amber+strict"),
        ("AMBER+STRICT", "amber+strict"),
        ("red", "red"),
        ("TLP:AMBER", "amber"),
    ],
)
def test_max_tlp_is_normalised(level: str, canonical: str) -> None:
    doc = validate(changed("read.max_tlp", level))
    assert doc.read is not None and doc.read.max_tlp == canonical


def test_omitted_types_confidence_and_embargo_mean_none() -> None:
    data = example()
    for key in ("types", "min_confidence", "embargo", "redact", "anonymize_source"):
        del data["read"][key]
    read = validate(data).read
    assert read is not None
    assert read.types is None and read.min_confidence is None and read.embargo is None
    assert read.redact == [] and read.anonymize_source is False


def test_push_collection_may_name_a_read_collection() -> None:
    doc = validate(changed("push.collection", "incidents"))
    assert doc.push is not None and doc.push.collection == "incidents"


# --- schema errors name the field ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field", "says"),
    [
        # unknown fields, at the top and in every section
        ("colour", "blue", "colour", "unknown field 'colour'"),
        ("read.max_tlp_level", "amber", "read.max_tlp_level", "unknown field"),
        ("write.sign", True, "write.sign", "unknown field"),
        ("push.method", "POST", "push.method", "unknown field"),
        # TLP
        ("read.max_tlp", "purple", "read.max_tlp", "unknown TLP level 'purple'"),
        ("read.max_tlp", 2, "read.max_tlp", "TLP level"),
        ("read.max_tlp", DELETE, "read.max_tlp", "required"),
        # collections
        ("read.collections", [], "read.collections", "at least 1"),
        ("read.collections", DELETE, "read.collections", "required"),
        ("read.collections", ["indicators", "indicators"], "read.collections", "listed twice"),
        ("write.collections", [], "write.collections", "at least 1"),
        ("read.collections", ["indicators", 7], "read.collections[1]", "string"),
        # types
        ("read.types", ["indicator", "Malware"], "read.types[1]", "not a STIX type name"),
        ("read.types", ["ab"], "read.types[0]", "not a STIX type name"),
        ("read.types", ["x--y"], "read.types[0]", "not a STIX type name"),
        ("write.types", ["indicator", "-bad"], "write.types[1]", "not a STIX type name"),
        ("read.types", "indicator", "read.types", "list"),
        # confidence
        ("read.min_confidence", 101, "read.min_confidence", "100"),
        ("read.min_confidence", -1, "read.min_confidence", "0"),
        ("read.min_confidence", "50", "read.min_confidence", "integer"),
        # durations
        ("read.embargo", "5x", "read.embargo", "unknown unit 'x'"),
        ("read.embargo", "-1h", "read.embargo", "negative"),
        ("read.embargo", "", "read.embargo", "empty"),
        ("push.every", "30s", "push.every", "shorter than the minimum"),
        ("push.every", "soon", "push.every", "cannot read"),
        ("push.every", DELETE, "push.every", "required"),
        # redaction
        ("read.redact", ["id"], "read.redact[0]", "may not be redacted"),
        ("read.redact", ["x_notes", "modified"], "read.redact[1]", "may not be redacted"),
        ("read.redact", ["object_marking_refs"], "read.redact[0]", "may not be redacted"),
        ("read.redact", ["extensions..x"], "read.redact[0]", "dotted path"),
        ("read.redact", ["a b"], "read.redact[0]", "dotted path"),
        # booleans are booleans
        ("read.anonymize_source", "yes", "read.anonymize_source", "boolean"),
        ("write.require_signature", 1, "write.require_signature", "boolean"),
        # push
        ("push.url", "ftp://taxii.example/", "push.url", "https://"),
        ("push.url", "https://", "push.url", "host"),
        ("push.url", "not a url", "push.url", "spaces"),
        ("push.url", "https://user:secret@taxii.example/", "push.url", "credentials"),
        ("push.url", "https://taxii.example:99999/", "push.url", "not a URL"),
        ("push.url", "https://taxii.example/c/5f0a/?apikey=k3y", "push.url", "/push-auth"),
        ("push.url", "https://taxii.example/c/5f0a/?p=k3y", "push.url", "no query string"),
        ("push.url", "https://taxii.example/c/5f0a/?", "push.url", "no query string"),
        ("push.url", "https://taxii.example/c/5f0a/#k3y", "push.url", "fragment"),
        ("push.collection", "partner-submissions", "push.collection", "not one of the read collections"),
        ("push.every", "999999999d", "push.every", "longer than the maximum of 365d"),
        ("read.embargo", "366d", "read.embargo", "longer than the maximum of 365d"),
        # partner slug, title, status, dates
        ("partner", "CERT-IN", "partner", "slug"),
        ("partner", "-cert", "partner", "slug"),
        ("partner", "ab", "partner", "slug"),
        ("partner", "a" * 65, "partner", "slug"),
        ("partner", "cert_in", "partner", "slug"),
        ("title", "", "title", "blank"),
        ("title", "   ", "title", "blank"),
        ("title", DELETE, "title", "required"),
        ("status", "expired", "status", "active"),
        ("valid_from", "2024-13-01", "valid_from", "date"),
        ("valid_from", 1709596800, "valid_from", "YYYY-MM-DD"),
        ("valid_until", "2029-03-04T00:00:00", "valid_until", "YYYY-MM-DD"),
        ("valid_until", DELETE, "valid_until", "required"),
    ],
)
def test_schema_errors_name_the_field(path: str, value: Any, field: str, says: str) -> None:
    error = problems_of(changed(path, value))
    matching = [reason for where, reason in error.problems if where == field]
    assert matching, f"no problem reported at {field!r}: {error.problems}"
    assert any(says in reason for reason in matching), matching
    assert field in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://taxii.example/c/?apikey=SECRETPUSHQ",
        "https://:SECRETPUSHQ@taxii.example/c/",
        "https://taxii.example:99999/c/?pw=SECRETPUSHQ",
        "https://taxii.example/c/?pw=SECRETPUSHQ",
        "https://taxii.example/c/?x=1&SECRETPUSHQ",
        "https://taxii.example/c/#SECRETPUSHQ",
    ],
)
def test_a_refused_push_url_is_not_repeated_in_the_problem(url: str) -> None:
    error = problems_of(changed("push.url", url))
    assert [field for field, _ in error.problems] == ["push.url"], error.problems
    assert "SECRETPUSHQ" not in str(error)


def test_a_stored_version_with_a_push_query_still_reads() -> None:
    # Refused for new documents only: versions stored before stay readable (every partner
    # request parses its agreement), and push still uses their URL as written.
    data = changed("push.url", "https://taxii.example/c/5f0a/?apikey=k3y")
    assert AgreementDoc.model_validate(data).push.url.endswith("?apikey=k3y")  # type: ignore[union-attr]


def test_a_stored_agreement_over_the_duration_maximum_still_loads() -> None:
    # Versions an older release stored with a longer embargo or push interval stay readable
    # (refusing them would break every request that reads the agreement); new input is refused.
    from exchange.agreement.service import parsed

    data = changed("read.embargo", "400d")
    problems_of(data)
    assert parsed(json.dumps(data, default=str)).read.embargo == timedelta(days=400)  # type: ignore[union-attr]


def test_an_end_before_the_start_names_both_dates() -> None:
    error = problems_of(changed("valid_until", date(2024, 3, 4)))
    [(field, reason)] = error.problems
    assert field == "valid_until"
    assert "valid_from" in reason and "2024-03-05" in reason and "2024-03-04" in reason
    assert "before" in reason


def test_a_one_day_window_is_fine() -> None:
    data = changed("valid_until", date(2024, 3, 5))
    assert validate(data).valid_until == date(2024, 3, 5)


def test_push_without_read_is_refused() -> None:
    error = problems_of(changed("read", DELETE))
    assert any("read" in reason for field, reason in error.problems if field == "push")


def test_a_broken_read_section_is_not_also_blamed_on_push() -> None:
    error = problems_of(changed("read.max_tlp", "purple"))
    assert [field for field, _ in error.problems] == ["read.max_tlp"]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("read.collections", ["indicators", "secret-stuff"], "read.collections[1]"),
        ("write.collections", ["nowhere"], "write.collections[0]"),
        ("push.collection", "elsewhere", "push.collection"),
    ],
)
def test_unknown_collections_are_refused(path: str, value: Any, field: str) -> None:
    error = problems_of(changed(path, value))
    name = value if isinstance(value, str) else value[-1]
    assert (field, f"unknown collection {name!r}") in error.problems


def test_unknown_partner_is_refused_only_when_partners_are_given() -> None:
    data = changed("partner", "cert-zz")
    error = problems_of(data)
    assert ("partner", "unknown partner 'cert-zz'") in error.problems
    assert validate_agreement(data, known_collections=COLLECTIONS).partner == "cert-zz"


def test_every_problem_is_collected_into_one_error_that_starts_with_the_source() -> None:
    data = example()
    data["bogus"] = 1
    data["read"]["max_tlp"] = "purple"
    data["read"]["collections"] = ["nope"]
    data["write"]["extra"] = True
    data["valid_until"] = date(2020, 1, 1)
    error = problems_of(data, source="agreements/cert-in.yaml")
    fields = {field for field, _ in error.problems}
    assert {"bogus", "read.max_tlp", "read.collections[0]", "write.extra", "valid_until"} <= fields
    text = str(error)
    assert text.startswith("agreements/cert-in.yaml: ")
    assert all(field in text for field in fields)
    assert isinstance(error, ValueError)


def test_a_single_problem_reads_as_one_line() -> None:
    error = problems_of(changed("read.max_tlp", "purple"), source="a.yaml")
    assert (
        str(error) == "a.yaml: read.max_tlp: unknown TLP level 'purple'; expected one of "
        "clear, green, amber, amber+strict, red"
    )


@pytest.mark.parametrize("data", [[], "partner: x", None])
def test_a_document_that_is_not_a_mapping_is_refused(data: Any) -> None:
    error = problems_of(data, source="x.yaml")
    assert str(error).startswith("x.yaml: ")
    assert "mapping" in str(error)


def test_agreement_error_can_be_built_by_callers() -> None:
    error = AgreementError([("", "x.yaml: an agreement must be a mapping of fields")])
    assert str(error) == "x.yaml: an agreement must be a mapping of fields"
    assert error.problems == [("", "x.yaml: an agreement must be a mapping of fields")]


def test_sections_refuse_unknown_fields_on_their_own() -> None:
    with pytest.raises(ValidationError):
        ReadSection.model_validate({"collections": ["a"], "max_tlp": "amber", "maxtlp": "red"})
    with pytest.raises(ValidationError):
        PushSection.model_validate({"url": "https://x.example/", "every": "1h", "colection": "a"})


def test_validation_does_not_change_the_input() -> None:
    data = example()
    before = copy.deepcopy(data)
    validate(data)
    assert data == before


# --- diffs ------------------------------------------------------------------------------------


def test_diff_lists_changed_leaves_with_dotted_paths() -> None:
    old = validate(example()).to_document()
    new_data = example()
    new_data["read"]["max_tlp"] = "green"
    new_data["read"]["collections"] = ["indicators"]
    new_data["status"] = "active"
    del new_data["push"]
    new = validate(new_data).to_document()
    changes = diff_documents(old, new)
    assert {"path": "read.max_tlp", "old": "amber", "new": "green"} in changes
    assert {"path": "read.collections", "old": ["indicators", "incidents"], "new": ["indicators"]} in changes
    assert {"path": "status", "old": "draft", "new": "active"} in changes
    assert {"path": "push.every", "old": "1h", "new": None} in changes
    assert len(changes) == 5  # the four above and push.url


def test_diff_of_equal_documents_is_empty() -> None:
    document = validate(example()).to_document()
    assert diff_documents(document, copy.deepcopy(document)) == []


def test_diff_from_nothing_lists_every_field_as_new() -> None:
    document = validate(example()).to_document()
    changes = diff_documents({}, document)
    paths = [change["path"] for change in changes]
    assert "partner" in paths and "read.max_tlp" in paths and "push.url" in paths
    assert all(change["old"] is None for change in changes)
