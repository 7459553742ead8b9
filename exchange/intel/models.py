"""Tables for API roots, collections, stored object versions (and deleted ones) and TAXII status
resources."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import BigIntPk, UtcDateTime, utcnow


class ApiRoot(Base):
    __tablename__ = "api_root"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    max_content_length: Mapped[int] = mapped_column(Integer)


class Collection(Base):
    __tablename__ = "collection"
    __table_args__ = (UniqueConstraint("api_root_pk", "alias"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    api_root_pk: Mapped[int] = mapped_column(ForeignKey("api_root.pk", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # TLP level that unmarked objects take; fail closed to amber.
    default_tlp: Mapped[str] = mapped_column(String(16), default="amber")
    # High-water mark of date_added (microseconds since the epoch), bumped under a row lock.
    last_date_added_us: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ObjectVersion(Base):
    """One stored version of one STIX object in one collection, kept as canonical text."""

    __tablename__ = "object_version"
    __table_args__ = (
        UniqueConstraint("collection_pk", "date_added_us", name="uq_object_version_date_added"),
        UniqueConstraint("collection_pk", "stix_id", "version", name="uq_object_version_id_version"),
        Index("ix_object_version_latest_page", "collection_pk", "is_latest", "date_added_us"),
        Index("ix_object_version_type_page", "collection_pk", "type", "date_added_us"),
        Index("ix_object_version_stix_id", "stix_id"),
        Index("ix_object_version_sighting_of", "sighting_of_ref"),
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    collection_pk: Mapped[int] = mapped_column(ForeignKey("collection.pk", ondelete="CASCADE"))
    stix_id: Mapped[str] = mapped_column(String(300))
    type: Mapped[str] = mapped_column(String(250))
    spec_version: Mapped[str] = mapped_column(String(8))
    # Sortable fixed-width UTC text of `modified`, else `created`, else date_added.
    version: Mapped[str] = mapped_column(String(32))
    # The version timestamp as the object itself writes it (what manifests report).
    version_text: Mapped[str] = mapped_column(String(40))
    date_added_us: Mapped[int] = mapped_column(BigInteger)
    tlp_rank: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    confidence: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True)
    is_first: Mapped[bool] = mapped_column(Boolean, default=True)
    origin: Mapped[str] = mapped_column(String(16))  # analyst | partner | peer | feed
    added_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Originator control (exchange.sharing.visibility): the partner (or peer) this version came
    # from, and the partner that first brought the object in, which keeps control of every later
    # version and copy of it (NULL: the CERT or a feed; SCOs have no originator, only a source).
    origin_partner_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    originator_partner_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A sighting's sighting_of_ref: the sighting flows back to that object's originator.
    sighting_of_ref: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Partners an analyst narrowed this object to, as ",slug,slug," (NULL = no restriction).
    audience: Mapped[str | None] = mapped_column(Text, nullable=True)
    body: Mapped[str] = mapped_column(Text)


class DeletedVersion(Base):
    """An object version deleted through TAXII DELETE, as it was: the disclosure ledger names
    versions by their pk (a ledger row is written for every object served, and an index on its
    STIX id would be written at random), so who received a deleted version is found through here.
    """

    __tablename__ = "deleted_version"
    __table_args__ = (Index("ix_deleted_version_stix_id", "stix_id"),)

    # The pk the version had in object_version.
    pk: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    collection_pk: Mapped[int] = mapped_column(Integer)
    stix_id: Mapped[str] = mapped_column(String(300))
    version_text: Mapped[str] = mapped_column(String(40))
    deleted_at_us: Mapped[int] = mapped_column(BigInteger)


class TaxiiStatus(Base):
    """A TAXII 2.1 status resource (section 4.3.1), kept for `status_ttl_days`."""

    __tablename__ = "taxii_status"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_root_pk: Mapped[int] = mapped_column(ForeignKey("api_root.pk", ondelete="CASCADE"))
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    request_timestamp: Mapped[str] = mapped_column(String(40))
    total_count: Mapped[int] = mapped_column(Integer)
    success_count: Mapped[int] = mapped_column(Integer)
    failure_count: Mapped[int] = mapped_column(Integer)
    pending_count: Mapped[int] = mapped_column(Integer)
    # JSON arrays of status-details, as served.
    successes: Mapped[str] = mapped_column(Text)
    failures: Mapped[str] = mapped_column(Text)
    pendings: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class ObjectRef(Base):
    """Ids an object version points to that a partner must be able to see too (closure)."""

    __tablename__ = "object_ref"
    __table_args__ = (Index("ix_object_ref_ref_id", "ref_id"),)

    object_version_pk: Mapped[int] = mapped_column(
        ForeignKey("object_version.pk", ondelete="CASCADE"), primary_key=True
    )
    ref_id: Mapped[str] = mapped_column(String(300), primary_key=True)


class StreamRelease(Base):
    """An object version entering partners' streams again, after what withheld it changed.

    A relationship stored before its target is withheld from partners at its own date_added;
    when the target arrives (or a later version of it becomes shareable) the relationship is
    released again here (`partner_pk` NULL: for every partner). An agreement change that
    reveals stored objects releases them for that one partner. Partners page through their
    collection's versions and these releases together, ordered by when each became visible.
    """

    __tablename__ = "stream_release"
    __table_args__ = (Index("ix_stream_release_page", "collection_pk", "partner_pk", "at_us"),)

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    collection_pk: Mapped[int] = mapped_column(ForeignKey("collection.pk", ondelete="CASCADE"))
    object_version_pk: Mapped[int] = mapped_column(ForeignKey("object_version.pk", ondelete="CASCADE"))
    partner_pk: Mapped[int | None] = mapped_column(
        ForeignKey("partner.pk", ondelete="CASCADE"), nullable=True
    )
    at_us: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(16))  # reference | agreement
