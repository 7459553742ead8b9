"""Database errors as they reach a log or a traceback: never with their bound parameters, which
may be a credential's key hash."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError

from exchange.auth.models import Credential

SECRET_HASH = "scrypt$16384$8$1$c2VjcmV0LXNhbHQ=$c2VjcmV0LWhhc2gtdGhhdC1tdXN0LW5vdC1sZWFr"


def test_a_value_the_column_cannot_store_is_not_quoted_with_the_key_hash(db) -> None:  # type: ignore[no-untyped-def]
    # 9999-12-31T23:59:59-05:00 is past year 9999 in UTC: binding it fails, and the error once
    # printed every parameter of the INSERT, the scrypt hash among them.
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
    db.add(Credential(id="cred-overflow", name="x", role="analyst", key_hash=SECRET_HASH, expires_at=late))
    with pytest.raises(StatementError) as caught:
        db.flush()
    assert SECRET_HASH not in str(caught.value)
    assert "c2VjcmV0" not in str(caught.value)
    assert "out of range" in str(caught.value)
