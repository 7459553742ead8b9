"""The peer table: how we reach a partner's own exchange and whose signatures we accept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import UtcDateTime, utcnow


class Peer(Base):
    """A partner that serves TAXII 2.1 and signs its pages; its feeds carry `{"peer": slug}`."""

    __tablename__ = "peer"

    pk: Mapped[int] = mapped_column(primary_key=True)
    partner_pk: Mapped[int] = mapped_column(ForeignKey("partner.pk", ondelete="CASCADE"), unique=True)
    # The `aud` the peer signs for us with: our partner slug in the peer's own exchange.
    our_name: Mapped[str] = mapped_column(String(64))
    # The `iss` its signatures must carry: the peer exchange's STIX identity.
    issuer: Mapped[str] = mapped_column(String(300))
    # Where its JWK Set is published (https); None when it was given once as a file.
    jwks_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    ca_bundle: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The key set last fetched (or given), vetted; public keys only.
    jwks: Mapped[str] = mapped_column(Text, default='{"keys": []}')
    jwks_fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The last fetch attempt, successful or not: refetches are rate-limited against it.
    jwks_tried_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
