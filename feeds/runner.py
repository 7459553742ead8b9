"""One feed run: claim the feed, read its source slice by slice, normalise, drop what
warninglists know to be benign, store through the same validation as TAXII POST, record."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from exchange import metrics
from exchange.audit import service as audit
from exchange.config import Settings
from exchange.database.core import plan_for_current_size, session_scope
from exchange.feed import service as feed_service
from exchange.incident.observables import ObservableError
from exchange.intel.ids import id_key
from exchange.intel.ingest import PreparedBatch, ingest, prepare
from exchange.intel.models import Collection, ObjectVersion
from feeds import normalize, warninglist
from feeds.base import Batch, FeedError, FeedSpec, FetchContext
from feeds.http import HttpClient, HttpError
from feeds.sources import module_for
from policies.engine import Writer

if TYPE_CHECKING:
    from exchange.peer.trust import KeyCache, PeerTrust

log = logging.getLogger(__name__)
COUNTS = ("fetched", "new", "updated", "unchanged", "dropped", "failed")


@dataclass
class RunSummary:
    feed: str
    run_id: int
    status: str = "running"
    error: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    seconds: float = 0.0

    def line(self) -> str:
        figures = ", ".join(f"{name} {self.counts[name]:,}" for name in COUNTS)
        tail = f": {self.error}" if self.error else ""
        return f"feed {self.feed}: {self.status} in {self.seconds:.1f} s ({figures}){tail}"


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Prepared:
    """A claimed feed with its run record, ready to read."""

    job: _Job
    spec: FeedSpec
    ctx: FetchContext
    http: HttpClient
    holder: str
    lease: timedelta
    summary: RunSummary
    trigger: str


# The claim's lease: how long a run may go unheard-of before another may claim the feed. The
# run's own thread renews it every third of that (_keep_claim) for as long as the run lives.
MIN_LEASE_SECONDS = 60.0


def begin_run(
    factory: sessionmaker[Session],
    settings: Settings,
    name: str,
    *,
    trigger: str = "manual",
    attempt: int = 1,
    holder: str | None = None,
    actor: str | None = None,
) -> Prepared:
    """Claim feed `name` and open its run record; FeedBusyError if a run holds it, NotFoundError if none.

    A run someone started (`actor`: a credential id, or "cli") is an audit event; scheduled runs
    are recorded as runs only.
    """
    holder = holder or holder_name()
    lease = timedelta(seconds=max(MIN_LEASE_SECONDS, settings.feed_max_run_seconds / 10))
    with session_scope(factory, write=True) as db:
        feed = feed_service.claim(db, name, holder=holder, lease=lease)
        run = feed_service.start_run(db, feed, trigger=trigger, attempt=attempt)
        if actor is not None:
            audit.record(db, actor=actor, action="feed.run", target=feed.name, details={"run": run.pk})
        spec = FeedSpec(
            name=feed.name,
            kind=feed.kind,
            url=feed.url,
            options=feed_service.options(feed),
            timeout=feed.timeout_seconds,
            batch_size=settings.feed_batch_size,
        )
        job = _Job(
            feed_pk=feed.pk,
            collection_pk=feed.collection_pk,
            tlp=feed.default_tlp,
            confidence=feed.default_confidence,
            warninglists=feed.warninglists,
            name=feed.name,
            exchange_identity=settings.identity_id,
            id_key=id_key(settings.resolved_secret()),
        )
        http = HttpClient(
            timeout=feed.timeout_seconds,
            ca_bundle=feed.ca_bundle,
            auth=feed_service.auth(feed),
            url=feed.url,
            max_bytes=settings.feed_max_bytes,
            deadline=time.monotonic() + settings.feed_max_run_seconds,
        )
        ctx = FetchContext(spec=spec, http=http, cursor=feed_service.cursor(feed), log=log.info)
    return Prepared(
        job=job,
        spec=spec,
        ctx=ctx,
        http=http,
        holder=holder,
        lease=lease,
        summary=RunSummary(feed=name, run_id=run.pk),
        trigger=trigger,
    )


def continue_run(
    factory: sessionmaker[Session],
    settings: Settings,
    prepared: Prepared,
    *,
    progress: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Read the claimed feed to the end (or the first fatal error), store, record, release."""
    job, summary, holder, lease = prepared.job, prepared.summary, prepared.holder, prepared.lease
    name = job.name
    started = time.monotonic()
    error: str | None = None
    log.info("feed %s: run %d started (%s)", name, summary.run_id, prepared.trigger)
    # A run slower than its lease between batches (a feed that trickles) must keep its claim, or
    # a second run of the feed would start beside it; if this process dies, the renewals stop.
    stop = threading.Event()
    keeper = threading.Thread(
        target=_keep_claim,
        args=(factory, job.feed_pk, holder, lease, stop),
        daemon=True,
        name=f"feed-claim-{name}",
    )
    keeper.start()
    try:
        if prepared.spec.options.get("peer") is not None:
            with session_scope(factory) as db:
                prepared.ctx.trust, job.writer, job.peer_pk = _peer_trust(
                    db, factory, settings, prepared.spec.options["peer"]
                )
        for batch in module_for(prepared.spec.kind).batches(prepared.ctx):
            checked = _check(job, batch)  # validation needs no database: before the write lock
            with session_scope(factory, write=True) as db:
                counts, failures = _store(db, job, batch, checked)
                failures = [{k: prepared.http.scrub(v) for k, v in f.items()} for f in failures]
                if batch.cursor is not None:
                    feed_service.set_cursor(db, job.feed_pk, batch.cursor)
                feed_service.add_counts(db, summary.run_id, counts, failures)
                feed_service.renew(db, job.feed_pk, holder=holder, lease=lease)
            for key, value in counts.items():
                summary.counts[key] += value
            if progress:
                summary.seconds = time.monotonic() - started
                progress(summary)
    except (FeedError, HttpError) as exc:
        # Sources may quote what the server sent (a TAXII error, a parse error): scrubbed too.
        error = prepared.http.scrub(str(exc))
    except Exception as exc:  # a bug or a library failure: record it, never lose the run record
        # The traceback too: a library's message may carry the feed's URL or a header.
        trace = prepared.http.scrub("".join(traceback.format_exception(exc)))
        log.error("feed %s: run %d failed unexpectedly\n%s", name, summary.run_id, trace.rstrip())
        error = f"internal error: {type(exc).__name__}: {prepared.http.scrub(str(exc))[:300]}"
    finally:
        stop.set()
        keeper.join()
        prepared.http.close()
        summary.status = _finish(
            factory, settings, summary.run_id, job.feed_pk, holder, error, prepared.http.notes
        )
    summary.error = error
    summary.seconds = time.monotonic() - started
    metrics.FEED_RUNS.inc(feed=name, status=summary.status)
    for result in ("new", "updated", "dropped", "failed"):
        metrics.FEED_OBJECTS.inc(summary.counts[result], feed=name, result=result)
    if error:
        metrics.ERRORS.inc(where="feed")
    (log.warning if error else log.info)("%s", summary.line())
    return summary


