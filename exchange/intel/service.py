"""API roots and collections."""

from __future__ import annotations

import re
import uuid
from typing import Literal, overload

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.errors import BadRequestError, ConflictError, NotFoundError
from exchange.intel.models import ApiRoot, Collection
from policies.tlp import normalise

_ALIAS = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$")


def ensure_api_root(
    db: Session, *, name: str, title: str, max_content_length: int, description: str = ""
) -> ApiRoot:
    """The API root called `name`, created when missing."""
    root = get_api_root(db, name)
    if root is None:
        if not _ALIAS.match(name):
            raise BadRequestError(f"API root name {name!r} must be lowercase letters, digits, '-'")
        root = ApiRoot(name=name, title=title, description=description, max_content_length=max_content_length)
        db.add(root)
        db.flush()
    return root


def get_api_root(db: Session, name: str) -> ApiRoot | None:
    """The API root called `name`, or None."""
    return db.scalars(select(ApiRoot).where(ApiRoot.name == name)).first()


def list_api_roots(db: Session) -> list[ApiRoot]:
    """Every API root, by name."""
    return list(db.scalars(select(ApiRoot).order_by(ApiRoot.name)))


def create_collection(
    db: Session,
    *,
    api_root: ApiRoot,
    alias: str,
    title: str,
    description: str = "",
    default_tlp: str = "amber",
) -> Collection:
    """A new collection with a random UUIDv4 id and a human alias unique in its API root."""
    if not _ALIAS.match(alias):
        raise BadRequestError(f"collection alias {alias!r} must be 2-64 lowercase letters, digits or '-'")
    try:
        default_tlp = normalise(default_tlp)
    except ValueError as exc:
        raise BadRequestError(f"default TLP: {exc}") from None
    if get_collection(db, api_root_pk=api_root.pk, ref=alias, missing_ok=True):
        raise ConflictError(f"a collection {alias!r} already exists in {api_root.name!r}")
    collection = Collection(
        id=str(uuid.uuid4()),
        api_root_pk=api_root.pk,
        alias=alias,
        title=title or alias,
        description=description,
        default_tlp=default_tlp,
        last_date_added_us=0,
    )
    db.add(collection)
    db.flush()
    return collection


@overload
def get_collection(
    db: Session, *, api_root_pk: int, ref: str, missing_ok: Literal[False] = False
) -> Collection: ...
@overload
def get_collection(db: Session, *, api_root_pk: int, ref: str, missing_ok: bool) -> Collection | None: ...
def get_collection(db: Session, *, api_root_pk: int, ref: str, missing_ok: bool = False) -> Collection | None:
    """A collection of this API root by id or alias."""
    found = db.scalars(
        select(Collection).where(
            Collection.api_root_pk == api_root_pk,
            (Collection.id == ref) | (Collection.alias == ref),
        )
    ).first()
    if found is None and not missing_ok:
        raise NotFoundError(f"no collection {ref!r}")
    return found


def list_collections(db: Session, *, api_root_pk: int) -> list[Collection]:
    """The collections of an API root, oldest first."""
    return list(
        db.scalars(
            select(Collection)
            .where(Collection.api_root_pk == api_root_pk)
            .order_by(Collection.created_at, Collection.pk)
        )
    )
