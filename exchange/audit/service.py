"""Append-only, hash-chained audit trail: every event commits to the one before it, and every
event and the head are signed with a key the database does not hold (exchange.audit.anchor)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit import anchor as anchoring
from exchange.audit.models import AuditEvent, AuditHead
from exchange.database.types import utcnow
from exchange.errors import BadRequestError, ConflictError

GENESIS = "0" * 64
_SECRET_WORDS = ("key", "password", "secret", "token")


def _digest(prev_hash: str, event: AuditEvent) -> str:
    payload = orjson.dumps(
        [event.seq, event.at.isoformat(), event.actor, event.action, event.target, event.details]
    )
    return hashlib.sha256(prev_hash.encode() + payload).hexdigest()


def _scrub(details: Any) -> Any:
    """Never let a secret into the trail, whatever a caller passes (nested dicts and lists too)."""
    if isinstance(details, list):
        return [_scrub(item) for item in details]
    if not isinstance(details, dict):
        return details
    clean: dict[str, Any] = {}
    for name, value in details.items():
        if any(word in str(name).lower() for word in _SECRET_WORDS) and str(name).lower() not in (
            "key_id",
            "public_keys",
        ):
            clean[name] = "[withheld]"
        else:
            clean[name] = _scrub(value)
    return clean


def record(
    db: Session, *, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None
) -> AuditEvent:
    """Append one event to the chain (in the caller's transaction)."""
    head = db.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        db.add(head)
        db.flush()
    event = AuditEvent(
        seq=head.seq + 1,
        at=utcnow(),
        actor=actor[:64],
        action=action,
        target=target[:300],
        details=orjson.dumps(_scrub(details or {}), option=orjson.OPT_SORT_KEYS).decode(),
        prev_hash=head.hash,
        hash="",
    )
    event.hash = _digest(head.hash, event)
    signer = anchoring.of(db)
    if signer is not None:
        link = {"seq": event.seq, "hash": event.hash}
        event.signature = signer.sign(anchoring.EVENT, link)
        head.signature = signer.sign(anchoring.HEAD, link)
    else:
        head.signature = None  # verify() reports the unsigned event
    db.add(event)
    head.seq, head.hash = event.seq, event.hash
    db.flush()
    return event


def list_(
    db: Session,
    *,
    limit: int = 100,
    action: str | None = None,
    before: int | None = None,
    actor: str | None = None,
) -> list[AuditEvent]:
    """Newest first."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if before:
        query = query.where(AuditEvent.seq < before)
    return list(db.scalars(query))


@dataclass
class ChainReport:
    events: int = 0
    problems: list[str] = field(default_factory=list)
    proves: list[str] = field(default_factory=list)  # what an ok report establishes
    cannot_prove: list[str] = field(default_factory=list)  # what no report can establish

    @property
    def ok(self) -> bool:
        return not self.problems


def _range(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}..{last}"


def read_checkpoint(text: str, name: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint as exported, checked for shape (its signature is checked by verify)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequestError(f"{name}: not a JSON audit checkpoint") from None
    if (
        not isinstance(data, dict)
        or data.get("type") != anchoring.CHECKPOINT
        or not isinstance(data.get("seq"), int)
        or not isinstance(data.get("hash"), str)
        or not isinstance(data.get("iat"), int)
        or not isinstance(data.get("jws"), str)
    ):
        raise BadRequestError(f"{name}: not an audit checkpoint (type, seq, hash, iat and jws are needed)")
    return data


def verify(db: Session, *, checkpoints: list[tuple[str, dict[str, Any]]] | None = None) -> ChainReport:
    """Walk the whole chain and check every signature, the head's and each exported checkpoint's.

    `checkpoints` are (name, checkpoint) pairs as `export_checkpoint` made them. The report
    says what it proves and what it cannot, whatever it finds.
    """
    report = ChainReport()
    signer = anchoring.of(db)
    keys = signer.public_keys() if signer is not None else {}
    if signer is None:
        report.problems.append("no signing keyring is configured here, so no signature could be checked")
    expected_seq, prev = 1, GENESIS
    kids: set[str] = set()
    lost_keys: dict[str, list[int]] = {}  # kid -> events signed by a key the keyring no longer holds
    last_verified = 0
    hashes_wanted = {cp["seq"]: None for _, cp in checkpoints or []}
    hashes: dict[int, str | None] = {}
    for event in db.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
        report.events += 1
        if event.seq != expected_seq:
            report.problems.append(f"events {expected_seq}..{event.seq - 1} are missing")
        if event.prev_hash != prev:
            report.problems.append(f"event {event.seq} does not follow the event before it")
        if _digest(event.prev_hash, event) != event.hash:
            report.problems.append(f"event {event.seq} was altered after it was written")
        if signer is not None:
            kid, why = anchoring.check(
                event.signature, anchoring.EVENT, {"seq": event.seq, "hash": event.hash}, keys
            )
            if why is None:
                kids.add(kid or "")
                last_verified = event.seq
            elif kid is not None and kid not in keys and "no longer holds" in why:
                lost_keys.setdefault(kid, []).append(event.seq)
            elif event.signature is None:
                report.problems.append(
                    f"event {event.seq} carries no signature: it was written without the signing key "
                    "(or before audit signatures existed), or its signature was removed"
                )
            else:
                report.problems.append(f"event {event.seq} {why}: it was not written by the exchange")
        if event.seq in hashes_wanted:
            hashes[event.seq] = event.hash
        expected_seq, prev = event.seq + 1, event.hash
    last_seq = expected_seq - 1
    for kid, seqs in lost_keys.items():
        if last_verified > max(seqs):
            report.cannot_prove.append(
                f"{len(seqs)} events (the first {seqs[0]}) are signed by key {kid}, which the keyring no "
                f"longer holds; they are covered by the signature of event {last_verified} through the chain"
            )
        else:
            report.problems.append(
                f"events {seqs[0]}..{seqs[-1]} are signed by key {kid}, which the keyring no longer holds, "
                "and no later event is signed by a key it holds"
            )
    head = db.get(AuditHead, 1)
    if head is None and report.events:
        report.problems.append("the chain's head record is missing: the newest events may have been removed")
    elif head is None:
        from exchange.intel import service as intel_service  # an initialised exchange has audited events

        if intel_service.list_api_roots(db):
            report.problems.append(
                "the audit trail is empty and its head record is missing, but this exchange is initialised: "
                "every event was deleted"
            )
    elif head.seq != last_seq or head.hash != prev:
        report.problems.append(
            f"the chain ends at event {last_seq} but its head says {head.seq}: events were removed"
        )
    elif signer is not None:
        _, why = anchoring.check(head.signature, anchoring.HEAD, {"seq": head.seq, "hash": head.hash}, keys)
        if why is not None:
            report.problems.append(
                f"the head (event {head.seq}) {why}: the newest events were removed, added or rewritten "
                "by someone without the signing key"
            )
    newest_checkpoint = 0
    for name, cp in checkpoints or []:
        claims: dict[str, Any] = {k: cp[k] for k in ("seq", "hash", "iat", "iss") if k in cp}
        _, why = anchoring.check(cp["jws"], anchoring.CHECKPOINT, claims, keys)
        taken = utc_text(cp["iat"])
        if why is not None:
            report.problems.append(f"{name} {why}: it is not a checkpoint this exchange made")
        elif cp["seq"] not in hashes:
            report.problems.append(
                f"{name} (taken {taken}) names event {cp['seq']}, which is missing: "
                f"the trail was cut back to event {last_seq}"
            )
        elif hashes[cp["seq"]] != cp["hash"]:
            report.problems.append(
                f"event {cp['seq']} differs from {name} (taken {taken}): the trail up to it was rewritten"
            )
        else:
            newest_checkpoint = max(newest_checkpoint, cp["seq"])
            report.proves.append(
                f"{name} (taken {taken}) matches: events 1..{cp['seq']} are unchanged and none was removed "
                "since, even by someone holding the signing key"
            )
    if report.events:
        report.proves.insert(
            0,
            f"{_range(1, last_seq)}: the hash chain is unbroken, every event and the head (event "
            f"{last_seq}) carry the exchange's signature ({', '.join(sorted(kids)) or 'none'}); nobody "
            "without the signing key added, changed or removed any of them, short of a rollback (below)",
        )
    after = f"after event {newest_checkpoint}" if newest_checkpoint else "at the end of the trail"
    report.cannot_prove += [
        (
            f"that no events {after} were removed: someone with database access who kept a copy of an "
            "earlier head can roll the trail back to it. Only a checkpoint exported after those events "
            "shows it: export one regularly (`exchange audit checkpoint FILE`) and keep it off this machine"
        ),
        (
            "anything against someone holding the signing keys (the data directory) about "
            + (f"events after event {newest_checkpoint}" if newest_checkpoint else "any event")
            + ": they can re-sign a rewritten trail"
        ),
    ]
    return report


def utc_text(epoch_seconds: int) -> str:
    from datetime import datetime

    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"  # strftime("%Y") writes year 1 as "1"


def export_checkpoint(db: Session, *, issuer: str | None = None) -> dict[str, Any]:
    """A signed checkpoint of the chain's head, to keep outside the exchange; refused unless the
    trail verifies, so a checkpoint never vouches for a trail already tampered with."""
    signer = anchoring.of(db)
    if signer is None:
        raise ConflictError("no signing keyring is configured here; a checkpoint cannot be signed")
    report = verify(db)
    if not report.ok:
        raise ConflictError(
            "the audit trail does not verify, so no checkpoint was made: " + "; ".join(report.problems)
        )
    head = db.get(AuditHead, 1)
    if head is None:
        raise ConflictError("the audit trail is empty; there is nothing to checkpoint")
    claims = anchoring.checkpoint_claims(head.seq, head.hash, issuer)
    return {"type": anchoring.CHECKPOINT, **claims, "jws": signer.sign(anchoring.CHECKPOINT, claims)}
