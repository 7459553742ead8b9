"""Push delivery: send each partner, to its own TAXII 2.1 server, what its agreement allows and it
has not yet received, in signed envelopes, resuming where the last run stopped.

Per collection, PushState.delivered_us is the date_added of the last object version the partner's
server accepted (or that was passed over for good). Each envelope is its own round: read (no
lock held while the partner's server works), POST, then one write transaction that records the
disclosure ledger and advances the cursor. A crash between an accepted POST and that commit
re-sends at most that one envelope on the next run; TAXII servers treat a repeated object
version as already present, so the partner ends up with each version once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from exchange import metrics
from exchange.agreement import service as agreement_service
from exchange.config import Settings
from exchange.database.core import rowcount, session_scope
from exchange.database.types import utcnow
from exchange.errors import BadRequestError, ExchangeError
from exchange.feed.service import safe_url
from exchange.http_deadline import BodyTooLarge, DeadlineSession
from exchange.intel import query
from exchange.intel.models import Collection, ObjectVersion
from exchange.intel.query import AnyRow
from exchange.partner import service as partner_service
from exchange.push import service as push_service
from exchange.push.models import PushState
from exchange.sharing import access, outbound
from exchange.signing import CTY_TAXII, KeyRing
from feeds.masking import credential_forms, remote_text
from policies.engine import push_grant
from policies.schemas import AgreementDoc

log = logging.getLogger(__name__)

TAXII = "application/taxii+json;version=2.1"
# Only the newest version of each object, as a TAXII poll without match[version] gets it.
_LATEST = query.ObjectFilter()
_MAX_REMOTE_TEXT = 200
# A TAXII status resource (or error) is small; what the partner's server sends is read only up to
# this, decoded, so a gzip bomb in answer to a POST costs nothing.
MAX_STATUS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PushTarget:
    """A partner due for push delivery, and how often."""

    slug: str
    every_seconds: int
    url: str


@dataclass
class PushSummary:
    """How one push run for one partner went. `error` says why it failed (or why there was nothing)."""

    partner: str
    status: str = "nothing"  # ok | failed | nothing
    delivered: int = 0
    error: str | None = None
    refused: int = 0  # objects the partner's server listed as failures in its status resource
    envelopes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """One log line, without secrets."""
        tail = f": {self.error}" if self.error else ""
        return (
            f"push {self.partner}: {self.status} in {self.seconds:.1f} s ({self.delivered:,} delivered, "
            f"{self.refused:,} refused, {self.envelopes:,} envelopes){tail}"
        )


class PushError(Exception):
    """The partner's server could not take an envelope; the message is safe to log and show."""


class _Overtaken(Exception):
    """Another run advanced the same cursor first (two runs for one partner at once)."""


@dataclass
class _Envelope:
    rows: list[AnyRow]  # what goes out, in date_added order
    bodies: list[str]  # canonical texts as the partner receives them (redacted)
    advance_to: int  # the cursor once this envelope is accepted
    done: bool  # nothing visible after advance_to (as of this read)


def push_targets(db: Session) -> list[PushTarget]:
    """Active partners whose current agreement is in force today and asks for push delivery."""
    today = utcnow().date()
    targets = []
    for partner in partner_service.list_(db):
        doc = agreement_service.current_doc_for(db, partner.pk)
        grant = push_grant(doc, partner_status=partner.status, today=today)
        if grant is not None:
            targets.append(PushTarget(partner.slug, grant.every_seconds, grant.url))
    return targets


def start_in_background(
    factory: sessionmaker[Session], settings: Settings, keyring: KeyRing, slug: str, requested_by: str = "api"
) -> None:
    """Check the partner has push delivery in force (errors raised here), then push on a thread."""
    with session_scope(factory) as db:
        partner = partner_service.get_by_slug(db, slug)
        assert partner is not None
        if slug not in {t.slug for t in push_targets(db)}:
            raise BadRequestError(
                f"partner {slug!r} has no push delivery in force (an active agreement "
                "with a push section, inside its validity window)"
            )

    def run() -> None:
        with contextlib.suppress(Exception):  # already logged and counted by push_partner
            push_partner(factory, settings, keyring, slug, requested_by=requested_by)

    threading.Thread(target=run, daemon=True, name=f"push-{slug}").start()


