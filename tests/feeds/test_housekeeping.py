"""Housekeeping: ended agreements announced once, old status resources removed, a key due for
rotation flagged once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from exchange.agreement import service as agreement_service
from exchange.audit.models import AuditEvent
from exchange.database.core import session_scope
from exchange.database.types import utcnow
from exchange.intel import service as intel_service
from exchange.intel.models import TaxiiStatus
from exchange.partner import service as partner_service
from exchange.signing import KeyRing
from feeds import housekeeping
from tests.support.partners import agreement_doc


def _events(db, action: str, target: str) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == action, AuditEvent.target == target)
    )


def test_an_ended_agreement_is_announced_once(factory) -> None:
    slug = f"p-{uuid.uuid4().hex[:8]}"
    with session_scope(factory, write=True) as db:
        partner_service.create(db, slug=slug, name="Ended", country="FR", actor="test")
        agreement_service.apply(
            db,
            agreement_doc(
                slug, read={"collections": ["indicators"], "max_tlp": "green"}, days_before=400, days_after=-1
            ),
            actor="test",
        )
    today = date.today()
    with session_scope(factory, write=True) as db:
        assert slug in housekeeping.announce_ended_agreements(db, today=today)
    with session_scope(factory, write=True) as db:
        assert slug not in housekeeping.announce_ended_agreements(db, today=today)
        assert _events(db, "agreement.ended", slug) == 1
    with session_scope(factory, write=True) as db:  # still in force yesterday: nothing to say then
        assert slug not in housekeeping.announce_ended_agreements(db, today=today - timedelta(days=2))


def test_old_status_resources_are_removed_and_recent_ones_kept(factory, settings) -> None:
    old_id, new_id = str(uuid.uuid4()), str(uuid.uuid4())
    with session_scope(factory, write=True) as db:
        root = intel_service.get_api_root(db, settings.api_root)
        for sid, age in ((old_id, timedelta(days=8)), (new_id, timedelta(hours=1))):
            db.add(
                TaxiiStatus(
                    id=sid,
                    api_root_pk=root.pk,
                    owner=None,
                    status="complete",
                    request_timestamp="2026-01-01T00:00:00.000000Z",
                    total_count=0,
                    success_count=0,
                    failure_count=0,
                    pending_count=0,
                    successes="[]",
                    failures="[]",
                    pendings="[]",
                    created_at=utcnow() - age,
                )
            )
    with session_scope(factory, write=True) as db:
        assert housekeeping.purge_statuses(db, older_than=timedelta(days=7)) >= 1
    with session_scope(factory) as db:
        assert db.get(TaxiiStatus, old_id) is None
        assert db.get(TaxiiStatus, new_id) is not None


def test_a_key_due_for_rotation_is_flagged_once(factory, tmp_path) -> None:
    keyring = KeyRing(tmp_path / "keys")
    kid = keyring.ensure().kid
    later = datetime.now(UTC) + timedelta(days=400)
    with session_scope(factory, write=True) as db:
        assert housekeeping.flag_key_rotation(db, keyring, max_age_days=365) is None  # brand new
        assert housekeeping.flag_key_rotation(db, keyring, max_age_days=365, now=later) == kid
    with session_scope(factory, write=True) as db:
        assert housekeeping.flag_key_rotation(db, keyring, max_age_days=365, now=later) == kid
        assert _events(db, "signing-key.rotation-due", kid) == 1
