"""STIX 2.1 object validation: each rule refuses with a message naming the property, and
what STIX allows (custom properties, custom objects, extensions, v5 ids) is kept."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import stix2
import stix2patterns
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import InvalidStixError
from exchange.intel.validation import StixMeta, validate_object
from policies.tlp import CANONICAL_MARKINGS, TLP_2_0

T0, T1, T2 = "2024-03-05T10:00:00.000Z", "2024-03-06T10:00:00.000Z", "2024-03-07T10:00:00.000Z"
IDENTITY = "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01"
INDICATOR = "indicator--9d4b6a3a-4a3f-4c6e-8f0b-2b8e4b1f6a10"
MALWARE = "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b"
IPV4 = "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"  # a UUIDv5, as stix2 makes for SCOs
OPENCTI_EXTENSION = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"
TLP_AMBER_1 = stix2.TLP_AMBER.id
DROP = object()


def sid(typ: str, n: int = 0) -> str:
    return f"{typ}--{uuid.UUID(int=n, version=4)}"


def sdo(typ: str, **props: Any) -> dict[str, Any]:
    return {"type": typ, "spec_version": "2.1", "id": sid(typ), "created": T0, "modified": T1, **props}


def sco(typ: str, **props: Any) -> dict[str, Any]:
    return {"type": typ, "spec_version": "2.1", "id": sid(typ), **props}


# One valid object of every STIX 2.1 type, and the properties the spec requires of it.
SAMPLES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "attack-pattern": (sdo("attack-pattern", name="Spearphishing"), ("name",)),
    "campaign": (sdo("campaign", name="Op X", first_seen=T0, last_seen=T1), ("name",)),
    "course-of-action": (sdo("course-of-action", name="Block"), ("name",)),
    "grouping": (
        sdo("grouping", context="suspicious-activity", object_refs=[INDICATOR]),
        ("context", "object_refs"),
    ),
    "identity": (sdo("identity", name="CERT", identity_class="organization"), ("name",)),
    "incident": (sdo("incident", name="Breach"), ("name",)),
    "indicator": (
        sdo("indicator", pattern="[ipv4-addr:value = '198.51.100.1']", pattern_type="stix", valid_from=T0),
        ("pattern", "pattern_type", "valid_from"),
    ),
    "infrastructure": (sdo("infrastructure", name="C2"), ("name",)),
    "intrusion-set": (sdo("intrusion-set", name="APT0"), ("name",)),
    "location": (sdo("location", country="BD"), ()),
    "malware": (sdo("malware", name="Emotet", is_family=True), ("is_family",)),
    "malware-analysis": (sdo("malware-analysis", product="sandbox", result="malicious"), ("product",)),
    "note": (sdo("note", content="seen twice", object_refs=[INDICATOR]), ("content", "object_refs")),
    "observed-data": (
        sdo("observed-data", first_observed=T0, last_observed=T1, number_observed=3, object_refs=[IPV4]),
        ("first_observed", "last_observed", "number_observed"),
    ),
    "opinion": (sdo("opinion", opinion="agree", object_refs=[INDICATOR]), ("opinion", "object_refs")),
    "report": (
        sdo("report", name="Weekly", published=T1, object_refs=[INDICATOR]),
        ("name", "published", "object_refs"),
    ),
    "threat-actor": (sdo("threat-actor", name="Bravo"), ("name",)),
    "tool": (sdo("tool", name="nmap"), ("name",)),
    "vulnerability": (sdo("vulnerability", name="CVE-2024-0001"), ("name",)),
    "relationship": (
        sdo("relationship", relationship_type="indicates", source_ref=INDICATOR, target_ref=MALWARE),
        ("relationship_type", "source_ref", "target_ref"),
    ),
    "sighting": (
        sdo("sighting", sighting_of_ref=INDICATOR, where_sighted_refs=[IDENTITY], count=2),
        ("sighting_of_ref",),
    ),
    "marking-definition": (
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": sid("marking-definition"),
            "created": T0,
            "definition_type": "statement",
            "definition": {"statement": "(c) CERT"},
        },
        (),
    ),
    "language-content": (
        sdo("language-content", object_ref=INDICATOR, contents={"fr": {"name": "Indicateur"}}),
        ("object_ref", "contents"),
    ),
    "extension-definition": (
        sdo(
            "extension-definition",
            created_by_ref=IDENTITY,
            name="ext",
            schema="https://example.org/schema.json",
            version="1.0",
            extension_types=["property-extension"],
        ),
        ("created_by_ref", "name", "schema", "version", "extension_types"),
    ),
    "artifact": (sco("artifact", payload_bin="aGVsbG8="), ()),
    "autonomous-system": (sco("autonomous-system", number=64500), ("number",)),
    "directory": (sco("directory", path="/tmp"), ("path",)),
    "domain-name": (sco("domain-name", value="example.org"), ("value",)),
    "email-addr": (sco("email-addr", value="a@example.org"), ("value",)),
    "email-message": (sco("email-message", is_multipart=False, subject="hi"), ("is_multipart",)),
    "file": (sco("file", name="a.exe", hashes={"SHA-256": "ab" * 32}), ()),
    "ipv4-addr": (sco("ipv4-addr", value="198.51.100.1"), ("value",)),
    "ipv6-addr": (sco("ipv6-addr", value="2001:db8::1"), ("value",)),
    "mac-addr": (sco("mac-addr", value="00:00:5e:00:53:af"), ("value",)),
    "mutex": (sco("mutex", name="Global\\x"), ("name",)),
    "network-traffic": (sco("network-traffic", protocols=["tcp"], src_ref=IPV4), ("protocols",)),
    "process": (sco("process", pid=4), ()),
    "software": (sco("software", name="Word"), ("name",)),
    "url": (sco("url", value="https://example.org/x"), ("value",)),
    "user-account": (sco("user-account", user_id="1001"), ()),
    "windows-registry-key": (sco("windows-registry-key", key="HKEY_LOCAL_MACHINE\\System"), ()),
    "x509-certificate": (sco("x509-certificate", serial_number="01"), ()),
}
SDO_LIKE = [t for t, (obj, _) in SAMPLES.items() if "modified" in obj]


def changed(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    for key, value in changes.items():
        if value is DROP:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def sample(typ: str, **changes: Any) -> dict[str, Any]:
    return changed(SAMPLES[typ][0], **changes)


def refused(obj: Any) -> str:
    with pytest.raises(InvalidStixError) as caught:
        validate_object(obj)
    assert caught.value.status == 422
    return caught.value.message


# ---- acceptance --------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", list(SAMPLES))
def test_a_valid_object_of_every_type_is_accepted(typ: str) -> None:
    obj = sample(typ)
    meta = validate_object(obj)
    assert (meta.stix_id, meta.type, meta.spec_version) == (obj["id"], typ, "2.1")


@pytest.mark.parametrize(
    ("typ", "prop"),
    [
        (typ, prop)
        for typ, (obj, required) in SAMPLES.items()
        for prop in (
            "type",
            "id",
            *required,
            *(("spec_version", "created", "modified") if typ in SDO_LIKE else ()),
        )
    ]
    + [("marking-definition", "created"), ("marking-definition", "spec_version")],
)
def test_a_missing_required_property_is_named(typ: str, prop: str) -> None:
    message = refused(sample(typ, **{prop: DROP}))
    assert f"'{prop}'" in message


@pytest.mark.parametrize("typ", [t for t in SAMPLES if t not in SDO_LIKE and t != "marking-definition"])
def test_spec_version_is_optional_on_scos(typ: str) -> None:
    assert validate_object(sample(typ, spec_version=DROP)).spec_version == "2.1"


def test_opencti_style_objects_are_kept_with_custom_properties_and_extensions() -> None:
    indicator = sample(
        "indicator",
        id="indicator--6ad1f1a3-2b3c-5d6e-8f90-0a1b2c3d4e5f",
        created_by_ref=IDENTITY,
        confidence=75,
        labels=["c2"],
        object_marking_refs=[TLP_2_0["amber"]["id"]],
        x_opencti_score=80,
        x_opencti_main_observable_type="IPv4-Addr",
        x_opencti_detection=True,
        x_opencti_files=[],
        x_opencti_description=None,
        external_references=[{"source_name": "cert", "url": "https://cert.example/a"}],
        extensions={
            OPENCTI_EXTENSION: {
                "extension_type": "property-extension",
                "id": "b1a2c3d4-0000-4000-8000-000000000000",
                "type": "Indicator",
                "score": 80,
                "detection": True,
                "created_at": T0,
                "main_observable_type": "IPv4-Addr",
                "labels_ids": ["x"],
            }
        },
    )
    meta = validate_object(indicator)
    assert (meta.confidence, meta.tlp) == (75, "amber")
    observable = sco(
        "ipv4-addr",
        id=IPV4,
        value="198.51.100.1",
        x_opencti_score=50,
        extensions={
            "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82": {
                "extension_type": "property-extension",
                "score": 50,
            }
        },
    )
    assert validate_object(observable).tlp is None


def test_misp_style_objects_are_kept() -> None:
    obj = sample(
        "indicator",
        labels=['misp:type="ip-dst"', 'misp:category="Network activity"'],
        x_misp_category="Network activity",
        x_misp_type="ip-dst",
        x_misp_to_ids=True,
        x_misp_comment="",
        x_misp_attribute_uuid="5a0a9b9c-0000-4000-8000-000000000000",
        kill_chain_phases=[{"kill_chain_name": "misp-category", "phase_name": "network"}],
        object_marking_refs=[stix2.TLP_WHITE.id],
    )
    assert validate_object(obj).tlp == "clear"


def test_custom_object_types_are_allowed() -> None:
    widget = {
        "type": "x-acme-widget",
        "spec_version": "2.1",
        "id": sid("x-acme-widget"),
        "created": T0,
        "modified": T1,
        "gadget": {"any": ["json"]},
        "x_acme_ref": IDENTITY,
        "owner_refs": [IDENTITY],
        "confidence": 10,
    }
    meta = validate_object(widget)
    assert (meta.type, meta.version, meta.confidence) == (
        "x-acme-widget",
        "2024-03-06T10:00:00.000000000Z",
        10,
    )
    observable_like = {"type": "x-acme-thing", "spec_version": "2.1", "id": sid("x-acme-thing"), "value": "x"}
    assert validate_object(observable_like).version == ""


@pytest.mark.parametrize(
    "stix_id",
    [
        f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, 'https://cert.example/ioc/1')}",
        "indicator--0840e8f8-edf4-11f1-84d4-02fc00000001",  # UUIDv1 (fixed: ids must not vary per collection)
        f"indicator--{uuid.uuid3(uuid.NAMESPACE_DNS, 'cert.example')}",
        "indicator--018f2b5c-7d1e-7a3b-9c4d-5e6f7a8b9c0d",  # UUIDv7
        "indicator--018f2b5c-7d1e-8a3b-9c4d-5e6f7a8b9c0d",  # UUIDv8
    ],
)
def test_non_v4_uuids_are_allowed(stix_id: str) -> None:
    assert validate_object(sample("indicator", id=stix_id)).stix_id == stix_id


def test_tlp_2_0_marked_indicator() -> None:
    obj = sample(
        "indicator",
        object_marking_refs=[TLP_2_0["amber+strict"]["id"], stix2.TLP_GREEN.id],
        granular_markings=[{"marking_ref": TLP_2_0["clear"]["id"], "selectors": ["name"]}],
    )
    assert validate_object(obj).tlp == "amber+strict"


@pytest.mark.parametrize("definition", list(CANONICAL_MARKINGS.values()), ids=lambda d: d["name"])
def test_every_canonical_tlp_definition_is_accepted_as_is(definition: dict[str, Any]) -> None:
    meta = validate_object(copy.deepcopy(definition))
    assert meta.version == definition["created"][:-1] + "000000Z"


def test_tlp_1_0_definition_without_spec_version_is_accepted() -> None:
    legacy = {k: v for k, v in CANONICAL_MARKINGS[stix2.TLP_RED.id].items() if k != "spec_version"}
    assert validate_object(legacy).type == "marking-definition"


def _stix2_objects() -> list[Any]:
    identity = stix2.Identity(name="CERT", identity_class="organization")
    indicator = stix2.Indicator(
        pattern="[file:hashes.'SHA-256' = '" + "ab" * 32 + "'] "
        "FOLLOWEDBY [url:value = 'http://x.example/'] WITHIN 60 SECONDS",
        pattern_type="stix",
        created_by_ref=identity,
        confidence=70,
        labels=["malicious-activity"],
        object_marking_refs=[stix2.TLP_AMBER],
        external_references=[{"source_name": "x", "external_id": "1"}],
    )
    malware = stix2.Malware(
        name="Emotet",
        is_family=True,
        kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": "execution"}],
    )
    return [
        identity,
        indicator,
        malware,
        stix2.Relationship(indicator, "indicates", malware, start_time=T0, stop_time=T1),
        stix2.Sighting(
            sighting_of_ref=indicator, where_sighted_refs=[identity], count=3, first_seen=T0, last_seen=T0
        ),
        stix2.Incident(name="Breach", revoked=True),
        stix2.IPv4Address(value="198.51.100.7"),
        stix2.File(name="a.exe", hashes={"MD5": "0" * 32}, size=10),
        stix2.MarkingDefinition(definition_type="statement", definition={"statement": "(c) CERT"}),
        stix2.TLP_GREEN,
    ]


@pytest.mark.parametrize("stix_object", _stix2_objects(), ids=lambda o: o["type"])
def test_everything_stix2_generates_passes(stix_object: Any) -> None:
    obj = json.loads(stix_object.serialize())
    meta = validate_object(obj)
    assert meta.stix_id == obj["id"]
    assert meta.revoked is (obj.get("revoked") is True)


@pytest.mark.parametrize(
    "pattern",
    [
        "[ipv4-addr:value = '198.51.100.1' OR ipv4-addr:value ISSUBSET '203.0.113.0/24']",
        "[file:hashes.'SHA-256' = '" + "ab" * 32 + "' AND file:size > 1024]",
        "[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0]",
        "[network-traffic:dst_ref.value = '198.51.100.1'] REPEATS 5 TIMES WITHIN 600 SECONDS",
        "[email-message:from_ref.value MATCHES '.+@example\\\\.org$']",
        "[process:command_line LIKE '%powershell%'] FOLLOWEDBY [file:name NOT = 'a.exe']",
        "[url:value IN ('http://a.example/', 'http://b.example/')]",
        "[artifact:payload_bin = b'aGVsbG8='] AND [file:magic_number_hex = h'ffd8']",
        "[x-acme-widget:x_size = 3] START t'2024-01-01T00:00:00Z' STOP t'2024-02-01T00:00:00Z'",
        (
            "([domain-name:value = 'a.example'] OR [domain-name:value = 'b.example']) AND "
            "[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\\\Foo']"
        ),
        "[user-account:id = 'x']",
        "[file:'name' = 'quoted property']",
    ],
)
def test_valid_patterns_are_accepted(pattern: str) -> None:
    validate_object(sample("indicator", pattern=pattern))


def _spec_example_patterns() -> list[str]:
    examples = Path(stix2patterns.__file__).parent / "test" / "v21" / "spec_examples.txt"
    if not examples.exists():
        return []
    return [line.strip() for line in examples.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("pattern", _spec_example_patterns())
def test_the_spec_example_patterns_shipped_with_stix2_patterns_are_accepted(pattern: str) -> None:
    validate_object(sample("indicator", pattern=pattern))


def test_non_stix_patterns_are_not_parsed() -> None:
    validate_object(sample("indicator", pattern="alert tcp any any -> any 80", pattern_type="snort"))


@pytest.mark.parametrize(
    ("changes", "version"),
    [
        ({"modified": "2024-03-06T10:00:00.123Z"}, "2024-03-06T10:00:00.123000000Z"),
        ({"modified": "2024-03-06T10:00:00Z"}, "2024-03-06T10:00:00.000000000Z"),
        ({"modified": "2024-03-06T10:00:00.123456789Z"}, "2024-03-06T10:00:00.123456789Z"),
    ],
)
def test_meta_carries_original_timestamps_and_a_fixed_width_version(
    changes: dict[str, str], version: str
) -> None:
    obj = sample("malware", confidence=0, revoked=False, **changes)
    assert validate_object(obj) == StixMeta(
        stix_id=obj["id"],
        type="malware",
        spec_version="2.1",
        created=T0,
        modified=changes["modified"],
        version=version,
        confidence=0,
        revoked=False,
        tlp=None,
    )


@pytest.mark.parametrize("digits", [10, 12, 30])
def test_timestamps_finer_than_a_nanosecond_are_refused(digits: int) -> None:
    # Versions are compared to the nanosecond: two differing further down would be one version.
    with pytest.raises(InvalidStixError, match=r"modified.*at most 9 fraction digits"):
        validate_object(sample("malware", modified="2024-03-06T10:00:00." + "1" * digits + "Z"))


def test_version_falls_back_to_created() -> None:
    assert validate_object(sample("marking-definition")).version == "2024-03-05T10:00:00.000000000Z"


@given(
    st.lists(
        st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 1, 1)),
        min_size=2,
        max_size=2,
    ),
    st.integers(0, 6),
    st.integers(0, 6),
)
def test_version_order_is_time_order(times: list[dt.datetime], digits_a: int, digits_b: int) -> None:
    def stamp(moment: dt.datetime, digits: int) -> str:
        fraction = f"{moment.microsecond:06d}"[:digits]
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"

    (a, b) = times
    a_text, b_text = stamp(a, digits_a), stamp(b, digits_b)
    a_key = validate_object(sample("malware", created=a_text, modified=a_text)).version
    b_key = validate_object(sample("malware", created=b_text, modified=b_text)).version
    a_time = a.replace(microsecond=int(f"{a.microsecond:06d}"[:digits_a].ljust(6, "0")))
    b_time = b.replace(microsecond=int(f"{b.microsecond:06d}"[:digits_b].ljust(6, "0")))
    assert (a_key < b_key) == (a_time < b_time) and (a_key == b_key) == (a_time == b_time)


# ---- refusals ------------------------------------------------------------------------------------

LONG_NAME = "x_" + "a" * 249
REFUSALS: list[tuple[str, Any, str]] = [
    # (case, object, property the message must name)
    ("not an object", ["indicator"], "JSON object"),
    ("type missing", sample("indicator", type=DROP), "'type'"),
    ("type uppercase", sample("indicator", type="Indicator"), "'type'"),
    ("type double hyphen", sample("indicator", type="x--acme"), "'type'"),
    ("type too short", sample("indicator", type="ab"), "'type'"),
    ("type not a string", sample("indicator", type=7), "'type'"),
    ("bundle is not an object", sample("indicator", type="bundle"), "'type'"),
    ("id not a uuid", sample("indicator", id="indicator--1234"), "'id'"),
    ("id uppercase", sample("indicator", id=INDICATOR.upper().replace("INDICATOR", "indicator")), "'id'"),
    ("id braces", sample("indicator", id="indicator--{" + str(uuid.uuid4()) + "}"), "'id'"),
    ("id bad variant", sample("indicator", id="indicator--8e2e2d2b-17d4-4cbf-c38f-98ee46b3cd3f"), "'id'"),
    ("id version 0", sample("indicator", id="indicator--8e2e2d2b-17d4-0cbf-938f-98ee46b3cd3f"), "'id'"),
    ("id of another type", sample("indicator", id=MALWARE), "'id'"),
    ("spec_version 2.0", sample("indicator", spec_version="2.0"), "'spec_version'"),
    ("spec_version number", sample("indicator", spec_version=2.1), "'spec_version'"),
    ("sco spec_version 2.0", sample("ipv4-addr", spec_version="2.0"), "'spec_version'"),
    (
        "custom object without spec_version",
        {"type": "x-acme-widget", "id": sid("x-acme-widget"), "created": T0},
        "'spec_version'",
    ),
    ("created with a space", sample("indicator", created="2024-03-05 10:00:00Z"), "'created'"),
    ("created lowercase t and z", sample("indicator", created="2024-03-05t10:00:00z"), "'created'"),
    ("modified with an offset", sample("indicator", modified="2024-03-06T10:00:00+00:00"), "'modified'"),
    ("modified without zone", sample("indicator", modified="2024-03-06T10:00:00.000"), "'modified'"),
    ("modified date only", sample("indicator", modified="2024-03-06"), "'modified'"),
    ("valid_from not a date", sample("indicator", valid_from="2023-02-29T00:00:00Z"), "'valid_from'"),
    ("hour 24", sample("indicator", valid_until="2024-03-07T24:00:00Z"), "'valid_until'"),
    ("timestamp as a number", sample("indicator", created=1709632800), "'created'"),
    ("non-ASCII digits", sample("indicator", created="２０２４-03-05T10:00:00Z"), "'created'"),
    ("published invalid", sample("report", published="yesterday"), "'published'"),
    (
        "custom object bad created",
        {"type": "x-acme", "spec_version": "2.1", "id": sid("x-acme"), "created": "now"},
        "'created'",
    ),
    ("modified before created", sample("indicator", created=T1, modified=T0), "'modified'"),
    ("valid_until equals valid_from", sample("indicator", valid_until=T0), "'valid_until'"),
    ("valid_until before valid_from", sample("indicator", valid_from=T1, valid_until=T0), "'valid_until'"),
    ("last_seen before first_seen", sample("campaign", first_seen=T1, last_seen=T0), "'last_seen'"),
    ("sighting last_seen before first_seen", sample("sighting", first_seen=T2, last_seen=T1), "'last_seen'"),
    (
        "last_observed before first_observed",
        sample("observed-data", first_observed=T1, last_observed=T0),
        "'last_observed'",
    ),
    ("stop_time not after start_time", sample("relationship", start_time=T1, stop_time=T1), "'stop_time'"),
    ("confidence a string", sample("indicator", confidence="high"), "'confidence'"),
    ("confidence too big", sample("indicator", confidence=101), "'confidence'"),
    ("confidence negative", sample("indicator", confidence=-1), "'confidence'"),
    ("confidence a float", sample("indicator", confidence=50.5), "'confidence'"),
    ("confidence a boolean", sample("indicator", confidence=True), "'confidence'"),
    ("confidence on an sco", sample("ipv4-addr", confidence="high"), "'confidence'"),
    ("labels a string", sample("indicator", labels="c2"), "'labels'"),
    ("labels with a number", sample("indicator", labels=["c2", 2]), "'labels'"),
    ("labels empty", sample("indicator", labels=[]), "'labels'"),
    (
        "external reference without source_name",
        sample("indicator", external_references=[{"url": "https://x.example"}]),
        "'external_references'",
    ),
    (
        "external reference with source_name only",
        sample("indicator", external_references=[{"source_name": "x"}]),
        "'external_references'",
    ),
    (
        "external references not a list",
        sample("indicator", external_references={"source_name": "x", "url": "u"}),
        "'external_references'",
    ),
    (
        "external reference url a number",
        sample("indicator", external_references=[{"source_name": "x", "url": 5}]),
        "'external_references'",
    ),
    (
        "marking ref not an id",
        sample("indicator", object_marking_refs=["tlp:amber"]),
        "'object_marking_refs'",
    ),
    (
        "marking ref to an identity",
        sample("indicator", object_marking_refs=[IDENTITY]),
        "'object_marking_refs'",
    ),
    ("marking refs a string", sample("indicator", object_marking_refs=TLP_AMBER_1), "'object_marking_refs'"),
    ("created_by_ref not an identity", sample("indicator", created_by_ref=TLP_AMBER_1), "'created_by_ref'"),
    ("created_by_ref not an id", sample("indicator", created_by_ref="CERT"), "'created_by_ref'"),
    (
        "granular markings not a list",
        sample("indicator", granular_markings={"marking_ref": TLP_AMBER_1}),
        "'granular_markings'",
    ),
    (
        "granular marking without selectors",
        sample("indicator", granular_markings=[{"marking_ref": TLP_AMBER_1}]),
        "'granular_markings'",
    ),
    (
        "granular marking with both ref and lang",
        sample(
            "indicator", granular_markings=[{"marking_ref": TLP_AMBER_1, "lang": "en", "selectors": ["name"]}]
        ),
        "'granular_markings'",
    ),
    (
        "granular marking ref not a marking",
        sample("indicator", granular_markings=[{"marking_ref": IDENTITY, "selectors": ["name"]}]),
        "'granular_markings'",
    ),
    ("revoked a string", sample("indicator", revoked="false"), "'revoked'"),
    ("lang a number", sample("indicator", lang=5), "'lang'"),
    ("custom _ref not an id", sample("indicator", x_acme_owner_ref="bob"), "'x_acme_owner_ref'"),
    ("custom _refs not ids", sample("indicator", x_acme_refs=[IDENTITY, "bob"]), "'x_acme_refs'"),
    ("custom _refs not a list", sample("indicator", x_acme_refs=IDENTITY), "'x_acme_refs'"),
    (
        "custom object with a bad _ref",
        {"type": "x-acme", "spec_version": "2.1", "id": sid("x-acme"), "owner_ref": 3},
        "'owner_ref'",
    ),
    ("extensions a list", sample("indicator", extensions=[OPENCTI_EXTENSION]), "'extensions'"),
    ("extensions empty", sample("indicator", extensions={}), "'extensions'"),
    ("extension key not a name", sample("indicator", extensions={"Acme Ext": {"a": 1}}), "'extensions'"),
    (
        "extension definition id not a uuid",
        sample("indicator", extensions={"extension-definition--1234": {}}),
        "'extensions'",
    ),
    (
        "extension value not an object",
        sample("indicator", extensions={OPENCTI_EXTENSION: "score=5"}),
        "'extensions'",
    ),
    (
        "extension_type unknown",
        sample("indicator", extensions={OPENCTI_EXTENSION: {"extension_type": "plugin"}}),
        "'extensions'",
    ),
    ("property name uppercase", sample("indicator", xOpenctiScore=5), "'xOpenctiScore'"),
    ("property name with a hyphen", sample("indicator", **{"x-acme": 1}), "'x-acme'"),
    ("property name too short", sample("indicator", xy=1), "'xy'"),
    ("property name non-ASCII", sample("indicator", x_café=1), "'x_café'"),
    ("property name too long", sample("indicator", **{LONG_NAME: 1}), LONG_NAME),
    (
        "custom object property name",
        {"type": "x-acme", "spec_version": "2.1", "id": sid("x-acme"), "Owner": "x"},
        "'Owner'",
    ),
    ("pattern syntax", sample("indicator", pattern="[ipv4-addr:value = '1.2.3.4'"), "'pattern'"),
    ("pattern empty", sample("indicator", pattern=""), "'pattern'"),
    ("pattern trailing operator", sample("indicator", pattern="[url:value = 'x'] AND"), "'pattern'"),
    ("pattern bad object type", sample("indicator", pattern="[IPV4-addr:value = '1.2.3.4']"), "'pattern'"),
    ("pattern underscore type", sample("indicator", pattern="[ipv4_addr:value = '1.2.3.4']"), "'pattern'"),
    ("pattern bad property", sample("indicator", pattern="[ipv4-addr:Value = '1.2.3.4']"), "'pattern'"),
    ("pattern short property", sample("indicator", pattern="[file:ab = 'x']"), "'pattern'"),
    (
        "pattern repeated qualifier",
        sample("indicator", pattern="[file:name = 'x'] WITHIN 5 SECONDS WITHIN 6 SECONDS"),
        "'pattern'",
    ),
    (
        "pattern impossible date",
        sample("indicator", pattern="[file:created = t'2023-02-29T00:00:00Z']"),
        "'pattern'",
    ),
    ("pattern not a string", sample("indicator", pattern=["[file:name = 'x']"]), "'pattern'"),
    ("pattern_type not a string", sample("indicator", pattern_type=1), "'pattern_type'"),
    ("relationship source not an id", sample("relationship", source_ref="indicator"), "'source_ref'"),
    ("relationship to a marking definition", sample("relationship", target_ref=TLP_AMBER_1), "'target_ref'"),
    (
        "relationship type uppercase",
        sample("relationship", relationship_type="Indicates"),
        "'relationship_type'",
    ),
    ("sighting of nothing", sample("sighting", sighting_of_ref="x"), "'sighting_of_ref'"),
    ("sighting count negative", sample("sighting", count=-1), "'count'"),
    (
        "sighted where not an identity",
        sample("sighting", where_sighted_refs=[MALWARE]),
        "'where_sighted_refs'",
    ),
    ("number_observed a string", sample("observed-data", number_observed="3"), "'number_observed'"),
    ("number_observed zero", sample("observed-data", number_observed=0), "'number_observed'"),
    (
        "observed-data with objects and object_refs",
        sample("observed-data", objects={"0": {"type": "ipv4-addr", "value": "198.51.100.1"}}),
        "'objects'",
    ),
    ("observed-data with neither", sample("observed-data", object_refs=DROP), "'object_refs'"),
    ("is_family a string", sample("malware", is_family="true"), "'is_family'"),
    ("malware family without a name", sample("malware", name=DROP), "'name'"),
    ("opinion not in the enumeration", sample("opinion", opinion="maybe"), "'opinion'"),
    ("grouping object_refs empty", sample("grouping", object_refs=[]), "'object_refs'"),
    ("as number a string", sample("autonomous-system", number="AS64500"), "'number'"),
    ("hash value a number", sample("file", hashes={"MD5": 5}), "'hashes'"),
    ("file without hashes or name", sample("file", name=DROP, hashes=DROP, size=3), "'hashes'"),
    ("file size negative", sample("file", size=-1), "'size'"),
    ("network traffic without ends", sample("network-traffic", src_ref=DROP), "'src_ref'"),
    ("network traffic from a file", sample("network-traffic", src_ref=sid("file")), "'src_ref'"),
    (
        "artifact url without hashes",
        sample("artifact", payload_bin=DROP, url="https://x.example/a"),
        "'hashes'",
    ),
    ("artifact payload not base64", sample("artifact", payload_bin="not base64!"), "'payload_bin'"),
    ("magic number not hex", sample("file", magic_number_hex="xyz"), "'magic_number_hex'"),
    ("location without a place", sample("location", country=DROP), "'region'"),
    ("latitude without longitude", sample("location", latitude=23.7), "'longitude'"),
    ("latitude out of range", sample("location", latitude=123.0, longitude=90.4), "'latitude'"),
    (
        "extension_types unknown",
        sample("extension-definition", extension_types=["plugin"]),
        "'extension_types'",
    ),
    ("defanged a string", sample("domain-name", defanged="yes"), "'defanged'"),
    (
        "marking definition marks itself",
        sample("marking-definition", object_marking_refs=[SAMPLES["marking-definition"][0]["id"]]),
        "'object_marking_refs'",
    ),
    ("marking definition without content", sample("marking-definition", definition=DROP), "'definition'"),
    ("marking definition content a string", sample("marking-definition", definition="(c)"), "'definition'"),
    ("forged canonical tlp name", changed(TLP_2_0["amber"], name="TLP:CLEAR"), "'name'"),
    (
        "forged canonical tlp level",
        changed(CANONICAL_MARKINGS[TLP_AMBER_1], definition={"tlp": "white"}),
        "'definition'",
    ),
    (
        "tlp claimed under a new id",
        changed(CANONICAL_MARKINGS[TLP_AMBER_1], id=sid("marking-definition", 9)),
        "'definition_type'",
    ),
    (
        "tlp 2.0 extension under a new id",
        changed(TLP_2_0["red"], id=sid("marking-definition", 9)),
        "'extensions'",
    ),
]


@pytest.mark.parametrize(
    ("obj", "prop"), [(obj, prop) for _, obj, prop in REFUSALS], ids=[case for case, _, _ in REFUSALS]
)
def test_refused_with_the_property_named(obj: Any, prop: str) -> None:
    message = refused(obj)
    assert prop in message
    stix_id = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(stix_id, str):
        assert message.startswith(f"{stix_id}: ")


def test_message_shape_for_modified_before_created() -> None:
    obj = sample("indicator", created="2021-06-01T00:00:00Z", modified="2020-01-01T00:00:00Z")
    assert refused(obj) == (
        f"{obj['id']}: 'modified' (2020-01-01T00:00:00Z) is before 'created' (2021-06-01T00:00:00Z)"
    )


_COMPARISON = "[ipv4-addr:value = '198.51.100.1']"


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("(" * 3_000 + _COMPARISON + ")" * 3_000, "nests brackets 3001 deep"),
        ("(" * 20_000 + _COMPARISON + ")" * 20_000, "at most 32"),
        ("[" * 3_000 + "ipv4-addr:value = '1'" + "]" * 3_000, "deep"),
        (" OR ".join([_COMPARISON] * 3_000), "characters"),
        (" OR ".join([_COMPARISON] * 500), "499 AND/OR/FOLLOWEDBY operators"),
        ("[" + " AND ".join(["ipv4-addr:value = '1'"] * 200) + "]", "at most 64"),
        (" OR ".join(["(" * 8 + _COMPARISON + ")" * 8] * 20), "brackets"),
    ],
)
def test_patterns_too_big_to_parse_are_refused_quickly(pattern: str, says: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidStixError, match=r"'pattern' is not a valid STIX 2\.1 pattern") as raised:
        validate_object(sample("indicator", pattern=pattern))
    assert says in raised.value.message
    assert time.perf_counter() - started < 0.5


def test_a_pattern_at_every_bound_parses_in_well_under_a_second() -> None:
    inner = "ipv4-addr:value = '1'"
    for pattern in (
        " OR ".join([_COMPARISON] * 65),
        "(" * 31 + _COMPARISON + ")" * 31,
        "[" + " AND ".join(["(" + inner + ")"] * 65) + "]",
        " OR ".join([_COMPARISON + " REPEATS 5 TIMES WITHIN 10 SECONDS"] * 65),
    ):
        started = time.perf_counter()
        validate_object(sample("indicator", pattern=pattern))
        assert time.perf_counter() - started < 0.5


def test_a_string_literal_may_hold_anything_the_bounds_count() -> None:
    literal = "(" * 100 + " OR " * 100
    validate_object(sample("indicator", pattern=f"[url:value = '{literal}' AND url:value = 'x']"))


SCO_SAMPLES = [t for t in SAMPLES if t not in SDO_LIKE and t != "marking-definition"]


@pytest.mark.parametrize("typ", SCO_SAMPLES)
def test_revoked_on_an_sco_is_refused(typ: str) -> None:
    # STIX 2.1 gives cyber-observables no `revoked` (they are not versioned, section 3.6): one
    # accepted would read as a revocation of the value for every party that stores it.
    message = refused(sample(typ, revoked=True))
    assert "'revoked'" in message and "observable" in message
    # `"revoked": false` says nothing: a tool that writes it everywhere loses no observable.
    assert validate_object(sample(typ, revoked=False)).revoked is False


def test_revoked_on_an_unversioned_custom_object_is_refused() -> None:
    obj = {"type": "x-acme-widget", "spec_version": "2.1", "id": sid("x-acme-widget"), "revoked": True}
    assert "'revoked'" in refused(obj)
    assert validate_object(obj | {"created": T0, "modified": T1}).revoked
