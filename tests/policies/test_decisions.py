"""in_force, push_grant and decide_write: the sharing decisions push and TAXII writes rely on.

Table-driven, no database, no HTTP.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from policies.engine import PushGrant, WriteGrant, decide_write, in_force, push_grant
from policies.schemas import AgreementDoc

TODAY = date(2026, 6, 1)
INDICATOR = {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}
SIGHTING = {"type": "sighting", "id": "sighting--31b940d4-6f7f-459a-80ea-9c1f17b5891b"}
MALWARE = {"type": "malware", "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b"}


def doc(**changes: Any) -> AgreementDoc:
    data: dict[str, Any] = {
        "partner": "cert-in",
        "title": "MoU",
        "valid_from": "2026-01-01",
        "valid_until": "2026-12-31",
        "status": "active",
        "read": {"collections": ["indicators", "incidents"], "max_tlp": "amber"},
        "push": {"url": "https://taxii.partner.example/taxii2/root/collections/c1/", "every": "1h"},
    }
    data.update(changes)
    return AgreementDoc.model_validate({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize(
    ("changes", "partner_status", "today", "expected"),
    [
        ({}, "active", TODAY, True),
        ({}, "active", date(2026, 1, 1), True),  # first day of the window
        ({}, "active", date(2026, 12, 31), True),  # last day of the window
        ({}, "active", date(2025, 12, 31), False),  # the day before it starts
        ({}, "active", date(2027, 1, 1), False),  # the day after it ends
        ({"status": "draft"}, "active", TODAY, False),
        ({"status": "suspended"}, "active", TODAY, False),
        ({}, "suspended", TODAY, False),
        ({}, "Active", TODAY, False),  # only the exact status counts
        ({}, "", TODAY, False),
        ({"status": "suspended"}, "suspended", TODAY, False),
    ],
)
def test_in_force(changes: dict[str, Any], partner_status: str, today: date, expected: bool) -> None:
    assert in_force(doc(**changes), partner_status, today) is expected


def test_in_force_wants_a_calendar_day_not_an_instant() -> None:
    with pytest.raises(TypeError, match="date"):
        in_force(doc(), "active", datetime(2026, 6, 1, 12, tzinfo=UTC))


URL = "https://taxii.partner.example/taxii2/root/collections/c1/"


@pytest.mark.parametrize(
    ("changes", "partner_status", "expected"),
    [
        ({}, "active", PushGrant("cert-in", URL, 3600, ("indicators", "incidents"))),
        (
            {"push": {"url": URL, "every": "15m", "collection": "incidents"}},
            "active",
            PushGrant("cert-in", URL, 900, ("incidents",)),
        ),
        ({"push": None}, "active", None),  # no push section: no push delivery
        ({}, "suspended", None),
        ({"status": "draft"}, "active", None),
        ({"valid_until": "2026-05-31"}, "active", None),  # window over
        ({"valid_from": "2026-06-02"}, "active", None),  # not started
    ],
)
def test_push_grant(changes: dict[str, Any], partner_status: str, expected: PushGrant | None) -> None:
    assert push_grant(doc(**changes), partner_status=partner_status, today=TODAY) == expected


def test_no_agreement_means_no_push() -> None:
    assert push_grant(None, partner_status="active", today=TODAY) is None


ANY_TYPE = WriteGrant("cert-in", "partner-submissions", None, require_signature=False)
SOME_TYPES = WriteGrant("cert-in", "partner-submissions", frozenset({"indicator", "sighting"}), False)
SIGNED = WriteGrant("cert-in", "partner-submissions", frozenset({"indicator"}), require_signature=True)
TYPE_REFUSED = "the agreement does not let cert-in write objects of type {!r} here"
SIGNATURE_REFUSED = "the agreement requires signed submissions: the envelope signature does not verify"


@pytest.mark.parametrize(
    ("grant", "obj", "signature_problem", "allowed", "reason"),
    [
        (ANY_TYPE, MALWARE, None, True, "allowed"),
        (ANY_TYPE, INDICATOR, "no signature", True, "allowed"),  # no signature required
        (SOME_TYPES, INDICATOR, None, True, "allowed"),
        (SOME_TYPES, SIGHTING, None, True, "allowed"),
        (SOME_TYPES, MALWARE, None, False, TYPE_REFUSED.format("malware")),
        (SOME_TYPES, "not an object", None, False, TYPE_REFUSED.format(None)),
        (SOME_TYPES, {"id": "x"}, None, False, TYPE_REFUSED.format(None)),
        (SIGNED, INDICATOR, None, True, "allowed"),
        (SIGNED, INDICATOR, "the envelope signature does not verify", False, SIGNATURE_REFUSED),
        # A missing signature is named before a refused type: it is the envelope's problem.
        (SIGNED, MALWARE, "the envelope signature does not verify", False, SIGNATURE_REFUSED),
        (None, INDICATOR, None, False, "no write grant"),
    ],
)
def test_decide_write(
    grant: WriteGrant | None, obj: Any, signature_problem: str | None, allowed: bool, reason: str
) -> None:
    decision = decide_write(grant, obj, signature_problem)
    assert (decision.allowed, decision.reason) == (allowed, reason)
