"""A small, deterministic sample data set so a fresh install has something to serve."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from exchange.config import get_settings
from exchange.intel import service
from exchange.intel.ids import deterministic_id
from exchange.intel.ingest import IngestResult, ingest
from exchange.intel.models import ApiRoot
from policies.tlp import CANONICAL_MARKINGS

CREATED = "2026-11-20T08:00:00.000Z"
TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"


def _id(kind: str, name: str) -> str:
    return deterministic_id(kind, "demo", name)


def _sdo(kind: str, key: str, tlp: str, **props: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "spec_version": "2.1",
        "id": _id(kind, key),
        "created": CREATED,
        "modified": CREATED,
        "created_by_ref": IDENTITY,
        "object_marking_refs": [tlp],
        **props,
    }


IDENTITY = get_settings().identity_id


def sample_objects() -> dict[str, list[dict[str, Any]]]:
    """Objects per collection alias."""
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": IDENTITY,
        "created": CREATED,
        "modified": CREATED,
        "name": get_settings().identity_name,
        "identity_class": "organization",
        "sectors": ["government-national"],
    }
    markings = [CANONICAL_MARKINGS[TLP_GREEN], CANONICAL_MARKINGS[TLP_AMBER]]
    malware = _sdo(
        "malware",
        "bankbot",
        TLP_GREEN,
        name="BankBot dropper",
        is_family=True,
        malware_types=["trojan", "dropper"],
    )
    observables = [
        ("domain", "[domain-name:value = 'login-secure-bank.top']", "Phishing domain", TLP_GREEN, 80),
        ("ip", "[ipv4-addr:value = '45.13.22.7']", "Phishing kit host", TLP_GREEN, 70),
        ("url", "[url:value = 'http://login-secure-bank.top/a']", "Landing page", TLP_AMBER, 85),
        (
            "sha256",
            "[file:hashes.'SHA-256' = '4bac27393bdd9777ce02453256c5577cd02275510b2227f473d03f533924f877']",
            "BankBot dropper",
            TLP_AMBER,
            90,
        ),
    ]
    indicators = [
        _sdo(
            "indicator",
            name,
            tlp,
            name=title,
            description=f"{title} seen in the phishing wave",
            pattern=pattern,
            pattern_type="stix",
            valid_from=CREATED,
            indicator_types=["malicious-activity"],
            confidence=confidence,
        )
        for name, pattern, title, tlp, confidence in observables
    ]
    incident = _sdo(
        "incident",
        "phishing-wave",
        TLP_AMBER,
        name="Phishing wave against bank customers",
        description="Credential phishing against retail bank customers.",
    )
    relationships = [
        _sdo(
            "relationship",
            f"indicates-{ind['id']}",
            TLP_GREEN,
            relationship_type="indicates",
            source_ref=ind["id"],
            target_ref=malware["id"],
        )
        for ind in indicators
    ]
    related = _sdo(
        "relationship",
        "incident-uses",
        TLP_AMBER,
        relationship_type="related-to",
        source_ref=incident["id"],
        target_ref=malware["id"],
    )
    # The shape published incidents have: a report carrying the incident to MISP and OpenCTI.
    report = _sdo(
        "report",
        "phishing-wave",
        TLP_AMBER,
        name=incident["name"],
        description=incident["description"],
        report_types=["threat-report"],
        published=CREATED,
        labels=["incident-type:phishing", "severity:high"],
        object_refs=[incident["id"], malware["id"], related["id"]],
    )
    return {
        "indicators": [identity, *markings, malware, *indicators, *relationships],
        "incidents": [identity, *markings, malware, incident, related, report],
    }


DEMO_PARTNER = "cert-in"


def agreement() -> dict[str, Any]:
    """The demo partner's agreement: the README's example without embargo or minimum confidence.

    The sample's malware, incident and relationships carry no confidence, and its objects are
    new: either rule would leave the demo partner with little to see.
    """
    return {
        "partner": DEMO_PARTNER,
        "title": "Bangladesh-India MoU on cyber security cooperation",
        "valid_from": "2024-03-05",
        "valid_until": "2029-03-04",
        "status": "active",
        "read": {
            "collections": ["indicators", "incidents"],
            "max_tlp": "amber",
            "types": [
                "indicator",
                "malware",
                "incident",
                "report",
                "sighting",
                "relationship",
                "identity",
                "marking-definition",
            ],
        },
        "write": {
            "collections": ["partner-submissions"],
            "types": ["indicator", "sighting", "observed-data", "relationship", "note"],
        },
    }


def load_partner(db: Session) -> tuple[str, str, bool]:
    """The demo partner with its agreement (made once), and a new credential: (id, key, created)."""
    from exchange.agreement import service as agreement_service
    from exchange.partner import service as partner_service

    partner = partner_service.get_by_slug(db, DEMO_PARTNER, missing_ok=True)
    if partner is not None:
        # Already there: an administrator may have changed its agreement since; leave it be.
        credential, key = partner_service.create_credential(db, partner=partner, actor="demo")
        return credential.id, key, False
    partner, credential, key = partner_service.create(
        db, slug=DEMO_PARTNER, name="CERT-In", country="IN", actor="demo"
    )
    agreement_service.apply(db, agreement(), actor="demo", source="exchange demo")
    return credential.id, key, True


def load(db: Session, root: ApiRoot) -> dict[str, IngestResult]:
    """Store the sample set (re-running it adds nothing)."""
    results = {}
    for alias, objects in sample_objects().items():
        collection = service.get_collection(db, api_root_pk=root.pk, ref=alias)
        results[alias] = ingest(db, collection=collection, objects=objects, origin="analyst")
    return results