def _keep_claim(
    factory: sessionmaker[Session], feed_pk: int, holder: str, lease: timedelta, stop: threading.Event
) -> None:
    """Renew the run's claim every third of its lease until `stop` is set."""
    while not stop.wait(lease.total_seconds() / 3):
        try:
            with session_scope(factory, write=True) as db:
                feed_service.renew(db, feed_pk, holder=holder, lease=lease)
        except Exception as exc:  # the database away for a moment: the next beat tries again
            log.warning("feed claim %d: renewal failed (%s); retrying", feed_pk, type(exc).__name__)


FINISH_PATIENCE_SECONDS = 30.0


def _finish(
    factory: sessionmaker[Session],
    settings: Settings,
    run_id: int,
    feed_pk: int,
    holder: str,
    error: str | None,
    notes: list[str],
) -> str:
    """Record the end of the run and release the feed's claim: the run's status.

    Retried for a while when the database is unreachable: a run cut short by a database restart
    fails in the middle, and if its end could not be recorded the claim would keep every later
    run of the feed out (FeedBusyError) until the claim's lease ran out, minutes later.
    """
    delay, deadline = 0.25, time.monotonic() + FINISH_PATIENCE_SECONDS
    while True:
        try:
            with session_scope(factory, write=True) as db:
                done = feed_service.finish_run(
                    db, run_id, error=error, unhealthy_after=settings.feed_unhealthy_after, notes=notes
                )
                feed_service.release(db, feed_pk, holder=holder)
                return done.status
        except OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("feed run %d: database unreachable while recording its end; retrying", run_id)
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def run_feed(
    factory: sessionmaker[Session],
    settings: Settings,
    name: str,
    *,
    trigger: str = "manual",
    attempt: int = 1,
    holder: str | None = None,
    progress: Callable[[RunSummary], None] | None = None,
    actor: str | None = None,
) -> RunSummary:
    """Run feed `name` once; FeedBusyError if a run holds it, NotFoundError if there is none."""
    prepared = begin_run(
        factory, settings, name, trigger=trigger, attempt=attempt, holder=holder, actor=actor
    )
    return continue_run(factory, settings, prepared, progress=progress)


def start_in_background(
    factory: sessionmaker[Session], settings: Settings, name: str, *, actor: str | None = None
) -> int:
    """Claim the feed now (errors raised here), run it on a thread; the run record's id."""
    prepared = begin_run(factory, settings, name, trigger="manual", actor=actor)
    threading.Thread(
        target=continue_run, args=(factory, settings, prepared), daemon=True, name=f"feed-run-{name}"
    ).start()
    return prepared.summary.run_id


@dataclass
class _Job:
    feed_pk: int
    collection_pk: int
    tlp: str
    confidence: int | None
    warninglists: bool
    name: str
    exchange_identity: str
    id_key: bytes
    # A peer's feed stores as that partner (origin "peer", its writer, its originator), not as a feed.
    writer: Writer | None = None
    peer_pk: int | None = None  # the peer's partner pk: the originator of what it sends


