"""Property: what TAXII serves a partner is exactly what `policies.decide` allows, never red.

Random objects go into a fresh collection through `ingest`; a fresh partner gets a random
agreement; the test pages through the objects endpoint with a small random `limit` and compares
the ids served with the ids `decide` allows, worked out here from the generated objects alone
(TLP levels from our own table, referential closure from the generated references: relationship
and sighting ends, observed-data's SCOs). Some objects are written by the partner itself (never
served back to it, but it may follow references to them), some by another partner whose
`write.relay_to` is drawn too (none, all, or this partner), whose sightings of the partner's
objects flow back to it; some nodes arrive only after the partner's first pull, which then
resumes from X-TAXII-Date-Added-Last: together the two pulls must give exactly what `decide`
allows at the end, each object once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exchange.agreement import service as agreement_service
from exchange.intel.ingest import ingest
from exchange.intel.models import Collection
from exchange.partner import service as partner_service
from policies.engine import ObjectFacts, Provenance, ReadGrant, decide
from tests.support.partners import agreement_doc
from tests.support.stix import GREEN
from tests.support.stix import RED as RED_ID
from tests.support.taxii import TAXII

pytestmark = pytest.mark.live

LEVELS = ["clear", "green", "amber", "amber+strict", "red"]
RANK = {level: index for index, level in enumerate(LEVELS)}
RED = RANK["red"]
# Every TLP marking id the exchange understands, with the rank this test expects it to carry.
MARKINGS: dict[str, int] = {
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": 0,  # 2.0 clear
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": 1,  # 2.0 green
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": 2,  # 2.0 amber
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": 3,  # 2.0 amber+strict
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": 4,  # 2.0 red
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": 0,  # 1.0 white
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": 1,  # 1.0 green
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": 2,  # 1.0 amber
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": 4,  # 1.0 red
}
# Statement marking definitions that read as TLP levels (as MISP and OpenCTI exports write them):
# stored once per example under fresh ids, they count as the level they state.
STATEMENTS: dict[str, tuple[str, int]] = {
    "statement:red": ("TLP:RED", 4),
    "statement:amber+strict": ("tlp: amber+strict", 3),
}
TYPES = ["indicator", "malware", "relationship", "sighting", "identity", "observed-data", "ipv4-addr"]
NODE_TYPES = ("indicator", "malware", "identity", "ipv4-addr")
SCO_TYPES = ("ipv4-addr",)
TS = "2026-01-01T00:00:00.000Z"
OTHER = "p-someone-else"


@dataclass(frozen=True)
class Spec:
    type: str
    markings: tuple[str, ...]
    confidence: int | None
    audience: tuple[str, ...] | None  # "me" / "other", resolved to slugs per example
    ends: tuple[int, int]  # relationship / sighting ends: indexes into the node objects
    dangling: bool  # one end names an object that was never stored
    late: bool = False  # a node stored only after the partner's first pull
    source: str = "cert"  # who wrote it: the CERT, the partner itself ("me"), another ("sender")


specs = st.builds(
    Spec,
    type=st.sampled_from(TYPES),
    markings=st.lists(st.sampled_from(sorted(MARKINGS) + sorted(STATEMENTS)), max_size=2, unique=True).map(
        tuple
    ),
    confidence=st.none() | st.integers(min_value=0, max_value=100),
    audience=st.none()
    | st.lists(st.sampled_from(["me", "other"]), min_size=1, max_size=2, unique=True).map(tuple),
    ends=st.tuples(st.integers(0, 50), st.integers(0, 50)),
    dangling=st.sampled_from([False, False, False, True]),
    late=st.sampled_from([False, False, True]),
    source=st.sampled_from(["cert", "cert", "me", "sender"]),
)


@dataclass(frozen=True)
class Terms:
    max_tlp: str
    types: tuple[str, ...] | None
    min_confidence: int | None
    relay_to: str = "none"  # the sender's write.relay_to: none, all, or "me" (this partner only)


terms = st.builds(
    Terms,
    max_tlp=st.sampled_from(LEVELS),
    types=st.none() | st.lists(st.sampled_from(TYPES), unique=True).map(tuple),
    min_confidence=st.none() | st.integers(min_value=0, max_value=100),
    relay_to=st.sampled_from(["none", "all", "me"]),
)


def statement_definitions() -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Fresh ids for the statement markings, and their marking-definition objects."""
    ids = {name: f"marking-definition--{uuid.uuid4()}" for name in STATEMENTS}
    defs = [
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": ids[name],
            "created": TS,
            "definition_type": "statement",
            "definition": {"statement": text},
        }
        for name, (text, _) in STATEMENTS.items()
    ]
    return ids, defs


