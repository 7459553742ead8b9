"""decide_write on objects whose `type` is not a string (found by the TAXII fuzzer as a 500)."""

from __future__ import annotations

import pytest

from policies.engine import WriteGrant, decide_write

TYPED = WriteGrant(partner="p", collection="c", types=frozenset({"indicator"}), require_signature=False)
ANY = WriteGrant(partner="p", collection="c", types=None, require_signature=False)


@pytest.mark.parametrize("kind", [["indicator"], {"indicator": 1}, 7, None, True])
def test_a_type_that_is_not_a_string_is_refused_not_raised(kind: object) -> None:
    decision = decide_write(TYPED, {"type": kind, "id": "x"}, None)
    assert not decision.allowed and "type None" in decision.reason
    # With every type allowed the write policy lets validation refuse it (with its own reason).
    assert decide_write(ANY, {"type": kind}, None).allowed


def test_a_string_type_is_still_decided_by_the_list() -> None:
    assert decide_write(TYPED, {"type": "indicator"}, None).allowed
    assert not decide_write(TYPED, {"type": "note"}, None).allowed
