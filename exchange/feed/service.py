"""Feeds: create, change, list; claim a feed for a run and record how the run went."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from sqlalchemy import String, column, or_, select, table, text, update
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.database.core import rowcount
from exchange.database.types import UtcDateTime, utcnow
from exchange.errors import BadRequestError, ConflictError, NotFoundError, ServiceUnavailableError
from exchange.feed.models import Feed, FeedRun
from exchange.feed.schemas import FeedAuth, FeedCreate, FeedRead, FeedRunRead, FeedUpdate
from exchange.intel.models import Collection
from policies.duration import format_duration, parse_duration
from policies.tlp import normalise

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{1,62}[a-z0-9]", re.ASCII)
MIN_EVERY = timedelta(minutes=1)
DEFAULT_EVERY = timedelta(hours=1)
MAX_FAILURES_KEPT = 20


# The scheduler's lease is the scheduler's table (feeds/lease.py, which the exchange may not
# import); the exchange only reads who holds it.
_LEASE = table(
    "scheduler_lease", column("name", String), column("holder", String), column("expires_at", UtcDateTime)
)


class FeedBusyError(ConflictError):
    title = "Feed is running"


def safe_url(url: str) -> str:
    """The URL as shown and logged anywhere: user info and fragment dropped, every query value
    masked (names say nothing: pwd=, pw=, p=, sig=... all carry keys); only fetching uses the real one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    port: int | str | None
    try:
        port = parts.port
    except ValueError:  # out of range or not a number: shown as given
        port = parts.netloc.rpartition(":")[2]
    if port:
        host = f"{host}:{port}"
    query = "&".join(
        f"{k}=***" if sep else "***"  # a bare item may be the key itself (?SECRET)
        for k, sep, _ in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return f"{parts.scheme}://{host}{parts.path}" + (f"?{query}" if query else "")


def _check_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise BadRequestError(f"{safe_url(url)} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError(
            f"a feed URL must be an absolute http:// or https:// URL, not {safe_url(url)!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise BadRequestError(
            "a feed URL must not carry credentials; give them as auth (--username / --password-env)"
        )
    if any(ch.isspace() for ch in url):
        raise BadRequestError("a feed URL must not contain spaces")
    return url


def _check_tlp(level: str) -> str:
    try:
        return normalise(level)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def _check_schedule(every: str | None, cron: str | None) -> tuple[int | None, str | None]:
    if every and cron:
        raise BadRequestError("give either an interval (every) or a cron expression, not both")
    if cron:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron, timezone=UTC)
        except ValueError as exc:
            raise BadRequestError(f"bad cron expression {cron!r}: {exc}") from None
        return None, cron.strip()
    try:
        interval = parse_duration(every) if every else DEFAULT_EVERY
    except ValueError as exc:  # which includes one longer than the maximum, 365d
        raise BadRequestError(f"every: bad interval {every!r}: {exc}") from None
    if interval < MIN_EVERY:
        raise BadRequestError(
            f"every: interval {format_duration(interval)} is shorter than the minimum of 1m"
        )
    return int(interval.total_seconds()), None


def _check_ca(pem: str | None) -> str | None:
    if pem is None or not pem.strip():
        return None
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise BadRequestError(f"the CA bundle is not PEM certificates: {exc}") from None
    if not certs:
        raise BadRequestError("the CA bundle holds no certificate")
    return pem


def _collection(db: Session, alias: str) -> Collection:
    found = db.scalars(
        select(Collection).where(or_(Collection.alias == alias, Collection.id == alias))
    ).first()
    if found is None:
        raise BadRequestError(f"unknown collection {alias!r}")
    return found


def _auth_json(auth: FeedAuth | None) -> str | None:
    if auth is None:
        return None
    data = auth.model_dump(exclude_none=True)
    if not data:
        return None
    if ("username" in data) != ("password" in data):
        raise BadRequestError("auth needs both a username and a password")
    return json.dumps(data)


OptionsCheck = Callable[[str, dict[str, Any]], dict[str, Any]]


def _checked_options(kind: str, given: dict[str, Any], check: OptionsCheck | None) -> dict[str, Any]:
    if check is None:  # never stored unchecked
        raise ServiceUnavailableError(
            f"the options of a {kind} feed cannot be checked here (no feed launcher); nothing was changed"
        )
    try:
        return check(kind, given)
    except ValueError as exc:
        raise BadRequestError(f"bad options for a {kind} feed: {exc}") from None


