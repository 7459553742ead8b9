"""The scheduler's lease: one row that the leading scheduler process holds and renews.

The table is the scheduler's own, so it is declared here, beside the scheduler; the exchange
never imports `feeds`, and reads who leads through a table clause of its own
(`exchange.feed.service.scheduler_state`). The Alembic migrations create it like every table.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, or_, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from exchange.database.core import Base, rowcount
from exchange.database.types import UtcDateTime, utcnow


class SchedulerLease(Base):
    """The single scheduler leader: whoever holds an unexpired lease schedules."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def hold_lease(db: Session, name: str, *, holder: str, ttl: timedelta) -> bool:
    """Take or renew lease `name` for `holder`: True while it is ours, False while another holds it."""
    now = utcnow()
    done = db.execute(
        update(SchedulerLease)
        .where(
            SchedulerLease.name == name, or_(SchedulerLease.holder == holder, SchedulerLease.expires_at < now)
        )
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if rowcount(done) == 1:
        return True
    if db.get(SchedulerLease, name) is not None:
        return False
    try:
        with db.begin_nested():
            db.add(SchedulerLease(name=name, holder=holder, expires_at=now + ttl, acquired_at=now))
    except IntegrityError:  # another process inserted it first: it leads
        return False
    return True


def drop_lease(db: Session, name: str, *, holder: str) -> None:
    """Give the lease up (if ours) so another process may take it at once."""
    db.execute(sql_delete(SchedulerLease).where(SchedulerLease.name == name, SchedulerLease.holder == holder))
