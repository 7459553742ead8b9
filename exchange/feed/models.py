"""Tables for feeds: the feeds and their runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base
from exchange.database.types import BigIntPk, UtcDateTime, utcnow


class Feed(Base):
    """An external source pulled into one collection on a schedule."""

    __tablename__ = "feed"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    collection_pk: Mapped[int] = mapped_column(ForeignKey("collection.pk", ondelete="RESTRICT"))
    every_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cron: Mapped[str | None] = mapped_column(String(120), nullable=True)
    default_tlp: Mapped[str] = mapped_column(String(16), default="amber")
    default_confidence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    warninglists: Mapped[bool] = mapped_column(Boolean, default=False)
    # TLS is always verified; this PEM text is the CA bundle to trust (None: the system's CAs).
    ca_bundle: Mapped[str | None] = mapped_column(Text, nullable=True)
    timeout_seconds: Mapped[float] = mapped_column(default=30.0)
    # Kind-specific settings as JSON (CSV column mapping, TAXII page size, ...); no secrets.
    options: Mapped[str] = mapped_column(Text, default="{}")
    # Credentials as JSON ({"username","password"} or {"headers": {...}}); never logged or shown.
    auth: Mapped[str | None] = mapped_column(Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # new | ok | failing | unhealthy
    health: Mapped[str] = mapped_column(String(16), default="new")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # Where the next run starts (TAXII added_after, ETag, MISP event timestamps) as JSON.
    cursor: Mapped[str] = mapped_column(Text, default="{}")
    # A run in progress holds the feed until this time (renewed while it works).
    running_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    running_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FeedRun(Base):
    """One run of one feed, with what it fetched and what became of it."""

    __tablename__ = "feed_run"
    __table_args__ = (Index("ix_feed_run_feed", "feed_pk", "pk"),)

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    feed_pk: Mapped[int] = mapped_column(ForeignKey("feed.pk", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | retry | manual
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # running | ok | partial | failed | abandoned
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    dropped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Up to a few object-level failures, as JSON [{"id","message"}], to say what was refused.
    failures: Mapped[str] = mapped_column(Text, default="[]")
