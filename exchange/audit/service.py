"""Append-only, hash-chained audit trail: every event commits to the one before it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEvent, AuditHead
from exchange.database.types import utcnow

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
    db.add(event)
    head.seq, head.hash = event.seq, event.hash
    db.flush()
    return event


def list_(
    db: Session, *, limit: int = 100, action: str | None = None, before: int | None = None
) -> list[AuditEvent]:
    """Newest first."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    if before:
        query = query.where(AuditEvent.seq < before)
    return list(db.scalars(query))


@dataclass
class ChainReport:
    events: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(db: Session) -> ChainReport:
    """Walk the whole chain: edited, inserted, removed or truncated events are reported."""
    report = ChainReport()
    expected_seq, prev = 1, GENESIS
    for event in db.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
        report.events += 1
        if event.seq != expected_seq:
            report.problems.append(f"events {expected_seq}..{event.seq - 1} are missing")
        if event.prev_hash != prev:
            report.problems.append(f"event {event.seq} does not follow the event before it")
        if _digest(event.prev_hash, event) != event.hash:
            report.problems.append(f"event {event.seq} was altered after it was written")
        expected_seq, prev = event.seq + 1, event.hash
    head = db.get(AuditHead, 1)
    last_seq = expected_seq - 1
    if head is None and report.events:
        report.problems.append("the chain's head record is missing: the newest events may have been removed")
    elif head is not None and (head.seq != last_seq or head.hash != prev):
        report.problems.append(
            f"the chain ends at event {last_seq} but its head says {head.seq}: events were removed"
        )
    return report
