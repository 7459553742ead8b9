"""Partner organisations and their credentials."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, overload

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.auth.models import Credential
from exchange.errors import BadRequestError, ConflictError, NotFoundError
from exchange.partner.models import Partner

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from policies.engine import Writer

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
STATUSES = ("active", "suspended")
_IDENTITY = re.compile(r"^identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def create(
    db: Session,
    *,
    slug: str,
    name: str,
    country: str,
    contact: str = "",
    identity_id: str | None = None,
    actor: str,
) -> tuple[Partner, Credential, str]:
    """A new partner with its first credential; returns the key, shown only once."""
    if not SLUG.match(slug):
        raise BadRequestError(f"partner slug {slug!r} must be 3-64 lowercase letters, digits or '-'")
    country = country.upper()
    if not COUNTRY.match(country):
        raise BadRequestError(f"country {country!r} must be an ISO 3166-1 alpha-2 code such as IN")
    if not name.strip():
        raise BadRequestError("a partner needs a name")
    if identity_id is not None and not _IDENTITY.match(identity_id):
        raise BadRequestError(f"identity {identity_id!r} is not a STIX identity id")
    if get_by_slug(db, slug, missing_ok=True) is not None:
        raise ConflictError(f"a partner {slug!r} already exists")
    partner = Partner(
        slug=slug,
        name=name,
        country=country,
        contact=contact,
        identity_id=identity_id,
        status="active",
        public_keys="[]",
    )
    db.add(partner)
    db.flush()
    credential, key = create_credential(db, partner=partner, actor=actor, name=f"{slug} (first)")
    audit.record(
        db,
        actor=actor,
        action="partner.create",
        target=slug,
        details={"name": name, "country": country, "contact": contact, "identity_id": identity_id},
    )
    return partner, credential, key


@overload
def get_by_slug(db: Session, slug: str, *, missing_ok: Literal[False] = False) -> Partner: ...
@overload
def get_by_slug(db: Session, slug: str, *, missing_ok: bool) -> Partner | None: ...
def get_by_slug(db: Session, slug: str, *, missing_ok: bool = False) -> Partner | None:
    """The partner called `slug`."""
    partner = db.scalars(select(Partner).where(Partner.slug == slug)).first()
    if partner is None and not missing_ok:
        raise NotFoundError(f"no partner {slug!r}")
    return partner


def list_(db: Session) -> list[Partner]:
    """Every partner, by slug."""
    return list(db.scalars(select(Partner).order_by(Partner.slug)))


def set_status(db: Session, slug: str, status: str, *, actor: str) -> Partner:
    """Suspend or reactivate a partner; a suspended partner is granted nothing."""
    if status not in STATUSES:
        raise BadRequestError(f"status must be one of {', '.join(STATUSES)}")
    partner = get_by_slug(db, slug)
    assert partner is not None
    if partner.status != status:
        audit.record(
            db,
            actor=actor,
            action=f"partner.{'suspend' if status == 'suspended' else 'activate'}",
            target=slug,
            details={"from": partner.status, "to": status},
        )
        partner.status = status
        db.flush()
    return partner


def create_credential(
    db: Session, *, partner: Partner, actor: str, name: str | None = None, expires_at: datetime | None = None
) -> tuple[Credential, str]:
    """Another credential for a partner (one per system); the key is returned once."""
    credential, key = auth_service.create_credential(
        db,
        name=name or f"{partner.slug} credential",
        role="partner",
        expires_at=expires_at,
        partner_pk=partner.pk,
    )
    audit.record(
        db,
        actor=actor,
        action="credential.create",
        target=credential.id,
        details={"partner": partner.slug, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return credential, key


def credentials(db: Session, partner: Partner) -> list[Credential]:
    """A partner's credentials, oldest first."""
    return list(
        db.scalars(
            select(Credential).where(Credential.partner_pk == partner.pk).order_by(Credential.created_at)
        )
    )


def credential_ids(db: Session, partner_pk: int) -> tuple[str, ...]:
    """Every credential id the partner ever held (revoked ones too: what they stored stays theirs)."""
    return tuple(
        db.scalars(select(Credential.id).where(Credential.partner_pk == partner_pk).order_by(Credential.id))
    )


def writer(db: Session, partner: Partner) -> Writer:
    """The partner as a writer of objects: its STIX identity and every credential it ever held."""
    from policies.engine import Writer  # the policy engine is not needed to list partners (CLI start-up)

    return Writer(
        kind="partner",
        name=partner.slug,
        identity=partner.identity_id,
        added_by=frozenset(credential_ids(db, partner.pk)),
    )


def add_public_key(db: Session, slug: str, jwk: dict[str, Any], *, actor: str) -> Partner:
    """Register a public signing key (an Ed25519 JWK) for a partner's submissions."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "x" not in jwk:
        raise BadRequestError(
            'a partner key must be an Ed25519 public JWK: {"kty": "OKP", "crv": "Ed25519", "x": ...}'
        )
    if "d" in jwk:
        raise BadRequestError("that JWK holds a private key; register only the public part")
    problem = _key_problem(jwk)
    if problem is not None:
        raise BadRequestError(f"jwk.{problem}")
    partner = get_by_slug(db, slug)
    assert partner is not None
    keys = orjson.loads(partner.public_keys)
    # A signature names its key by kid, and the first key of that kid checks it: a second one
    # would never verify anything (a rotation registering the new key under the old kid).
    kid = _kid_of(jwk)
    if any(isinstance(k, dict) and _kid_of(k) == kid for k in keys):
        raise ConflictError(
            f"partner {slug!r} already has a key with kid {kid!r}; give the new key another kid, "
            "or remove the old key first"
        )
    keys.append({k: jwk[k] for k in ("kty", "crv", "x", "kid") if k in jwk})
    partner.public_keys = orjson.dumps(keys).decode()
    audit.record(db, actor=actor, action="partner.key.add", target=slug, details={"kid": jwk.get("kid")})
    db.flush()
    return partner


def _key_problem(jwk: dict[str, Any]) -> str | None:
    """What makes a stored or offered partner JWK unusable ("x must be ..."), or None."""
    from exchange.signing.keys import ed25519_public_key

    try:
        ed25519_public_key(jwk.get("x"))
    except ValueError as exc:
        return str(exc)
    kid = jwk.get("kid")
    if kid is not None and not (isinstance(kid, str) and 0 < len(kid) <= 200 and kid.isprintable()):
        return "kid must be text of 1-200 printable characters"
    return None


def _kid_of(jwk: dict[str, Any]) -> Any:
    """The kid a registered key answers to: its own, else its RFC 7638 thumbprint (as `jwks`)."""
    from exchange.signing.keys import thumbprint

    kid = jwk.get("kid")
    if kid:
        return kid
    x = jwk.get("x")
    return thumbprint(x) if isinstance(x, str) and x.isascii() else None


def jwks(partner: Partner) -> dict[str, list[dict[str, str]]]:
    """The partner's registered public keys as a JWKS (kid = RFC 7638 thumbprint when unset).
    A malformed key an older release stored is left out (and logged), as if not registered."""
    from exchange.signing.keys import public_jwk

    keys = []
    for index, k in enumerate(orjson.loads(partner.public_keys)):
        problem = _key_problem(k) if isinstance(k, dict) else "not a JWK object"
        if problem is not None:
            log.warning("partner %s: stored public key %d ignored: %s", partner.slug, index, problem)
            continue
        keys.append(public_jwk(_kid_of(k), k["x"]))
    return {"keys": keys}
