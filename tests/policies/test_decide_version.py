"""Who may version an object: table-driven, no database."""

from __future__ import annotations

import pytest

from policies.engine import FirstVersion, Writer, decide_version

P_ID = "identity--0b6f5e5e-8a4c-4d0a-9a3f-2f9d4b1c7e01"
CERT_ID = "identity--5c2f3e1a-7b4d-4e9f-8a1b-3c6d9e2f1a07"
P = Writer("partner", "cert-p", identity=P_ID, added_by=frozenset({"cred-p1", "cred-p2"}))
P_NO_IDENTITY = Writer("partner", "cert-p", added_by=frozenset({"cred-p1"}))
FEED = Writer("feed", "feed:abuse", added_by=frozenset({"feed:abuse"}))
ANALYST = Writer("analyst", "cred-a")

CASES = [
    # writer, first stored version, allowed
    (P, None, True),  # never seen: anyone's to create
    (P, FirstVersion("partner", "cred-p2", None), True),  # its own, from another of its credentials
    (P, FirstVersion("analyst", "cred-a", P_ID), True),  # the CERT relayed it; P created it
    (P, FirstVersion("feed", "feed:abuse", P_ID), True),
    (P, FirstVersion("analyst", "cred-a", CERT_ID), False),  # the CERT's object
    (P, FirstVersion("analyst", "cred-a", None), False),
    (P, FirstVersion("partner", "cred-q1", None), False),  # another partner's
    (P, FirstVersion("partner", "cred-q1", CERT_ID), False),
    (P, FirstVersion("feed", "feed:abuse", None), False),  # a feed's
    (P, FirstVersion("partner", None, None), False),
    (P_NO_IDENTITY, FirstVersion("analyst", "cred-a", None), False),  # None identity matches nothing
    (P_NO_IDENTITY, FirstVersion("partner", "cred-p1", None), True),
    (FEED, None, True),
    (FEED, FirstVersion("feed", "feed:abuse", None), True),
    (FEED, FirstVersion("feed", "feed:other", None), True),  # two feeds mirroring one upstream
    (FEED, FirstVersion("analyst", "cred-a", CERT_ID), False),
    (FEED, FirstVersion("partner", "cred-p1", P_ID), False),
    (ANALYST, FirstVersion("partner", "cred-p1", P_ID), True),
    (Writer("peer", "x"), FirstVersion("feed", "feed:abuse", None), False),  # unknown kinds: fail closed
]


@pytest.mark.parametrize(("writer", "first", "allowed"), CASES)
def test_decide_version(writer: Writer, first: FirstVersion | None, allowed: bool) -> None:
    decision = decide_version(writer, first)
    assert decision.allowed is allowed, decision.reason
    if not allowed:
        for secret in ("cred-q1", "cred-a", CERT_ID, "feed:other"):
            assert secret not in decision.reason  # the refusal never names the owner
