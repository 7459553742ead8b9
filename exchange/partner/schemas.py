"""Request and response bodies for partners and credentials."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from exchange.database.types import to_utc

# A time without a zone names no moment; one whose UTC time is past 9999 cannot be stored.
UtcMoment = Annotated[AwareDatetime, AfterValidator(to_utc)]


class PartnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(examples=["cert-in"])
    name: str = Field(examples=["CERT-In"])
    country: str = Field(examples=["IN"])
    contact: str = ""
    identity_id: str | None = None


class PartnerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "suspended"]


class PartnerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    slug: str
    name: str
    country: str
    contact: str
    identity_id: str | None
    status: str
    has_push_auth: bool = False
    created_at: datetime


class CredentialCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    expires_at: UtcMoment | None = None


class CredentialRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    # The client certificate it is bound to (SHA-256 hex), if any.
    cert_sha256: str | None = None


class CertificateBinding(BaseModel):
    """A partner credential's client certificate: the PEM, or its SHA-256 fingerprint."""

    model_config = ConfigDict(extra="forbid")
    certificate_pem: str | None = Field(None, max_length=16_384)
    sha256: str | None = Field(None, max_length=200, description="hex, colons allowed")

    @model_validator(mode="after")
    def _one(self) -> CertificateBinding:
        if (self.certificate_pem is None) == (self.sha256 is None):
            raise ValueError("give certificate_pem or sha256, not both")
        return self


class CredentialCreated(BaseModel):
    """The key is shown only in this response."""

    id: str
    key: str


class PartnerCreated(BaseModel):
    partner: PartnerRead
    credential_id: str
    key: str


class PublicKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jwk: dict[str, Any]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    role: Literal["admin", "analyst"]
    expires_at: UtcMoment | None = None