def _scope(db: Session, doc: AgreementDoc) -> list[Collection]:
    """The collections push covers: the one it names, else every collection the partner reads."""
    assert doc.push is not None and doc.read is not None
    aliases = [doc.push.collection] if doc.push.collection else list(doc.read.collections)
    return list(db.scalars(select(Collection).where(Collection.alias.in_(aliases)).order_by(Collection.pk)))


def _objects_url(url: str) -> str:
    """The collection's objects endpoint (TAXII 2.1 section 5.5), any query kept as it is."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/objects/", fragment=""))


def _state(factory: sessionmaker[Session], partner_pk: int, collection_pk: int) -> tuple[int, int]:
    """(pk, delivered_us) of the partner's push state in a collection, created on first use."""
    with session_scope(factory) as db:
        found = db.execute(
            select(PushState.pk, PushState.delivered_us).where(
                PushState.partner_pk == partner_pk, PushState.collection_pk == collection_pk
            )
        ).first()
    if found is not None:
        return found.pk, found.delivered_us
    try:
        with session_scope(factory, write=True) as db:
            state = PushState(
                partner_pk=partner_pk,
                collection_pk=collection_pk,
                delivered_us=0,
                consecutive_failures=0,
                delivered_total=0,
            )
            db.add(state)
            db.flush()
            return state.pk, 0
    except IntegrityError:  # a concurrent run created it first
        return _state(factory, partner_pk, collection_pk)


def _next_envelope(
    db: Session,
    *,
    grant: access.CollectionAccess,
    collection: Collection,
    recipient: outbound.Recipient,
    after_us: int,
    size: int,
    identity: str,
) -> _Envelope:
    """Up to `size` objects after `after_us` that the grant allows now and the partner lacks."""
    assert recipient.partner_pk is not None  # a push always goes to a partner
    out = _Envelope([], [], after_us, False)
    cursor = after_us
    while True:
        # SQL leaves out what the agreement withholds (TLP, type, confidence, audience, closure),
        # and what is still under embargo; embargo grows with date_added, so nothing returned
        # lies after a row that is not yet visible, and the cursor never passes one.
        page = outbound.next_page(
            db,
            grant=grant,
            collection=collection,
            flt=_LATEST,
            after_us=cursor,
            limit=size,
            columns=(ObjectVersion.body,),
            recipient=recipient,
        )
        # Through any channel: a push recipient has no credential, so it counts by partner.
        have = outbound.already_received(db, recipient, [r.pk for r in page.rows])
        for row, position in zip(page.rows, page.positions, strict=True):
            if row.pk in have:
                continue  # already with the partner: passed over
            out.rows.append(row)
            out.bodies.extend(outbound.bodies([row], grant, exchange_identity=identity))
            if len(out.rows) == size:
                # Cut here: entries after this one are read again for the next envelope.
                out.advance_to = position
                return out
        if not page.more:
            # Everything up to the last entry read is accounted for (served, withheld or passed).
            out.advance_to, out.done = page.scanned_to or cursor, True
            return out
        cursor = page.scanned_to or cursor


def _auth_parts(auth: dict[str, Any]) -> tuple[tuple[str, str] | None, dict[str, str]]:
    if auth.get("username") is not None:
        return (auth["username"], auth.get("password") or ""), {}
    return None, dict(auth.get("headers") or {})


def _scrub(text: str, auth: dict[str, Any], url: str) -> str:
    """`text` from the partner's server, short, with every form of our credentials it echoes
    masked (before shortening: a cut must not leave part of one unmasked)."""
    return remote_text(text, credential_forms(auth, url), _MAX_REMOTE_TEXT)


def _failed_ids(status: Any) -> set[str]:
    """Ids the status resource lists as failures (TAXII 2.1 section 4.3.1)."""
    failures = status.get("failures") or []
    if not isinstance(failures, list):
        raise PushError("its status resource has a 'failures' member that is not a list")
    return {f["id"] for f in failures if isinstance(f, dict) and isinstance(f.get("id"), str)}


