"""The disclosure ledger: which partner (with which credential) received which object version,
when, through which channel, and who asked.

A delivery is one page, bundle or push sent to one recipient: who, how, when and from which
collection, said once. Its disclosures are the object versions it held, one narrow row each.
A partner's page writes one delivery row and a thousand disclosure rows before it is answered:
half the cost on PostgreSQL, a third on SQLite, of a thousand rows that each repeated every
detail and had an id column of their own (benchmarks/ledger_layout.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import BigIntPk


class Delivery(Base):
    """One delivery of object versions to one recipient."""

    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_partner", "partner_pk", "at_us"),)

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    collection_pk: Mapped[int] = mapped_column(Integer)
    # No foreign key: a trigger (migrations 0013_ledger, 0015_delivery) refuses instead to delete
    # a partner the ledger names.
    partner_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The credential the partner pulled with; NULL for exports and pushes, which use none.
    credential_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Who caused the delivery: the pulling credential, the exporting analyst, "scheduler", ...
    requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    at_us: Mapped[int] = mapped_column(BigInteger)
    # How many disclosure rows it has (a version sent twice in one delivery counts twice).
    objects: Mapped[int] = mapped_column(Integer)


class Disclosure(Base):
    """One object version in one delivery.

    `object_version_pk` is the version's pk in object_version or, once deleted, in
    deleted_version (which keeps every deleted version's id and version): the ledger names the
    version, the store says what it was. There is no foreign key (PostgreSQL would check it row
    by row) and no id column (nothing refers to a single row; the database keeps its own row
    identity). Indexed by version ("who has it?", asked per release) and by delivery.
    """

    __tablename__ = "disclosure"
    __table_args__ = (
        Index("ix_disclosure_version", "object_version_pk"),
        Index("ix_disclosure_delivery", "delivery_pk"),
    )
    # The ORM needs an identity to map the table; rows are only ever read as columns, never as
    # entities, so this pair is not a constraint in the database (a version sent twice in one
    # delivery is two rows).
    delivery_pk: Mapped[int] = mapped_column(BigInteger)
    object_version_pk: Mapped[int] = mapped_column(BigInteger)

    __mapper_args__ = {"primary_key": [delivery_pk, object_version_pk]}  # noqa: RUF012
