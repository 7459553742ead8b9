"""Push delivery's own table: how far delivery to each partner has got, per collection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import UtcDateTime


class PushState(Base):
    """How far push delivery to one partner has got in one collection."""

    __tablename__ = "push_state"
    __table_args__ = (UniqueConstraint("partner_pk", "collection_pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_pk: Mapped[int] = mapped_column(ForeignKey("partner.pk", ondelete="CASCADE"))
    collection_pk: Mapped[int] = mapped_column(ForeignKey("collection.pk", ondelete="CASCADE"))
    # date_added (us) of the last object version the partner's server accepted.
    delivered_us: Mapped[int] = mapped_column(BigInteger, default=0)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_total: Mapped[int] = mapped_column(BigInteger, default=0)