def create(db: Session, feed_in: FeedCreate, *, actor: str, check_options: OptionsCheck | None) -> Feed:
    """Add a feed (disabled feeds are kept but not scheduled); `check_options` vets kind-specific options."""
    if not NAME.fullmatch(feed_in.name):
        raise BadRequestError(f"{feed_in.name!r} is not a feed name (3-64 characters: a-z, 0-9, '-' and '_')")
    if db.scalars(select(Feed.pk).where(Feed.name == feed_in.name)).first() is not None:
        raise ConflictError(f"a feed named {feed_in.name!r} already exists")
    every, cron = _check_schedule(feed_in.every, feed_in.cron)
    feed = Feed(
        name=feed_in.name,
        kind=feed_in.kind,
        url=_check_url(feed_in.url),
        collection_pk=_collection(db, feed_in.collection).pk,
        every_seconds=every,
        cron=cron,
        default_tlp=_check_tlp(feed_in.tlp),
        default_confidence=feed_in.confidence,
        warninglists=feed_in.warninglists,
        ca_bundle=_check_ca(feed_in.ca_bundle),
        timeout_seconds=feed_in.timeout,
        options=json.dumps(_checked_options(feed_in.kind, feed_in.options, check_options)),
        auth=_auth_json(feed_in.auth),
        enabled=feed_in.enabled,
        created_by=actor,
    )
    db.add(feed)
    db.flush()
    audit.record(db, actor=actor, action="feed.create", target=feed.name, details=_audit_view(feed))
    return feed


def update_(
    db: Session, name: str, feed_in: FeedUpdate, *, actor: str, check_options: OptionsCheck | None
) -> Feed:
    """Change a feed; a changed URL or kind starts over (its cursor is dropped)."""
    feed = get_by_name(db, name)
    given = feed_in.model_fields_set
    # The masked URL that reads show, sent back unchanged, must not overwrite the real key.
    if "url" in given and feed_in.url is not None and feed_in.url not in (feed.url, safe_url(feed.url)):
        feed.url = _check_url(feed_in.url)
        feed.cursor = "{}"
    if "collection" in given and feed_in.collection is not None:
        feed.collection_pk = _collection(db, feed_in.collection).pk
    if ("every" in given or "cron" in given) and (feed_in.every or feed_in.cron):
        feed.every_seconds, feed.cron = _check_schedule(feed_in.every, feed_in.cron)
    if "tlp" in given and feed_in.tlp is not None:
        feed.default_tlp = _check_tlp(feed_in.tlp)
    if "confidence" in given:
        feed.default_confidence = feed_in.confidence
    if "warninglists" in given and feed_in.warninglists is not None:
        feed.warninglists = feed_in.warninglists
    if "ca_bundle" in given:
        feed.ca_bundle = _check_ca(feed_in.ca_bundle)
    if "timeout" in given and feed_in.timeout is not None:
        feed.timeout_seconds = feed_in.timeout
    if "options" in given and feed_in.options is not None:
        peer = options(feed).get("peer")
        if peer is not None and feed_in.options.get("peer") != peer:
            # Dropping the option would turn signature verification off for the peer's pages.
            raise BadRequestError(
                f"feed {feed.name!r} pulls from peer {peer!r} and verifies every page; it keeps "
                f"the option peer={peer} (to stop, run `exchange peer remove {peer}`)"
            )
        feed.options = json.dumps(_checked_options(feed.kind, feed_in.options, check_options))
    if "auth" in given:
        feed.auth = _auth_json(feed_in.auth)
    if "enabled" in given and feed_in.enabled is not None:
        feed.enabled = feed_in.enabled
        if feed.enabled:
            feed.consecutive_failures = 0
            feed.health = "new" if feed.health == "unhealthy" else feed.health
    feed.updated_at = utcnow()
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="feed.update",
        target=feed.name,
        details={"changed": sorted(given), **_audit_view(feed)},
    )
    return feed


