"""Credentials: API keys stored only as slow hashes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import UtcDateTime, utcnow


class Credential(Base):
    __tablename__ = "credential"

    # The user name for HTTP Basic; not secret.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    # Set for partner credentials; internal users have none.
    partner_pk: Mapped[int | None] = mapped_column(
        ForeignKey("partner.pk", ondelete="CASCADE"), nullable=True, index=True
    )
    key_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # SHA-256 of the client certificate this credential is bound to (exchange.auth.certs): the
    # certificate alone signs in as it, and its key is refused without the certificate.
    cert_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
