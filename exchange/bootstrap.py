"""First-run set-up: schema, the default API root and collections, the first admin key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.auth.models import Credential
from exchange.config import Settings
from exchange.intel import service
from exchange.intel.models import ApiRoot
from exchange.signing import KeyRing, default_directory

DEFAULT_COLLECTIONS = (
    ("indicators", "Indicators", "Indicators of compromise published by the national CERT", "amber"),
    ("incidents", "Incidents", "Incidents and their context published by the national CERT", "amber"),
    (
        "partner-submissions",
        "Partner submissions",
        "Findings partners share back with the national CERT",
        "amber",
    ),
)


@dataclass
class InitResult:
    api_root: ApiRoot
    admin_id: str | None
    admin_key: str | None  # only on the run that created it


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema."""
    # Imported here: Alembic costs a good part of a second, and only the commands that migrate need it.
    from exchange.database.migrate import upgrade

    upgrade(engine)


def initialise(db: Session, settings: Settings) -> InitResult:
    """Idempotent: creates only what is missing; the admin key is returned once."""
    KeyRing(default_directory(settings)).ensure()
    # The secret keys cursors and deterministic ids: every later command of this exchange needs it.
    settings.ensure_secret()
    root = service.ensure_api_root(
        db,
        name=settings.api_root,
        title="National CERT exchange",
        description="Cyber incident information shared under bilateral agreements",
        max_content_length=settings.max_content_length,
    )
    for alias, title, description, tlp in DEFAULT_COLLECTIONS:
        if service.get_collection(db, api_root_pk=root.pk, ref=alias, missing_ok=True) is None:
            coll = service.create_collection(
                db, api_root=root, alias=alias, title=title, description=description, default_tlp=tlp
            )
            audit.record(
                db,
                actor="init",
                action="collection.create",
                target=alias,
                details={"id": coll.id, "default_tlp": tlp},
            )
    admin = db.scalars(
        select(Credential).where(Credential.role == "admin").order_by(Credential.created_at)
    ).first()
    if admin is not None:
        return InitResult(api_root=root, admin_id=admin.id, admin_key=None)
    credential, key = auth_service.create_credential(db, name="first administrator", role="admin")
    audit.record(
        db,
        actor="init",
        action="user.create",
        target=credential.id,
        details={"name": credential.name, "role": "admin"},
    )
    return InitResult(api_root=root, admin_id=credential.id, admin_key=key)