def _peer_trust(
    db: Session, factory: sessionmaker[Session], settings: Settings, slug: str
) -> tuple[PeerTrust, Writer, int]:
    """The trust a peer's pages must pass, and the peer as the writer of what they carry."""
    from exchange.errors import ExchangeError
    from exchange.peer import service as peer_service

    peer = peer_service.find_by_slug(db, slug)
    if peer is None:
        raise FeedError(f"feed pulls from peer {slug!r}, which is no longer a peer; nothing is pulled")
    peer_pk = peer.pk

    def save(cache: KeyCache) -> None:
        with session_scope(factory, write=True) as session:
            peer_service.save_keys(session, peer_pk, cache)

    try:
        trust = peer_service.trust_for(
            db,
            slug,
            save=save,
            max_age=settings.peer_keys_max_age_seconds,
            refetch_every=settings.peer_keys_refetch_seconds,
        )
    except ExchangeError as exc:
        raise FeedError(exc.message) from None
    return trust, peer_service.writer(db, slug), peer.partner_pk


@dataclass
class _Checked:
    objects: PreparedBatch
    dropped: int


def _check(job: _Job, batch: Batch) -> _Checked:
    """The batch's STIX objects with defaults applied, warninglisted ones dropped, validated."""
    dropped = 0
    objects: list[Any] = []
    for obj in batch.objects:
        if not isinstance(obj, dict):
            objects.append(obj)  # ingest reports it as invalid
            continue
        if job.warninglists:
            value = normalize.checked_value(obj)
            if value is not None and warninglist.listed(value):
                dropped += 1
                continue
        if job.writer is not None:
            objects.append(obj)  # a peer's objects are kept as it signed them
            continue
        objects.append(normalize.apply_defaults(obj, tlp=job.tlp, confidence=job.confidence))
    return _Checked(prepare(objects), dropped)


def _store(
    db: Session, job: _Job, batch: Batch, checked: _Checked
) -> tuple[dict[str, int], list[dict[str, str]]]:
    counts = dict.fromkeys(COUNTS, 0)
    counts["fetched"] = batch.fetched
    failures = list(batch.failures)
    counts["failed"] += len(batch.failures)
    counts["dropped"] += checked.dropped
    now = datetime.now(UTC)
    objects = PreparedBatch()
    if batch.iocs:
        objects = prepare(_indicators(db, job, batch, counts, failures, now))
    objects.extend(checked.objects)
    if not objects.valid and not objects.failures:
        return counts, failures
    collection = db.get(Collection, job.collection_pk)
    if collection is None:
        raise FeedError("the feed's target collection no longer exists")
    result = ingest(
        db,
        collection=collection,
        objects=objects,
        origin="feed" if job.writer is None else "peer",
        added_by=f"feed:{job.name}" if job.writer is None else f"peer:{job.writer.name}",
        writer=job.writer,
        exchange_identity=job.exchange_identity,
        origin_partner_pk=job.peer_pk,
    )
    counts["updated"] += result.updated
    counts["new"] += result.created - result.updated
    counts["unchanged"] += result.duplicates
    counts["failed"] += len(result.failures)
    failures += [{"id": f.get("id", ""), "message": f.get("message", "")} for f in result.failures]
    return counts, failures


def _indicators(
    db: Session,
    job: _Job,
    batch: Batch,
    counts: dict[str, int],
    failures: list[dict[str, str]],
    now: datetime,
) -> list[dict[str, Any]]:
    wanted: dict[str, tuple[Any, Any]] = {}
    for ioc in batch.iocs:
        try:
            observable = normalize.observable_of(ioc.value, ioc.kind)
        except ObservableError as exc:
            counts["failed"] += 1
            failures.append({"id": f"line {ioc.line}" if ioc.line else "", "message": str(exc)})
            continue
        if job.warninglists and warninglist.listed(observable.value):
            counts["dropped"] += 1
            continue
        # A value listed twice in one feed is one indicator; the later line wins.
        wanted[normalize.indicator_id(job.name, observable, key=job.id_key)] = (observable, ioc)
    plan_for_current_size(db)
    stored = _latest_bodies(db, job.collection_pk, list(wanted))
    out = []
    for stix_id, (observable, ioc) in wanted.items():
        body = normalize.indicator(
            observable,
            feed_name=job.name,
            tlp=job.tlp,
            confidence=job.confidence,
            description=ioc.description,
            labels=ioc.labels,
            first_seen=ioc.first_seen,
            stored=stored.get(stix_id),
            now=now,
            id_key=job.id_key,
        )
        if body is None:
            counts["unchanged"] += 1
        else:
            out.append(body)
    return out


def _latest_bodies(db: Session, collection_pk: int, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        for stix_id, body in db.execute(
            select(ObjectVersion.stix_id, ObjectVersion.body).where(
                ObjectVersion.collection_pk == collection_pk,
                ObjectVersion.stix_id.in_(ids[start : start + 500]),
                ObjectVersion.is_latest.is_(True),
            )
        ):
            found[stix_id] = orjson.loads(body)
    return found