def _post(
    http: DeadlineSession,
    url: str,
    body: bytes,
    *,
    auth: dict[str, Any],
    timeout: float,
    max_seconds: float,
) -> set[str]:
    """POST one envelope; the ids the partner's server refused. PushError when it took nothing.

    `timeout` bounds the connect and each read; `max_seconds` the whole exchange (a server that
    answers 202 and trickles its status resource is cut off there), and the answer is read only
    up to MAX_STATUS_BYTES.
    """
    shown = safe_url(url)
    basic, headers = _auth_parts(auth)
    http.stop_at(time.monotonic() + max_seconds)
    try:
        response = http.post(
            url,
            data=body,
            auth=basic,
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
            headers={**headers, "Accept": TAXII, "Content-Type": TAXII},
        )
        answer = http.read_body(response, MAX_STATUS_BYTES)
    except BodyTooLarge:
        if 200 <= response.status_code < 300:
            raise PushError(
                f"{shown} answered HTTP {response.status_code} with more than {MAX_STATUS_BYTES:,} "
                "bytes (a TAXII status resource is small); read no further"
            ) from None
        answer = b""  # an error too long to quote: its status line says what there is to say
    except requests.exceptions.RequestException as exc:
        if http.expired:
            raise PushError(
                f"{shown} took longer than {max_seconds:g} s to take an envelope and answer"
            ) from None
        if isinstance(exc, requests.exceptions.SSLError):
            raise PushError(f"TLS verification failed for {shown}") from None
        if isinstance(exc, requests.exceptions.Timeout):
            raise PushError(f"{shown} did not answer within {timeout:g} s") from None
        if isinstance(exc, requests.exceptions.ConnectionError):
            raise PushError(f"cannot connect to {shown}: {_connection_reason(exc)}") from None
        raise PushError(f"POST to {shown} failed: {type(exc).__name__}") from None
    finally:
        http.stop_at(None)  # the time between envelopes (reading, signing) is not the partner's
    if not 200 <= response.status_code < 300:
        hint = " (check the partner's push credentials)" if response.status_code in (401, 403) else ""
        reason = _scrub(response.reason or "", auth, url)  # the status line is the server's text too
        detail = _remote_detail(answer, auth, url)
        raise PushError(
            f"{shown} answered HTTP {response.status_code} {reason}{hint}" + (f": {detail}" if detail else "")
        )
    try:
        status = json.loads(answer)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        # Without a status resource we cannot tell what was kept; sending again is safe.
        raise PushError(f"{shown} answered HTTP {response.status_code} without a TAXII status resource")
    return _failed_ids(status)


def _remote_detail(answer: bytes, auth: dict[str, Any], url: str) -> str:
    try:
        error = json.loads(answer)
    except ValueError:
        return ""
    if isinstance(error, dict):
        parts = [str(error[k]) for k in ("title", "description") if isinstance(error.get(k), str)]
        return _scrub(" - ".join(parts), auth, url)
    return ""


def _connection_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for marker in ("Connection refused", "Name or service not known", "Connection reset", "No route to host"):
        if marker.lower() in text:
            return marker
    inner = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    return type(inner).__name__


def _record_failure(factory: sessionmaker[Session], state_pk: int, error: str) -> None:
    with session_scope(factory, write=True) as db:
        db.execute(
            update(PushState)
            .where(PushState.pk == state_pk)
            .values(
                consecutive_failures=PushState.consecutive_failures + 1,
                last_error=error[:2000],
                last_attempt_at=utcnow(),
            )
        )


def _commit_envelope(
    factory: sessionmaker[Session],
    *,
    state_pk: int,
    expected_us: int,
    env: _Envelope,
    refused: set[str],
    recipient: outbound.Recipient,
    collection_pk: int,
) -> int:
    """Record what the partner accepted and move the cursor, in one transaction; how many."""
    now = utcnow()
    accepted = [r for r in env.rows if r.stix_id not in refused]
    with session_scope(factory, write=True) as db:
        # Compare-and-set: if another run moved the cursor meanwhile, record nothing twice.
        moved = db.execute(
            update(PushState)
            .where(PushState.pk == state_pk, PushState.delivered_us == expected_us)
            .values(
                delivered_us=env.advance_to,
                delivered_total=PushState.delivered_total + len(accepted),
                last_success_at=now if env.rows else PushState.last_success_at,
                last_attempt_at=now,
                consecutive_failures=0,
                last_error=None,
            )
        )
        if rowcount(moved) != 1:
            raise _Overtaken()
        outbound.record(db, recipient, collection_pk=collection_pk, rows=accepted)
    return len(accepted)


