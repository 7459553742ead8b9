"""/api/v1/partners, /api/v1/users, /api/v1/credentials (administrators only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from exchange.auth import service as auth_service
from exchange.auth.deps import AdminUser, DbSession, require_admin
from exchange.context import KeyCacheDep, StrictJsonRoute
from exchange.errors import BadRequestError
from exchange.partner import service
from exchange.partner.schemas import (
    CertificateBinding,
    CredentialCreate,
    CredentialCreated,
    CredentialRead,
    PartnerCreate,
    PartnerCreated,
    PartnerRead,
    PartnerUpdate,
    PublicKeyIn,
    UserCreate,
)

router = APIRouter(
    prefix="/api/v1",
    tags=["partners and credentials"],
    dependencies=[Depends(require_admin)],
    route_class=StrictJsonRoute,
)


@router.post("/partners", status_code=201, response_model=PartnerCreated)
def create_partner(body: PartnerCreate, db: DbSession, user: AdminUser) -> PartnerCreated:
    """Add a partner; its first credential's key is in this response only."""
    partner, credential, key = service.create(db, actor=user.credential_id, **body.model_dump())
    return PartnerCreated(partner=PartnerRead.model_validate(partner), credential_id=credential.id, key=key)


@router.get("/partners", response_model=list[PartnerRead])
def list_partners(db: DbSession) -> list[PartnerRead]:
    return [PartnerRead.model_validate(p) for p in service.list_(db)]


@router.get("/partners/{slug}", response_model=PartnerRead)
def get_partner(slug: str, db: DbSession) -> PartnerRead:
    return PartnerRead.model_validate(service.get_by_slug(db, slug))


@router.patch("/partners/{slug}", response_model=PartnerRead)
def update_partner(slug: str, body: PartnerUpdate, db: DbSession, user: AdminUser) -> PartnerRead:
    """Suspend (grants nothing, its credentials stop working) or reactivate a partner."""
    return PartnerRead.model_validate(service.set_status(db, slug, body.status, actor=user.credential_id))


@router.post("/partners/{slug}/keys", response_model=PartnerRead)
def add_key(slug: str, body: PublicKeyIn, db: DbSession, user: AdminUser) -> PartnerRead:
    """Register a partner's Ed25519 public JWK for signed submissions."""
    return PartnerRead.model_validate(service.add_public_key(db, slug, body.jwk, actor=user.credential_id))


@router.post("/partners/{slug}/credentials", status_code=201, response_model=CredentialCreated)
def create_credential(slug: str, body: CredentialCreate, db: DbSession, user: AdminUser) -> CredentialCreated:
    partner = service.get_by_slug(db, slug)
    credential, key = service.create_credential(
        db,
        partner=partner,
        actor=user.credential_id,
        name=body.name,
        expires_at=body.expires_at,
    )
    return CredentialCreated(id=credential.id, key=key)


@router.get("/partners/{slug}/credentials", response_model=list[CredentialRead])
def list_credentials(slug: str, db: DbSession) -> list[CredentialRead]:
    partner = service.get_by_slug(db, slug)
    return [CredentialRead.model_validate(c) for c in service.credentials(db, partner)]


@router.post("/users", status_code=201, response_model=CredentialCreated)
def create_user(body: UserCreate, db: DbSession, user: AdminUser) -> CredentialCreated:
    """An internal (admin or analyst) credential; the key is in this response only."""
    credential, key = auth_service.create_credential(
        db, name=body.name, role=body.role, expires_at=body.expires_at
    )
    from exchange.audit import service as audit

    audit.record(
        db,
        actor=user.credential_id,
        action="user.create",
        target=credential.id,
        details={"name": body.name, "role": body.role},
    )
    return CredentialCreated(id=credential.id, key=key)


@router.put("/credentials/{credential_id}/certificate", response_model=CredentialRead)
def bind_certificate(
    credential_id: str, body: CertificateBinding, db: DbSession, user: AdminUser
) -> CredentialRead:
    """Bind a partner credential to its client certificate: it then signs in through the TLS
    proxy with the certificate alone, and its key is refused without it."""
    from exchange.auth import certs

    try:
        if body.certificate_pem is not None:
            fingerprint = certs.fingerprint(body.certificate_pem)
        else:
            fingerprint = certs.normalise_fingerprint(body.sha256 or "")
    except ValueError as exc:
        raise BadRequestError(f"certificate: {exc}") from None
    credential = auth_service.bind_certificate(db, credential_id, fingerprint, actor=user.credential_id)
    return CredentialRead.model_validate(credential)


@router.delete("/credentials/{credential_id}/certificate", response_model=CredentialRead)
def unbind_certificate(credential_id: str, db: DbSession, user: AdminUser) -> CredentialRead:
    """Remove a credential's client certificate binding (its key works alone again)."""
    credential = auth_service.bind_certificate(db, credential_id, None, actor=user.credential_id)
    return CredentialRead.model_validate(credential)


@router.post("/credentials/{credential_id}/revoke", response_model=CredentialRead)
def revoke_credential(
    credential_id: str, cache: KeyCacheDep, db: DbSession, user: AdminUser
) -> CredentialRead:
    credential = auth_service.revoke(db, credential_id, actor=user.credential_id, cache=cache)
    return CredentialRead.model_validate(credential)
