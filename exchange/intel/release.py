"""Stream releases: stored object versions that enter partners' streams again because what
withheld them changed (a late reference target, an agreement that now reveals them).

Partners' streams are ordered by when an object became visible to them (see
exchange.sharing.outbound); a version withheld when the stream passed its date_added is
therefore released again at the moment it may have become visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, func, insert, not_, select
from sqlalchemy.orm import Session

from exchange.intel.models import ObjectRef, ObjectVersion, StreamRelease

_CHUNK = 500
# As deep as referential closure looks (exchange.sharing.visibility.CLOSURE_DEPTH).
DEPTH = 3


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def release_dependents(
    db: Session,
    *,
    collection_pk: int,
    batch_from_us: int,
    new_ids: set[str],
    new_links: dict[int, set[str]],
    next_us: int,
    step_us: int,
) -> int:
    """Release what references the versions just stored (up to DEPTH levels of referrers),
    and new versions that reference objects kept in other collections (whose embargo may end
    later than theirs). Release times come from the ingesting collection's sequence, after the
    batch; returns the next free time."""
    released: dict[int, int] = {}  # version pk -> its collection
    in_batch = and_(
        ObjectVersion.collection_pk == collection_pk, ObjectVersion.date_added_us >= batch_from_us
    )
    seen = set(new_ids)
    frontier = sorted(new_ids)
    for _ in range(DEPTH):
        found: set[str] = set()
        for part in _chunks(frontier):
            for pk, coll_pk, stix_id in db.execute(
                select(ObjectVersion.pk, ObjectVersion.collection_pk, ObjectVersion.stix_id)
                .join(ObjectRef, ObjectRef.object_version_pk == ObjectVersion.pk)
                .where(ObjectRef.ref_id.in_(part), ObjectVersion.is_latest.is_(True), not_(in_batch))
            ):
                released.setdefault(pk, coll_pk)
                found.add(stix_id)
        frontier = sorted(found - seen)
        seen |= found
        if not frontier:
            break
    if new_links:
        wanted = sorted(set().union(*new_links.values()))
        elsewhere: set[str] = set()
        for part in _chunks(wanted):
            elsewhere.update(
                db.scalars(
                    select(ObjectVersion.stix_id)
                    .where(ObjectVersion.stix_id.in_(part), ObjectVersion.collection_pk != collection_pk)
                    .distinct()
                )
            )
        for pk, refs in new_links.items():
            if refs & elsewhere:
                released.setdefault(pk, collection_pk)
    if not released:
        return next_us
    return _insert(
        db, sorted(released.items()), partner_pk=None, reason="reference", at_us=next_us, step_us=step_us
    )


def release_for_partner(
    db: Session,
    *,
    collection_pk: int,
    partner_pk: int,
    version_pks: Sequence[int],
    from_us: int,
    step_us: int,
) -> int:
    """Release `version_pks` (in that order) to one partner, one step apart from `from_us` on
    (after any release already made for it there); how many."""
    if not version_pks:
        return 0
    last = db.scalar(
        select(func.max(StreamRelease.at_us)).where(
            StreamRelease.collection_pk == collection_pk, StreamRelease.partner_pk == partner_pk
        )
    )
    at = max(from_us, (last or 0) + step_us)
    _insert(
        db,
        [(pk, collection_pk) for pk in version_pks],
        partner_pk=partner_pk,
        reason="agreement",
        at_us=at,
        step_us=step_us,
    )
    return len(version_pks)


def _insert(
    db: Session,
    entries: Sequence[tuple[int, int]],
    *,
    partner_pk: int | None,
    reason: str,
    at_us: int,
    step_us: int,
) -> int:
    """Store (version pk, collection pk) releases one step apart from `at_us`; the next free time."""
    rows = [
        {
            "collection_pk": coll_pk,
            "object_version_pk": pk,
            "partner_pk": partner_pk,
            "at_us": at_us + index * step_us,
            "reason": reason,
        }
        for index, (pk, coll_pk) in enumerate(entries)
    ]
    for start in range(0, len(rows), _CHUNK):
        db.execute(insert(StreamRelease), rows[start : start + _CHUNK])
    return at_us + len(rows) * step_us
