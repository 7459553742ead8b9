"""The append-only, hash-chained audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import BigIntPk, UtcDateTime, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # JWS by the exchange's signing key over (seq, hash); NULL only for events from before 0005.
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditHead(Base):
    """The chain's last link, so that deleting the newest events is detectable too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    # JWS over (seq, hash) of a different kind than the events': a head cannot be forged by
    # copying an older event's signature, only by replaying a head someone kept (see verify).
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