def push_partner(
    factory: sessionmaker[Session],
    settings: Settings,
    keyring: KeyRing,
    slug: str,
    *,
    holder: str | None = None,
    requested_by: str = "scheduler",
) -> PushSummary:
    """Send partner `slug` what its agreement allows now and it has not yet received."""
    started = time.monotonic()
    summary = PushSummary(partner=slug)
    try:
        _push(factory, settings, keyring, slug, summary, requested_by=requested_by)
    except Exception as exc:
        # Domain errors carry messages written to be shown; anything else is named, not dumped.
        detail = exc.message if isinstance(exc, ExchangeError) else f"internal error: {type(exc).__name__}"
        summary.status, summary.error = "failed", detail
        raise
    finally:
        summary.seconds = time.monotonic() - started
        metrics.PUSHES.inc(partner=slug, status=summary.status)
        by = f" (run by {holder})" if holder else ""
        (log.warning if summary.status == "failed" else log.info)("%s%s", summary.line(), by)
    return summary


def _push(
    factory: sessionmaker[Session],
    settings: Settings,
    keyring: KeyRing,
    slug: str,
    summary: PushSummary,
    *,
    requested_by: str,
) -> None:
    with session_scope(factory) as db:
        partner = partner_service.get_by_slug(db, slug)
        assert partner is not None
        doc = agreement_service.current_doc_for(db, partner.pk)
        grant = push_grant(doc, partner_status=partner.status, today=utcnow().date())
        if doc is None or grant is None:
            summary.error = f"no push delivery in force for partner {slug!r}"
            return
        collections = _scope(db, doc)
        auth = push_service.push_auth(partner)
        partner_pk = partner.pk
    url = _objects_url(grant.url)
    recipient = outbound.Recipient.for_partner(partner_pk, slug, channel="push", requested_by=requested_by)
    size = max(1, settings.push_batch_size)
    with DeadlineSession() as http:  # each POST is given its deadline (_post)
        http.trust_env = False  # no proxy or .netrc credentials picked up from the environment
        http.headers["User-Agent"] = "national-cert-exchange/1.0"
        for collection in collections:
            if not _push_collection(
                factory,
                settings,
                keyring,
                http,
                collection=collection,
                recipient=recipient,
                url=url,
                auth=auth,
                size=size,
                summary=summary,
            ):
                return
    summary.status = "ok" if summary.envelopes else "nothing"


def _push_collection(
    factory: sessionmaker[Session],
    settings: Settings,
    keyring: KeyRing,
    http: DeadlineSession,
    *,
    collection: Collection,
    recipient: outbound.Recipient,
    url: str,
    auth: dict[str, Any],
    size: int,
    summary: PushSummary,
) -> bool:
    """Deliver one collection envelope by envelope; False when the run must stop."""
    assert recipient.partner_pk is not None and recipient.partner_slug is not None
    state_pk, delivered_us = _state(factory, recipient.partner_pk, collection.pk)
    while True:
        with session_scope(factory) as db:
            # Asked again for every envelope: an agreement suspended mid-run stops the run.
            grant = outbound.access_for(db, recipient, collection)
            if grant is None or not grant.can_read:
                return True
            env = _next_envelope(
                db,
                grant=grant,
                collection=collection,
                recipient=recipient,
                after_us=delivered_us,
                size=size,
                identity=settings.identity_id,
            )
        refused: set[str] = set()
        if env.rows:
            signed = outbound.signed_envelope(
                {},
                env.bodies,
                recipient=recipient,
                keyring=keyring,
                cty=CTY_TAXII,
                issuer=settings.identity_id,
            )
            try:
                refused = _post(
                    http,
                    url,
                    signed,
                    auth=auth,
                    timeout=settings.push_timeout_seconds,
                    max_seconds=settings.push_max_post_seconds,
                )
            except PushError as exc:
                summary.status, summary.error = "failed", str(exc)
                _record_failure(factory, state_pk, summary.error)
                return False
            summary.envelopes += 1
        try:
            accepted = _commit_envelope(
                factory,
                state_pk=state_pk,
                expected_us=delivered_us,
                env=env,
                refused=refused,
                recipient=recipient,
                collection_pk=collection.pk,
            )
        except _Overtaken:
            summary.status = "failed"
            summary.error = (
                f"another push run for {recipient.partner_slug!r} advanced {collection.alias!r} first"
            )
            return False
        summary.delivered += accepted
        summary.refused += len(env.rows) - accepted
        delivered_us = env.advance_to
        if env.done:
            return True
