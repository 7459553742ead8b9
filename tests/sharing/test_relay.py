"""Originator control over every channel: what a partner sends never goes back to it (TAXII GET,
export, push), reaches a third partner only as the sender's `write.relay_to` says, keeps its
provenance, and sightings of it flow back to it.

Partners here: A sends (its agreement's relay_to varies), B and C receive; all three read and
write one collection, so only originator control keeps A's objects from them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from exchange.agreement import service as agreement_service
from exchange.database.core import make_session_factory
from exchange.export.service import export_bundle
from exchange.intel.models import ObjectVersion
from exchange.partner import service as partner_service
from exchange.sharing.preview import preview
from exchange.signing import KeyRing, default_directory
from feeds.delivery import push_partner
from tests.support.partners import agreement_doc
from tests.support.stix import T0, indicator, publish, sdo
from tests.support.taxii import TAXII, submit

pytestmark = pytest.mark.live


@dataclass
class Party:
    slug: str
    cred: tuple[str, str]
    identity: str
    pk: int


def _doc(slug: str, coll: str, *, relay_to: Any = "none", push: str | None = None, **write: Any) -> dict:  # type: ignore[type-arg]
    doc = agreement_doc(
        slug,
        read={"collections": [coll], "max_tlp": "amber"},
        write={"collections": [coll], "relay_to": relay_to, **write},
    )
    if push:
        doc["push"] = {"url": push, "every": "1h"}
    return doc


def _party(live_server, coll: str, **doc: Any) -> Party:  # type: ignore[no-untyped-def]
    slug = f"p-{uuid.uuid4().hex[:8]}"
    identity = f"identity--{uuid.uuid4()}"
    with live_server.session() as db:
        partner, credential, key = partner_service.create(
            db, slug=slug, name=slug.upper(), country="IN", identity_id=identity, actor="test"
        )
        agreement_service.apply(db, _doc(slug, coll, **doc), actor="test")
        return Party(slug, (credential.id, key), identity, partner.pk)


def _apply(live_server, party: Party, coll: str, **doc: Any) -> None:  # type: ignore[no-untyped-def]
    with live_server.session() as db:
        agreement_service.apply(db, _doc(party.slug, coll, **doc), actor="test")


def pull(url: str, party: Party, **params: Any) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Every page a partner's TAXII client gets; objects by id, and where to resume."""
    served: dict[str, dict[str, Any]] = {}
    resume = params.get("added_after")
    with httpx.Client(auth=party.cred, headers={"Accept": TAXII}, timeout=30) as client:
        while True:
            response = client.get(url + "objects/", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            for obj in body.get("objects", []):
                assert obj["id"] not in served, "served twice"
                served[obj["id"]] = obj
            resume = response.headers.get("X-TAXII-Date-Added-Last", resume)
            if not body.get("more"):
                return served, resume
            params = {"next": body["next"]}


def exported(live_server, party: Party, coll) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    with live_server.session() as db:
        bundle = export_bundle(
            db,
            partner_slug=party.slug,
            collection_ref=coll.alias,
            api_root=live_server.settings.api_root,
            actor="analyst-exporting",
            exchange_identity=live_server.settings.identity_id,
        )
    return {o["id"]: o for o in orjson.loads(bundle.bundle_bytes).get("objects", [])}


def pushed(live_server, inbox, party: Party) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Run the partner's push now; what its inbox got in this run."""
    before = len(inbox.bodies)
    settings = live_server.settings
    summary = push_partner(
        make_session_factory(live_server.engine), settings, KeyRing(default_directory(settings)), party.slug
    )
    assert summary.status in ("ok", "nothing"), summary.line()
    out: dict[str, dict[str, Any]] = {}
    for body in inbox.bodies[before:]:
        out |= {o["id"]: o for o in orjson.loads(body).get("objects", [])}
    return out


def inbox_url(inbox) -> str:  # type: ignore[no-untyped-def]
    return f"http://127.0.0.1:{inbox.server_address[1]}/taxii2/root/collections/inbox/"


def test_no_echo_and_relay_follow_relay_to_over_pull_export_and_push(live_server, http, inbox):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    a = _party(live_server, coll.alias, push=inbox_url(inbox))
    b = _party(live_server, coll.alias, push=inbox_url(inbox))
    c = _party(live_server, coll.alias)
    cert = indicator()
    publish(http, url, [cert])
    mine = indicator(created_by_ref=a.identity)
    assert submit(None, url, [mine], auth=a.cred)["success_count"] == 1

    # relay_to none (the default): A's object reaches nobody, A least of all. (Push first: it
    # sends only what the partner has not yet received through any channel.)
    assert set(pushed(live_server, inbox, a)) == {cert["id"]}
    assert set(pushed(live_server, inbox, b)) == {cert["id"]}
    for party in (a, b, c):
        assert set(pull(url, party)[0]) == {cert["id"]}, party.slug
        assert set(exported(live_server, party, coll)) == {cert["id"]}, party.slug
    _, resume_b = pull(url, b)
    _, resume_c = pull(url, c)

    # A now relays to B alone: the stored object enters B's stream (resume points included), once.
    _apply(live_server, a, coll.alias, relay_to=[b.slug], push=inbox_url(inbox))
    assert set(pushed(live_server, inbox, b)) == {mine["id"]}
    fresh, _ = pull(url, b, added_after=resume_b)
    assert set(fresh) == {mine["id"]}
    assert fresh[mine["id"]]["created_by_ref"] == a.identity  # provenance kept
    assert set(exported(live_server, b, coll)) == {cert["id"], mine["id"]}
    assert pull(url, c, added_after=resume_c)[0] == {}
    assert set(exported(live_server, c, coll)) == {cert["id"]}
    # ... and never back to A, through any channel.
    assert mine["id"] not in pull(url, a)[0]
    assert mine["id"] not in exported(live_server, a, coll)
    assert pushed(live_server, inbox, a) == {}

    # anonymize_on_relay: B's copy names the exchange, not A.
    _apply(live_server, a, coll.alias, relay_to=[b.slug], anonymize_on_relay=True, push=inbox_url(inbox))
    got = pull(url, b)[0][mine["id"]]
    assert got["created_by_ref"] == live_server.settings.identity_id

    # relay_to all reaches C too; narrowing it again withholds at once.
    _apply(live_server, a, coll.alias, relay_to="all")
    assert set(pull(url, c, added_after=resume_c)[0]) == {mine["id"]}
    _apply(live_server, a, coll.alias, relay_to="none")
    assert set(pull(url, c)[0]) == {cert["id"]} and set(pull(url, b)[0]) == {cert["id"]}

    # The ledger and the object's page show where it came from and where it went.
    response = http.get(f"{live_server.url}/api/v1/objects/{mine['id']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["came_from"] == {"origin": "partner", "partner": a.slug}
    assert body["versions"][0]["from"] == {"origin": "partner", "partner": a.slug, "originator": a.slug}
    went = {(r["partner"], r["channel"]) for r in body["versions"][0]["received_by"]}
    assert {(b.slug, "taxii"), (b.slug, "push"), (b.slug, "export"), (c.slug, "taxii")} <= went
    assert not any(p == a.slug for p, _ in went)
    ledger = http.get(f"{live_server.url}/api/v1/objects/{mine['id']}/recipients").json()
    assert ledger["came_from"] == {"origin": "partner", "partner": a.slug}
    assert a.slug not in {r["partner"] for r in ledger["received"]}


def test_no_one_launders_a_partners_object(live_server, http):
    coll = live_server.collection(default_tlp="green")
    other = live_server.collection(default_tlp="green")
    url, other_url = live_server.collection_url(coll), live_server.collection_url(other)
    a = _party(live_server, coll.alias)
    b = _party(live_server, coll.alias, relay_to="all")
    c = _party(live_server, coll.alias)
    _apply(live_server, c, coll.alias)
    with live_server.session() as db:  # C reads the second collection too
        doc = _doc(c.slug, coll.alias)
        doc["read"]["collections"].append(other.alias)
        agreement_service.apply(db, doc, actor="test")
    mine = indicator()
    submit(None, url, [mine], auth=a.cred)
    cert_ind = indicator()
    publish(http, url, [cert_ind])

    # B re-posts A's object as it is, into another collection: stored (a copy changes nothing)
    # but still A's to relay.
    with live_server.session() as db:
        doc = _doc(b.slug, coll.alias, relay_to="all")
        doc["write"]["collections"].append(other.alias)
        agreement_service.apply(db, doc, actor="test")
    assert submit(None, other_url, [mine], auth=b.cred)["success_count"] == 1
    assert submit(None, url, [mine], auth=b.cred)["success_count"] == 1  # here: the same row
    # The CERT copies it into another collection, then makes a new version, then revokes it.
    publish(http, other_url, [mine])
    v2 = dict(mine, modified="2026-02-01T00:00:00.000Z", name="CERT's edit")
    publish(http, url, [v2])
    # A relationship from the CERT's indicator to A's object, and a report of it.
    rel = sdo(
        "relationship", relationship_type="related-to", source_ref=cert_ind["id"], target_ref=mine["id"]
    )
    report = sdo("report", name="r", published=T0, object_refs=[cert_ind["id"]])
    publish(http, url, [rel, report])
    for version in ("last", "all"):
        served, _ = pull(url, c, **{"match[version]": version})
        assert set(served) == {cert_ind["id"], report["id"]}, version
        assert pull(other_url, c)[0] == {}
    # B (relay_to all) gets nothing of A's either: its own copy is not served back to it.
    assert set(pull(url, b, **{"match[version]": "all"})[0]) == {cert_ind["id"], report["id"]}
    # A gets neither its object nor the CERT's versions of it, but may follow references to it.
    assert set(pull(url, a, **{"match[version]": "all"})[0]) == {cert_ind["id"], rel["id"], report["id"]}
    # Nor by id, nor as versions or in the manifest, for C or (no echo) for A.
    for party in (a, c):
        for path in (f"objects/{mine['id']}/", f"objects/{mine['id']}/versions/"):
            response = httpx.get(url + path, auth=party.cred, headers={"Accept": TAXII})
            assert response.status_code == 404, (party.slug, path, response.text)
        manifest = httpx.get(url + "manifest/", auth=party.cred, headers={"Accept": TAXII}).json()
        assert mine["id"] not in {m["id"] for m in manifest.get("objects", [])}
    revoked = dict(v2, modified="2026-03-01T00:00:00.000Z", revoked=True)
    publish(http, url, [revoked])
    assert mine["id"] not in pull(url, c, **{"match[version]": "all"})[0]
    # Nor can B take A's object over with a version of its own.
    status = submit(None, url, [dict(mine, modified="2026-04-01T00:00:00.000Z")], auth=b.cred)
    assert status["failure_count"] == 1

    with live_server.session() as db:
        rows = db.query(ObjectVersion).filter(ObjectVersion.stix_id == mine["id"]).all()
        assert {r.originator_partner_pk for r in rows} == {a.pk}
        assert {r.origin_partner_pk for r in rows} == {a.pk, b.pk, None}
        report_c = preview(db, agreement_service.current_doc_for(db, c.pk), now=_now())
        report_a = preview(db, agreement_service.current_doc_for(db, a.pk), now=_now())
    # The preview counts latest versions: A's object once, with its own reason for each.
    shown = {x["collection"]: x for x in report_c["collections"]}
    assert shown[coll.alias]["withheld_by"].get("relay") == 1
    assert "originator" not in shown[coll.alias]["withheld_by"]
    assert shown[other.alias]["withheld_by"].get("relay") == 1
    assert "originator" not in shown[other.alias]["withheld_by"]
    own = {x["collection"]: x for x in report_a["collections"]}[coll.alias]["withheld_by"]
    assert own.get("originator") == 1 and "relay" not in own


def test_a_partners_sco_does_not_hide_the_same_value_the_cert_publishes(live_server, http):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    a = _party(live_server, coll.alias)
    c = _party(live_server, coll.alias)
    value = f"198.51.100.{uuid.uuid4().int % 250}"
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": _sco_id(value), "value": value}
    submit(None, url, [sco], auth=a.cred)
    assert pull(url, c)[0] == {}
    publish(http, url, [sco])  # the CERT's own copy of the value, stored beside A's
    assert set(pull(url, c)[0]) == {sco["id"]}
    # A posting a value the CERT already has stores its own copy and takes nothing away.
    other = f"203.0.113.{uuid.uuid4().int % 250}"
    cert_sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": _sco_id(other), "value": other}
    publish(http, url, [cert_sco])
    submit(None, url, [cert_sco], auth=a.cred)
    assert set(pull(url, c)[0]) == {sco["id"], cert_sco["id"]}


def test_a_sighting_flows_back_to_the_originator_only(live_server, http, inbox):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    a = _party(live_server, coll.alias, push=inbox_url(inbox))
    b = _party(live_server, coll.alias)
    c = _party(live_server, coll.alias)
    theirs = indicator()
    submit(None, url, [theirs], auth=a.cred)
    # The CERT publishes its partners' identities: the sighting's where_sighted_refs resolve.
    b_identity = sdo("identity", name=b.slug, identity_class="organization")
    b_identity["id"] = b.identity
    publish(http, url, [b_identity])
    _, resume = pull(url, a)
    sighting = sdo(
        "sighting",
        sighting_of_ref=theirs["id"],
        count=3,
        created_by_ref=b.identity,
        where_sighted_refs=[b.identity],
        first_seen=T0,
    )
    assert submit(None, url, [sighting], auth=b.cred)["success_count"] == 1

    assert set(pushed(live_server, inbox, a)) == {sighting["id"]}
    back, _ = pull(url, a, added_after=resume)
    assert set(back) == {sighting["id"]}
    # B never agreed to be named to A: the sighting comes from the exchange.
    ident = live_server.settings.identity_id
    assert back[sighting["id"]]["created_by_ref"] == ident
    assert back[sighting["id"]]["where_sighted_refs"] == [ident]
    assert sighting["id"] in exported(live_server, a, coll)
    # Not to third parties (B's relay_to is none), and not back to B.
    assert set(pull(url, c)[0]) == {b.identity}
    assert set(pull(url, b)[0]) == {b.identity}
    # With B relaying to A, B's name travels with it.
    _apply(live_server, b, coll.alias, relay_to=[a.slug])
    assert pull(url, a)[0][sighting["id"]]["created_by_ref"] == b.identity
    # A partner that does not read sightings gets none.
    with live_server.session() as db:
        doc = _doc(a.slug, coll.alias)
        doc["read"]["types"] = ["indicator"]
        agreement_service.apply(db, doc, actor="test")
    assert sighting["id"] not in pull(url, a)[0]
    # C cannot harvest B's sightings by re-posting A's indicator: C's copy makes it no originator.
    submit(None, url, [theirs], auth=c.cred)
    assert sighting["id"] not in pull(url, c)[0]


def _sco_id(value: str) -> str:
    import stix2

    return str(stix2.IPv4Address(value=value).id)


def _now():  # type: ignore[no-untyped-def]
    from exchange.database.types import utcnow

    return utcnow()


def test_an_anonymised_relay_never_serves_the_originators_identity(live_server, http):
    """anonymize_on_relay: the relayed copies name the exchange, and the originator's own
    identity object, which names it, does not travel with them (TAXII and export alike), while
    its objects that reference that identity still do."""
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    b = _party(live_server, coll.alias)
    a = _party(live_server, coll.alias, relay_to=[b.slug])
    own_identity = sdo("identity", name=f"{a.slug} national CERT", identity_class="organization")
    own_identity["id"] = a.identity
    mine = indicator(created_by_ref=a.identity)
    submit(None, url, [own_identity, mine], auth=a.cred)
    # Relayed by name first: both reach B, the identity too.
    assert set(pull(url, b)[0]) == {a.identity, mine["id"]}
    _apply(live_server, a, coll.alias, relay_to=[b.slug], anonymize_on_relay=True)
    # The CERT's own note about A names A's identity, and nothing renames it there: withheld.
    about_a = sdo("note", content="seen at the originator", object_refs=[a.identity])
    publish(http, url, [about_a])
    served, _ = pull(url, b)
    assert set(served) == {mine["id"]}
    assert a.identity not in orjson.dumps(list(served.values())).decode()
    assert served[mine["id"]]["created_by_ref"] == live_server.settings.identity_id
    assert set(exported(live_server, b, coll)) == {mine["id"]}
    one = httpx.get(url + f"objects/{a.identity}/", auth=b.cred, headers={"Accept": TAXII})
    assert one.status_code == 404
    for path in ("objects/", "manifest/"):
        listed = httpx.get(
            url + path, auth=b.cred, headers={"Accept": TAXII}, params={"match[id]": a.identity}
        )
        assert listed.status_code == 200 and a.identity not in listed.text
    # A itself still gets nothing of its own back.
    assert a.identity not in pull(url, a)[0]