def set_enabled(db: Session, name: str, enabled: bool, *, actor: str) -> Feed:
    """Enable or disable a feed (a disabled feed keeps its cursor and history)."""
    return update_(db, name, FeedUpdate(enabled=enabled), actor=actor, check_options=None)


def delete(db: Session, name: str, *, actor: str) -> None:
    """Remove a feed and its run history; what it ingested stays."""
    feed = get_by_name(db, name)
    db.delete(feed)
    db.flush()
    audit.record(db, actor=actor, action="feed.delete", target=name)


def get_by_name(db: Session, name: str) -> Feed:
    """The feed called `name`, or NotFoundError."""
    feed = db.scalars(select(Feed).where(Feed.name == name)).first()
    if feed is None:
        raise NotFoundError(f"no feed named {name!r}")
    return feed


def list_(db: Session) -> list[Feed]:
    """All feeds, by name."""
    return list(db.scalars(select(Feed).order_by(Feed.name)))


def runs(db: Session, feed: Feed, *, limit: int = 20) -> list[FeedRun]:
    """The feed's most recent runs, newest first."""
    return list(
        db.scalars(select(FeedRun).where(FeedRun.feed_pk == feed.pk).order_by(FeedRun.pk.desc()).limit(limit))
    )


def options(feed: Feed) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(feed.options or "{}")
    return found


def auth(feed: Feed) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(feed.auth) if feed.auth else {}
    return found


def cursor(feed: Feed) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(feed.cursor or "{}")
    return found


def set_cursor(db: Session, feed_pk: int, value: dict[str, Any]) -> None:
    """Remember where the next run starts (in the transaction that stored what came before it)."""
    db.execute(update(Feed).where(Feed.pk == feed_pk).values(cursor=json.dumps(value, sort_keys=True)))


def claim(db: Session, name: str, *, holder: str, lease: timedelta) -> Feed:
    """Hold the feed for one run; FeedBusyError while another run holds an unexpired claim."""
    now = utcnow()
    done = db.execute(
        update(Feed)
        .where(Feed.name == name, or_(Feed.running_until.is_(None), Feed.running_until < now))
        .values(running_until=now + lease, running_by=holder[:120])
    )
    if rowcount(done) != 1:
        feed = get_by_name(db, name)
        raise FeedBusyError(f"feed {name!r} is already running (held by {feed.running_by})")
    return get_by_name(db, name)


def renew(db: Session, feed_pk: int, *, holder: str, lease: timedelta) -> None:
    db.execute(
        update(Feed)
        .where(Feed.pk == feed_pk, Feed.running_by == holder[:120])
        .values(running_until=utcnow() + lease)
    )


def release(db: Session, feed_pk: int, *, holder: str) -> None:
    db.execute(
        update(Feed)
        .where(Feed.pk == feed_pk, Feed.running_by == holder[:120])
        .values(running_until=None, running_by=None)
    )


def start_run(db: Session, feed: Feed, *, trigger: str, attempt: int = 1) -> FeedRun:
    """A run record in state `running`."""
    run = FeedRun(feed_pk=feed.pk, trigger=trigger, attempt=attempt, status="running", started_at=utcnow())
    db.add(run)
    db.flush()
    return run


def add_counts(
    db: Session, run_pk: int, counts: dict[str, int], failures: list[dict[str, str]] | None = None
) -> None:
    """Add a batch's counts to the run record."""
    run = db.get(FeedRun, run_pk)
    assert run is not None
    for name, value in counts.items():
        setattr(run, name, getattr(run, name) + value)
    if failures:
        kept = json.loads(run.failures)
        room = MAX_FAILURES_KEPT - len(kept)
        if room > 0:
            run.failures = json.dumps(kept + failures[:room])


def finish_run(
    db: Session, run_pk: int, *, error: str | None, unhealthy_after: int, notes: list[str] | None = None
) -> FeedRun:
    """Close the run and update the feed's health: ok, failing, or unhealthy after repeated failures.

    `notes` (such as credentials withheld from a redirect) join the run's kept failures list,
    where `feed runs` and the REST API show them.
    """
    run = db.get(FeedRun, run_pk)
    assert run is not None
    if notes:
        run.failures = json.dumps([{"id": "", "message": note} for note in notes] + json.loads(run.failures))
    feed = db.get(Feed, run.feed_pk)
    assert feed is not None
    run.finished_at = utcnow()
    run.error = error[:4000] if error else None
    if error:
        run.status = "failed"
        feed.consecutive_failures += 1
        feed.health = "unhealthy" if feed.consecutive_failures >= unhealthy_after else "failing"
    else:
        run.status = "partial" if run.failed else "ok"
        feed.consecutive_failures = 0
        feed.health = "ok"
    db.flush()
    return run


