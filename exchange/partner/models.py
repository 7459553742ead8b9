"""Partner organisations (other countries' CERTs, sector CSIRTs)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import UtcDateTime, utcnow


class Partner(Base):
    __tablename__ = "partner"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    contact: Mapped[str] = mapped_column(String(320), default="")
    # The STIX identity that represents the partner (created_by_ref of its submissions).
    identity_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # JSON list of public JWKs the partner signs submissions with.
    public_keys: Mapped[str] = mapped_column(Text, default="[]")
    # Credentials for the partner's own TAXII server (push delivery) as JSON; never shown.
    push_auth: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def has_push_auth(self) -> bool:
        return self.push_auth is not None
