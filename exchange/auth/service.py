"""Credentials and the callers they authenticate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.auth.keys import VerifiedKeyCache, dummy_check, hash_key, new_credential_id, new_key
from exchange.auth.models import Credential
from exchange.auth.roles import INTERNAL_ROLES
from exchange.database.types import utcnow
from exchange.errors import BadRequestError, NotFoundError
from exchange.partner.models import Partner

ROLES = ("admin", "analyst", "partner")


class Caller(Protocol):
    """Anyone access is decided for: a request's principal, or an outbound recipient."""

    @property
    def is_internal(self) -> bool: ...

    @property
    def partner_pk(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one credential and its role."""

    credential_id: str
    name: str
    role: str
    partner_pk: int | None = None
    partner_slug: str | None = None

    @property
    def is_internal(self) -> bool:
        return self.role in INTERNAL_ROLES


def create_credential(
    db: Session,
    *,
    name: str,
    role: str,
    expires_at: datetime | None = None,
    partner_pk: int | None = None,
) -> tuple[Credential, str]:
    """Create a credential; returns it with its key, which is never stored in clear."""
    if role not in ROLES:
        raise BadRequestError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if (role == "partner") != (partner_pk is not None):
        raise BadRequestError("partner credentials, and only they, belong to a partner")
    if not name.strip():
        raise BadRequestError("a credential needs a name")
    credential_id = new_credential_id()
    key = new_key(credential_id)
    credential = Credential(
        id=credential_id,
        name=name,
        role=role,
        key_hash=hash_key(key),
        expires_at=expires_at,
        partner_pk=partner_pk,
    )
    db.add(credential)
    db.flush()
    return credential, key


def get(db: Session, credential_id: str) -> Credential:
    """The credential with this id, or NotFoundError."""
    credential = db.get(Credential, credential_id)
    if credential is None:
        raise NotFoundError(f"no credential {credential_id!r}")
    return credential


def list_(db: Session, *, role: str | None = None) -> list[Credential]:
    """Credentials, oldest first, optionally of one role."""
    query = select(Credential).order_by(Credential.created_at)
    if role:
        query = query.where(Credential.role == role)
    return list(db.scalars(query))


def revoke(
    db: Session, credential_id: str, *, actor: str = "system", cache: VerifiedKeyCache | None = None
) -> Credential:
    """Revoke a credential at once."""
    credential = get(db, credential_id)
    if credential.revoked_at is None:
        credential.revoked_at = utcnow()
        audit.record(
            db,
            actor=actor,
            action="credential.revoke",
            target=credential_id,
            details={"role": credential.role, "name": credential.name},
        )
    if cache is not None:
        cache.forget(credential_id)
    db.flush()
    return credential


def authenticate(
    db: Session,
    credential_id: str,
    key: str,
    *,
    cache: VerifiedKeyCache,
    certificate: str | None = None,
) -> Principal | None:
    """The caller for this id and key, or None when unknown, wrong, revoked or expired.

    Every refusal after the length check costs one slow hash, so the time taken does not tell
    whether a credential id exists, is revoked or has expired. `certificate` is the fingerprint
    of the client certificate a trusted proxy verified: a credential bound to a certificate is
    refused without that one, and a key never signs in beside another credential's certificate.
    """
    if not credential_id or not key or len(credential_id) > 64 or len(key) > 512:
        return None
    if "\x00" in credential_id or "\x00" in key:  # no credential holds one; PostgreSQL cannot compare it
        return None
    # The credential and its partner's slug and status in one query (partners pull page after
    # page; each request authenticates).
    found = db.execute(
        select(Credential, Partner.slug, Partner.status)
        .outerjoin(Partner, Partner.pk == Credential.partner_pk)
        .where(Credential.id == credential_id)
    ).first()
    credential, holder = (found[0], (found.slug, found.status)) if found is not None else (None, None)
    if credential is None:
        # DESIGN: the Basic user name may be the partner's slug; the key names its credential.
        credential = _partner_credential(db, credential_id, key)
    if credential is None:
        dummy_check(key)
        return None
    if not cache.matches(credential.id, key, credential.key_hash):
        return None
    if credential.cert_sha256 is not None and credential.cert_sha256 != certificate:
        return None
    if credential.cert_sha256 is None and certificate is not None and find_by_certificate(db, certificate):
        return None
    return _principal(db, credential, holder)


def authenticate_certificate(db: Session, certificate: str) -> Principal | None:
    """The caller whose credential is bound to this (proxy-verified) certificate fingerprint."""
    credential = find_by_certificate(db, certificate)
    return _principal(db, credential) if credential is not None else None


def find_by_certificate(db: Session, certificate: str) -> Credential | None:
    """The credential bound to this certificate fingerprint, if any."""
    return db.scalars(select(Credential).where(Credential.cert_sha256 == certificate)).first()


def bind_certificate(db: Session, credential_id: str, certificate: str | None, *, actor: str) -> Credential:
    """Bind a partner credential to a client certificate fingerprint (None: unbind); audited."""
    credential = get(db, credential_id)
    if credential.role != "partner":
        raise BadRequestError("only partner credentials are bound to client certificates")
    if certificate is not None:
        holder = find_by_certificate(db, certificate)
        if holder is not None and holder.id != credential.id:
            raise BadRequestError(f"that certificate is already bound to credential {holder.id}")
    credential.cert_sha256 = certificate
    audit.record(
        db,
        actor=actor,
        action="credential.bind_certificate" if certificate else "credential.unbind_certificate",
        target=credential.id,
        details={"sha256": certificate},
    )
    db.flush()
    return credential


def _principal(
    db: Session, credential: Credential, holder: tuple[str | None, str | None] | None = None
) -> Principal | None:
    """The caller `credential` makes, or None; `holder` is its partner's (slug, status) when the
    caller already read them with the credential ((None, None): no such partner)."""
    if credential.revoked_at is not None:
        return None
    if credential.expires_at is not None and credential.expires_at <= utcnow():
        return None
    slug = None
    if credential.partner_pk is not None:
        if holder is None:
            partner = db.get(Partner, credential.partner_pk)
            holder = (partner.slug, partner.status) if partner is not None else (None, None)
        slug, status = holder
        if slug is None or status != "active":
            return None
    return Principal(
        credential_id=credential.id,
        name=credential.name,
        role=credential.role,
        partner_pk=credential.partner_pk,
        partner_slug=slug,
    )


def failure_actor(db: Session, given: str) -> str:
    """What a failed login is recorded as: the credential id or partner slug it named, when one
    exists, else "unknown". A presented name may be a pasted secret, so nothing else of it is kept."""
    name = given.partition(".")[0]
    if not name or len(name) > 64 or "\x00" in name:  # PostgreSQL cannot even compare a NUL
        return "unknown"
    if db.get(Credential, name) is not None:
        return name
    if db.scalars(select(Partner.slug).where(Partner.slug == name)).first() is not None:
        return name
    return "unknown"


def _partner_credential(db: Session, slug: str, key: str) -> Credential | None:
    owner = db.scalars(select(Partner).where(Partner.slug == slug)).first()
    if owner is None:
        return None
    credential = db.get(Credential, key.partition(".")[0])
    return credential if credential is not None and credential.partner_pk == owner.pk else None