def abandon_stale_runs(db: Session, *, older_than: timedelta) -> int:
    """Mark runs left `running` by a process that died as abandoned."""
    cutoff = utcnow() - older_than
    done = db.execute(
        update(FeedRun)
        .where(FeedRun.status == "running", FeedRun.started_at < cutoff)
        .values(status="abandoned", finished_at=utcnow(), error="the process running it stopped")
    )
    return rowcount(done) or 0


def next_run_at(db: Session, job_id: str) -> datetime | None:
    """When the scheduler will next run `job_id` (from its job store), if scheduled."""
    try:
        value = db.execute(
            text("SELECT next_run_time FROM apscheduler_jobs WHERE id = :id"), {"id": job_id}
        ).scalar()
    except Exception:  # the job store table may not exist on an old schema
        return None
    return None if value is None else datetime.fromtimestamp(float(value), tz=UTC)


def scheduler_state(db: Session) -> dict[str, Any]:
    """Who leads the scheduler (and until when), and every stored job with its next run."""
    lease = db.execute(
        select(_LEASE.c.holder, _LEASE.c.expires_at).where(_LEASE.c.name == "scheduler")
    ).first()
    leading = lease is not None and lease.expires_at > utcnow()
    try:
        jobs = [
            {
                "id": job_id,
                "next_run_at": None if at is None else datetime.fromtimestamp(float(at), tz=UTC),
            }
            for job_id, at in db.execute(text("SELECT id, next_run_time FROM apscheduler_jobs ORDER BY id"))
        ]
    except Exception:  # no job store table on an old schema
        jobs = []
    return {
        "leader": lease.holder if lease is not None and leading else None,
        "lease_expires_at": lease.expires_at if lease is not None and leading else None,
        "jobs": jobs,
    }


def run_read(run: FeedRun) -> FeedRunRead:
    return FeedRunRead(
        id=run.pk,
        trigger=run.trigger,
        attempt=run.attempt,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        fetched=run.fetched,
        new=run.new,
        updated=run.updated,
        unchanged=run.unchanged,
        dropped=run.dropped,
        failed=run.failed,
        error=run.error,
        failures=json.loads(run.failures or "[]"),
    )


def read(db: Session, feed: Feed) -> FeedRead:
    """The admin's view of a feed: settings without secrets, health, last run, next run."""
    last = runs(db, feed, limit=1)
    coll = db.get(Collection, feed.collection_pk)
    return FeedRead(
        name=feed.name,
        kind=feed.kind,
        url=safe_url(feed.url),
        collection=coll.alias if coll else "?",
        every=format_duration(timedelta(seconds=feed.every_seconds)) if feed.every_seconds else None,
        cron=feed.cron,
        tlp=feed.default_tlp,
        confidence=feed.default_confidence,
        warninglists=feed.warninglists,
        ca_bundle=feed.ca_bundle is not None,
        timeout=feed.timeout_seconds,
        options=options(feed),
        has_auth=feed.auth is not None,
        enabled=feed.enabled,
        health=feed.health,
        consecutive_failures=feed.consecutive_failures,
        running=feed.running_until is not None and feed.running_until > utcnow(),
        next_run_at=next_run_at(db, f"feed:{feed.name}") if feed.enabled else None,
        last_run=run_read(last[0]) if last else None,
        created_by=feed.created_by,
        created_at=feed.created_at,
    )


def _audit_view(feed: Feed) -> dict[str, Any]:
    return {
        "kind": feed.kind,
        "url": safe_url(feed.url),
        "collection_pk": feed.collection_pk,
        "every_seconds": feed.every_seconds,
        "cron": feed.cron,
        "tlp": feed.default_tlp,
        "confidence": feed.default_confidence,
        "warninglists": feed.warninglists,
        "enabled": feed.enabled,
        "has_auth": feed.auth is not None,
    }