def build_objects(items: list[Spec], statements: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """STIX objects for the specs; SROs point at node objects (or at nothing, when dangling)."""
    statements = statements or {}
    objects: list[dict[str, Any]] = []
    for spec in items:
        stix_id = f"{spec.type}--{uuid.uuid4()}"
        obj: dict[str, Any] = {
            "type": spec.type,
            "spec_version": "2.1",
            "id": stix_id,
            "created": TS,
            "modified": TS,
        }
        if spec.type == "indicator":
            obj |= {
                "name": "i",
                "pattern": "[ipv4-addr:value = '10.0.0.1']",
                "pattern_type": "stix",
                "valid_from": TS,
            }
        elif spec.type == "malware":
            obj |= {"name": "m", "is_family": False}
        elif spec.type == "identity":
            obj |= {"name": "someone", "identity_class": "organization"}
        elif spec.type == "ipv4-addr":
            obj = {
                "type": "ipv4-addr",
                "spec_version": "2.1",
                "id": stix_id,
                "value": f"10.{len(objects)}.0.1",
            }
        elif spec.type == "observed-data":
            obj |= {"first_observed": TS, "last_observed": TS, "number_observed": 1}
        objects.append(obj)
    nodes = [o["id"] for o in objects if o["type"] in NODE_TYPES]
    scos = [o["id"] for o in objects if o["type"] in SCO_TYPES]
    for spec, obj in zip(items, objects, strict=True):
        if obj["type"] == "observed-data":
            refs = (
                sorted({scos[i % len(scos)] for i in spec.ends}) if scos else [f"ipv4-addr--{uuid.uuid4()}"]
            )
            if spec.dangling:
                refs.append(f"ipv4-addr--{uuid.uuid4()}")
            obj["object_refs"] = refs
        if obj["type"] in ("relationship", "sighting"):
            ends = [nodes[i % len(nodes)] if nodes else f"malware--{uuid.uuid4()}" for i in spec.ends]
            if spec.dangling:
                ends[1] = f"indicator--{uuid.uuid4()}"
            if obj["type"] == "relationship":
                obj |= {"relationship_type": "related-to", "source_ref": ends[0], "target_ref": ends[1]}
            else:
                obj |= {"sighting_of_ref": ends[0], "count": 1}
                if spec.dangling:
                    obj["where_sighted_refs"] = [f"identity--{uuid.uuid4()}"]
        if spec.markings:
            obj["object_marking_refs"] = [statements.get(m, m) for m in spec.markings]
        if spec.confidence is not None and obj["type"] not in SCO_TYPES:
            obj["confidence"] = spec.confidence
    return objects


def end_ids(obj: dict[str, Any]) -> list[str]:
    if obj["type"] == "relationship":
        return [obj["source_ref"], obj["target_ref"]]
    if obj["type"] == "sighting":
        return [obj["sighting_of_ref"], *obj.get("where_sighted_refs", [])]
    if obj["type"] == "observed-data":
        return list(obj["object_refs"])
    return []


def expected_ids(
    items: list[Spec],
    objects: list[dict[str, Any]],
    grant: ReadGrant,
    default_rank: int,
    audience_of: dict[str, str],
    statements: dict[str, str] | None = None,
    relay_to: str = "none",
) -> set[str]:
    """What `decide` allows, with facts built from the generated objects only."""
    statements = statements or {}
    me, sender = grant.partner, "sender"
    relayers = frozenset({sender}) if relay_to in ("all", "me") else frozenset()
    who = {"me": me, "sender": sender}
    by_id = {obj["id"]: spec for spec, obj in zip(items, objects, strict=True)}

    def provenance(spec: Spec, obj: dict[str, Any]) -> Provenance | None:
        if spec.source == "cert" and obj["type"] != "sighting":
            return None
        source = who.get(spec.source)
        # SCOs have no originator (their ids come from their values), only a source.
        originator = None if obj["type"] in SCO_TYPES else source
        sighted = None
        if obj["type"] == "sighting":
            target = by_id.get(obj["sighting_of_ref"])
            if target is not None and target.source == "me" and not obj["sighting_of_ref"].startswith("ipv4"):
                sighted = me
        return Provenance(source=source, originator=originator, sighted_originator=sighted)

    def level(marking: str) -> int:
        return MARKINGS[marking] if marking in MARKINGS else STATEMENTS[marking][1]

    # A statement marking is referenced like any non-TLP marking: its definition (unmarked, so at
    # the collection's default, and without confidence) must be visible too.
    definition_visible = {
        name: decide(
            grant,
            ObjectFacts(
                stix_id=statements.get(name, name),
                type="marking-definition",
                tlp_rank=None,
                default_tlp_rank=default_rank,
                confidence=None,
                date_added_us=0,
                audience=None,
                refs_visible=True,
            ),
            now_us=1,
        ).allowed
        for name in STATEMENTS
    }

    def markings_visible(spec: Spec) -> bool:
        return all(definition_visible[m] for m in spec.markings if m in STATEMENTS)

    def facts(spec: Spec, obj: dict[str, Any], refs_visible: bool) -> ObjectFacts:
        return ObjectFacts(
            stix_id=obj["id"],
            type=obj["type"],
            tlp_rank=max((level(m) for m in spec.markings), default=None),
            default_tlp_rank=default_rank,
            confidence=None if obj["type"] in SCO_TYPES else spec.confidence,
            date_added_us=0,
            audience=None if spec.audience is None else frozenset(audience_of[a] for a in spec.audience),
            refs_visible=refs_visible,
            provenance=provenance(spec, obj),
        )

    def allows(spec: Spec, obj: dict[str, Any], refs_visible: bool) -> bool:
        return decide(grant, facts(spec, obj, refs_visible), now_us=1, relayers=relayers).allowed

    nodes_allowed = {
        obj["id"]
        for spec, obj in zip(items, objects, strict=True)
        if obj["type"] in NODE_TYPES and allows(spec, obj, markings_visible(spec))
    }
    # Every generated id is stored once, so a node the partner wrote vouches for references to it
    # (it brought it in), though it is never served back; hidden nodes of others never do.
    nodes_visible = set(nodes_allowed) | {
        obj["id"]
        for spec, obj in zip(items, objects, strict=True)
        if obj["type"] in NODE_TYPES and spec.source == "me"
    }
    allowed = set(nodes_allowed) | {
        statements[n] for n, ok in definition_visible.items() if ok and n in statements
    }
    for spec, obj in zip(items, objects, strict=True):
        if obj["type"] in NODE_TYPES:
            continue
        refs_visible = all(end in nodes_visible for end in end_ids(obj)) and markings_visible(spec)
        if allows(spec, obj, refs_visible):
            allowed.add(obj["id"])
    return allowed


def pull_all(
    live_server, cred: tuple[str, str], url: str, limit: int, *, added_after: str | None = None
) -> tuple[list[dict[str, Any]], int, str | None]:  # type: ignore[no-untyped-def]
    """Every page of one pull; the served objects, the page count and where to resume."""
    served: list[dict[str, Any]] = []
    pages = 0
    params: dict[str, Any] = {"limit": limit}
    if added_after:
        params["added_after"] = added_after
    resume = added_after
    with httpx.Client(auth=cred, headers={"Accept": TAXII}, timeout=30) as client:
        while True:
            response = client.get(url + "objects/", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            served += body.get("objects", [])
            resume = response.headers.get("X-TAXII-Date-Added-Last", resume)
            assert len(body.get("objects", [])) <= limit
            if not body.get("more"):
                assert "next" not in body
                return served, pages, resume
            assert pages < 100, "paging does not end"
            params = {"limit": limit, "next": body["next"]}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(specs, min_size=1, max_size=12),
    agreement=terms,
    default_tlp=st.sampled_from(LEVELS),
    limit=st.integers(min_value=1, max_value=4),
)
# Always tried: a relationship with one end hidden (red) and one visible, next to one whose ends
# are both visible; objects for this partner only, for another partner only, and for both.
@example(
    items=[
        Spec("indicator", (GREEN,), 80, None, (0, 0), False),
        Spec("malware", (RED_ID,), 80, None, (0, 0), False),
        Spec("relationship", (GREEN,), 80, None, (0, 1), False),
        Spec("relationship", (), 80, None, (0, 0), False),
        Spec("identity", (GREEN,), None, ("me",), (0, 0), False),
        Spec("identity", (GREEN,), None, ("other",), (0, 0), False),
        Spec("indicator", (), 80, ("me", "other"), (0, 0), False),
    ],
    agreement=Terms("amber", None, None),
    default_tlp="green",
    limit=2,
)
# Always tried too: statement markings read as red and amber+strict, an observed-data naming a
# hidden SCO, a node the partner wrote and a node that arrives after the first pull.
@example(
    items=[
        Spec("indicator", ("statement:red",), 80, None, (0, 0), False),
        Spec("malware", ("statement:amber+strict", GREEN), 80, None, (0, 0), False),
        Spec("indicator", (GREEN,), 80, None, (0, 0), False, source="me"),
        Spec("relationship", (GREEN,), 80, None, (2, 0), False),
        Spec("ipv4-addr", (RED_ID,), None, None, (0, 0), False),
        Spec("ipv4-addr", (GREEN,), None, None, (0, 0), False, late=True),
        Spec("observed-data", (GREEN,), 80, None, (0, 1), False),
        Spec("relationship", (GREEN,), 80, None, (2, 2), False),
    ],
    agreement=Terms("amber", None, None),
    default_tlp="green",
    limit=2,
)
# Always tried: another partner's objects under a relay_to naming this partner, a relationship
# from the CERT to one of them, and that partner's sighting of this partner's own indicator
# (it flows back) next to one of a CERT indicator (it does not).
@example(
    items=[
        Spec("indicator", (GREEN,), 80, None, (0, 0), False, source="me"),
        Spec("malware", (GREEN,), 80, None, (0, 0), False, source="sender"),
        Spec("indicator", (GREEN,), 80, None, (0, 0), False),
        Spec("relationship", (GREEN,), 80, None, (2, 1), False),
        Spec("sighting", (GREEN,), 80, None, (0, 0), False, source="sender"),
        Spec("sighting", (GREEN,), 80, None, (2, 2), False, source="sender"),
        Spec("relationship", (GREEN,), 80, None, (0, 2), False, source="me"),
    ],
    agreement=Terms("amber", None, None, relay_to="none"),
    default_tlp="green",
    limit=2,
)
# Always tried: a CERT relationship to an object the partner wrote itself that names a marking
# definition the partner may not read; the partner holds its object, so the relationship is served.
@example(
    items=[
        Spec("indicator", (GREEN, "statement:red"), None, None, (0, 0), False, source="me"),
        Spec("indicator", (), None, None, (0, 0), False),
        Spec("relationship", (), None, None, (0, 1), False),
    ],
    agreement=Terms("amber+strict", ("indicator", "relationship"), None),
    default_tlp="amber+strict",
    limit=4,
)
def test_served_ids_are_exactly_what_decide_allows(live_server, items, agreement, default_tlp, limit):
    coll = live_server.collection(default_tlp=default_tlp)
    slug = f"p-{uuid.uuid4().hex[:10]}"
    audience_of = {"me": slug, "other": OTHER}
    statement_ids, definitions = statement_definitions()
    objects = build_objects(items, statement_ids)
    read: dict[str, Any] = {"collections": [coll.alias], "max_tlp": agreement.max_tlp}
    if agreement.types is not None:
        read["types"] = list(agreement.types)
    if agreement.min_confidence is not None:
        read["min_confidence"] = agreement.min_confidence
    sender_slug = f"s-{uuid.uuid4().hex[:10]}"
    with live_server.session() as db:
        _, credential, key = partner_service.create(db, slug=slug, name="P", country="IN", actor="test")
        agreement_service.apply(db, agreement_doc(slug, read=read), actor="test")
        _, sender_cred, _ = partner_service.create(db, slug=sender_slug, name="S", country="LK", actor="test")
        relay = {"none": "none", "all": "all", "me": [slug]}[agreement.relay_to]
        write = {"collections": [coll.alias], "relay_to": relay}
        agreement_service.apply(db, agreement_doc(sender_slug, write=write), actor="test")
    writers = {"me": credential.id, "sender": sender_cred.id}

    def store(late: bool) -> None:
        with live_server.session() as db:
            target = db.get(Collection, coll.pk)
            # Audience and writer are per ingest call: one call each, in generation order otherwise.
            groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
            for spec, obj in zip(items, objects, strict=True):
                if (spec.late and obj["type"] in NODE_TYPES) == late:
                    groups.setdefault((spec.audience, spec.source), []).append(obj)
            for (audience, source), batch in groups.items():
                result = ingest(
                    db,
                    collection=target,
                    objects=batch,
                    origin="analyst" if source == "cert" else "partner",
                    added_by=writers.get(source),
                    audience=None if audience is None else [audience_of[a] for a in audience],
                )
                assert result.failures == [] and result.created == len(batch), result.failures

    with live_server.session() as db:
        stored = ingest(db, collection=db.get(Collection, coll.pk), objects=definitions, origin="analyst")
        assert stored.failures == [], stored.failures
    store(late=False)

    grant = ReadGrant(
        partner=slug,
        collection=coll.alias,
        max_tlp_rank=min(RANK[agreement.max_tlp], RED - 1),
        types=None if agreement.types is None else frozenset(agreement.types),
        min_confidence=agreement.min_confidence,
        embargo_us=0,
        redact=(),
        anonymize_source=False,
    )
    expected = expected_ids(
        items, objects, grant, RANK[default_tlp], audience_of, statement_ids, relay_to=agreement.relay_to
    )

    url = live_server.collection_url(coll)
    first, pages, resume = pull_all(live_server, (credential.id, key), url, limit)
    store(late=True)
    then, more_pages, _ = pull_all(live_server, (credential.id, key), url, limit, added_after=resume)
    served = first + then
    served_ids = [o["id"] for o in served]
    assert len(served_ids) == len(set(served_ids)), "an object was served twice"
    assert set(served_ids) == expected
    assert pages + more_pages >= -(-len(expected) // limit)  # at least ceil(n / limit) pages

    by_id = {o["id"]: (spec, o) for spec, o in zip(items, objects, strict=True)}
    for obj in served:
        if obj["type"] == "marking-definition":
            assert obj in definitions  # a statement definition, unmarked, served as stored
            continue
        spec, sent = by_id[obj["id"]]
        assert spec.source != "me", f"{obj['id']} went back to the partner that sent it"
        assert obj == sent  # no redaction in these agreements, no created_by_ref: served as stored
        level = max(
            (MARKINGS[m] if m in MARKINGS else STATEMENTS[m][1] for m in spec.markings),
            default=RANK[default_tlp],
        )
        assert level < RED, f"red object {obj['id']} left the exchange"


def test_closure_holds_through_a_withheld_relationship(live_server):
    coll = live_server.collection(default_tlp="green")
    slug = f"p-{uuid.uuid4().hex[:10]}"
    visible, red = build_objects(
        [
            Spec("indicator", (GREEN,), None, None, (0, 0), False),
            Spec("indicator", (RED_ID,), None, None, (0, 0), False),
        ]
    )
    rel = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": f"relationship--{uuid.uuid4()}",
        "created": TS,
        "modified": TS,
        "relationship_type": "indicates",
        "source_ref": visible["id"],
        "target_ref": red["id"],
    }
    report = {
        "type": "report",
        "spec_version": "2.1",
        "id": f"report--{uuid.uuid4()}",
        "created": TS,
        "modified": TS,
        "name": "r",
        "published": TS,
        "object_refs": [rel["id"]],
    }
    with live_server.session() as db:
        _, credential, key = partner_service.create(db, slug=slug, name="P", country="IN", actor="test")
        agreement_service.apply(
            db, agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "amber"}), actor="test"
        )
        result = ingest(
            db, collection=db.get(Collection, coll.pk), objects=[visible, red, rel, report], origin="analyst"
        )
        assert result.failures == []
    served, _, _ = pull_all(live_server, (credential.id, key), live_server.collection_url(coll), 10)
    served_ids = {o["id"] for o in served}
    # The relationship is withheld (its target is red), as it must be ...
    assert rel["id"] not in served_ids and visible["id"] in served_ids
    # ... so a report whose only content is that relationship must be withheld too.
    assert report["id"] not in served_ids
