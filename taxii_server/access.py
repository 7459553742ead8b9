"""Who may see and write which collection. One place, checked before storage.

Internal staff (admin, analyst) read and write every collection. Partner callers get only
what an agreement grants; until agreements exist a partner is granted nothing (fail closed).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from exchange.auth.service import Principal
from exchange.intel.models import Collection


@dataclass(frozen=True)
class CollectionAccess:
    can_read: bool
    can_write: bool
    # Extra SQL predicates that restrict what the caller may read (sharing policy).
    predicates: Sequence[ColumnElement[bool]] = field(default_factory=tuple)


def collection_access(
    db: Session, principal: Principal, collection: Collection
) -> CollectionAccess | None:
    """The caller's access to `collection`, or None when it must not even know it exists."""
    if principal.is_internal:
        return CollectionAccess(can_read=True, can_write=True)
    return None


def may_delete(principal: Principal) -> bool:
    """Deleting stored evidence is for internal staff only."""
    return principal.is_internal
