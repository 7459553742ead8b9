"""The disclosure ledger: which partner (with which credential) received which object version,
when, through which channel, and who asked."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import BigIntPk


class Disclosure(Base):
    """One object version served to one partner. Rows are found by version (object_version_pk,
    the version's pk in object_version or, once deleted, in deleted_version) and by partner;
    there is no index on the STIX id: a pull writes a row per object, and such an index, keyed
    at random, made a page's ledger 20 times dearer once it held 200,000 rows."""

    __tablename__ = "disclosure"
    __table_args__ = (
        Index("ix_disclosure_partner", "partner_pk", "at_us"),
        # "Has this partner (or credential) received this version already?", asked per release.
        Index("ix_disclosure_version_recipient", "object_version_pk", "partner_pk", "credential_id"),
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    object_version_pk: Mapped[int] = mapped_column(BigInteger)
    stix_id: Mapped[str] = mapped_column(String(300))
    version: Mapped[str] = mapped_column(String(40))
    collection_pk: Mapped[int] = mapped_column(Integer)
    # No foreign key: PostgreSQL would check it row by row, a third of a page's ledger write. A
    # trigger (migration 0013_ledger) refuses instead to delete a partner the ledger names.
    partner_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The credential the partner pulled with; NULL for exports and pushes, which use none.
    credential_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Who caused the delivery: the pulling credential, the exporting analyst, "scheduler", ...
    requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    at_us: Mapped[int] = mapped_column(BigInteger)
