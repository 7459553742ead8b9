"""Bilateral sharing agreements; every edit is a new, kept version."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import UtcDateTime, utcnow


class Agreement(Base):
    """One partner's agreement; its content lives in AgreementVersion rows."""

    __tablename__ = "agreement"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_pk: Mapped[int] = mapped_column(ForeignKey("partner.pk", ondelete="CASCADE"), unique=True)
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AgreementVersion(Base):
    __tablename__ = "agreement_version"
    __table_args__ = (UniqueConstraint("agreement_pk", "version"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_pk: Mapped[int] = mapped_column(ForeignKey("agreement.pk", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    # The agreement as validated JSON (policies.schemas.AgreementDoc.to_document()).
    document: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
