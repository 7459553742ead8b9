"""Housekeeping the scheduler runs: announce agreements that ended, drop old TAXII status
resources, flag a signing key that is due for rotation."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from exchange.agreement.models import Agreement, AgreementVersion
from exchange.audit import service as audit
from exchange.database.core import Base, rowcount
from exchange.database.types import UtcDateTime, utcnow
from exchange.intel.models import TaxiiStatus
from exchange.partner.models import Partner
from exchange.signing import KeyRing

log = logging.getLogger(__name__)
ACTOR = "scheduler"


# Housekeeping's own table, declared beside it like the scheduler lease (feeds/lease.py).
class JobMark(Base):
    """Things housekeeping has already announced (an agreement's end, a key due), once each."""

    __tablename__ = "job_mark"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def _mark_once(db: Session, key: str) -> bool:
    """True the first time `key` is seen (and remembers it), False after."""
    if db.get(JobMark, key) is not None:
        return False
    db.add(JobMark(key=key, at=utcnow()))
    db.flush()
    return True


def announce_ended_agreements(db: Session, *, today: date) -> list[str]:
    """Audit once that each active agreement past its valid_until has ended (it already grants nothing)."""
    rows = db.execute(
        select(Partner.slug, AgreementVersion.version, AgreementVersion.valid_until)
        .join(Agreement, Agreement.partner_pk == Partner.pk)
        .join(
            AgreementVersion,
            (AgreementVersion.agreement_pk == Agreement.pk)
            & (AgreementVersion.version == Agreement.current_version),
        )
        .where(AgreementVersion.status == "active", AgreementVersion.valid_until < today)
        .order_by(Partner.slug)
    )
    ended = []
    for slug, version, valid_until in rows:
        if _mark_once(db, f"agreement-ended:{slug}:{version}"):
            audit.record(
                db,
                actor=ACTOR,
                action="agreement.ended",
                target=slug,
                details={"version": version, "valid_until": valid_until.isoformat()},
            )
            log.warning(
                "agreement with %s (version %d) ended on %s: it grants nothing now",
                slug,
                version,
                valid_until,
            )
            ended.append(slug)
    return ended


def purge_statuses(db: Session, *, older_than: timedelta) -> int:
    """Delete TAXII status resources created more than `older_than` ago."""
    cutoff = utcnow() - older_than
    done = db.execute(delete(TaxiiStatus).where(TaxiiStatus.created_at < cutoff))
    count = rowcount(done) or 0
    if count:
        log.info("removed %d TAXII status resources older than %s", count, older_than)
    return count


def flag_key_rotation(
    db: Session, keyring: KeyRing, *, max_age_days: int, now: datetime | None = None
) -> str | None:
    """The current signing key's kid when it is older than `max_age_days` (audited once per key)."""
    now = now or datetime.now(UTC)
    current = next((k for k in keyring.keys() if k.state == "current"), None)
    if current is None:
        return None
    since = datetime.fromisoformat((current.activated or current.created).replace("Z", "+00:00"))
    if now - since < timedelta(days=max_age_days):
        return None
    if _mark_once(db, f"signing-key-rotation-due:{current.kid}"):
        audit.record(
            db,
            actor=ACTOR,
            action="signing-key.rotation-due",
            target=current.kid,
            details={"in_use_since": since.isoformat(), "max_age_days": max_age_days},
        )
    log.warning(
        "signing key %s has been in use since %s, longer than %d days: run `exchange signing-key rotate`",
        current.kid,
        since.date(),
        max_age_days,
    )
    return current.kid
