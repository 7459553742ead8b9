"""Agreements: apply (a new version per change), history, diff, export, and grants."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.agreement.models import Agreement, AgreementVersion
from exchange.audit import service as audit
from exchange.errors import BadRequestError, NotFoundError
from exchange.intel.models import Collection
from exchange.partner import service as partner_service
from exchange.partner.models import Partner
from policies.schemas import AgreementDoc, AgreementError, diff_documents, type_warnings, validate_agreement

STATUSES = ("draft", "active", "suspended")
# Validation context of documents read back from storage (see policies.schemas._duration).
STORED = {"stored": True}


@dataclass
class Checked:
    """A document checked without storing it: problems (field, reason) or none, and warnings."""

    valid: bool
    problems: list[tuple[str, str]]
    warnings: list[str]
    document: dict[str, Any] | None


@dataclass
class VersionDiff:
    """Two versions of one agreement: the changed fields and a unified diff of their YAML."""

    partner: str
    from_version: int
    to_version: int
    changes: list[dict[str, Any]]
    unified: str


@dataclass
class Applied:
    partner: str
    version: int
    changed: bool
    changes: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def known_collections(db: Session) -> set[str]:
    """Collection aliases an agreement may name."""
    return set(db.scalars(select(Collection.alias)))


def validate(db: Session, data: Any, *, source: str | None = None) -> AgreementDoc:
    """Check an agreement document against the schema and what exists; raises AgreementError."""
    if not isinstance(data, dict):
        where = f"{source}: " if source else ""
        raise AgreementError([("", f"{where}an agreement must be a mapping of fields")])
    partners = {p.slug for p in partner_service.list_(db)}
    return validate_agreement(
        data, known_collections=known_collections(db), known_partners=partners, source=source
    )


def check(db: Session, data: Any, *, source: str | None = None) -> Checked:
    """Validate a document (as the editor and `agreement preview` do before saving): every
    problem by field, and warnings such as a type name STIX does not define."""
    try:
        doc = validate(db, data, source=source)
    except AgreementError as exc:
        return Checked(False, exc.problems, [], None)
    return Checked(True, [], type_warnings(doc), doc.to_document())


def _current(db: Session, partner: Partner) -> tuple[Agreement, AgreementVersion] | None:
    agreement = db.scalars(select(Agreement).where(Agreement.partner_pk == partner.pk)).first()
    if agreement is None:
        return None
    version = db.scalars(
        select(AgreementVersion).where(
            AgreementVersion.agreement_pk == agreement.pk,
            AgreementVersion.version == agreement.current_version,
        )
    ).one()
    return agreement, version


def apply(db: Session, data: Any, *, actor: str, source: str | None = None) -> Applied:
    """Validate and store an agreement; an unchanged document makes no new version."""
    doc = validate(db, data, source=source)
    partner = partner_service.get_by_slug(db, doc.partner)
    assert partner is not None
    document = doc.to_document()
    found = _current(db, partner)
    old: dict[str, Any] = {}
    if found is None:
        agreement = Agreement(partner_pk=partner.pk, current_version=0)
        db.add(agreement)
        db.flush()
    else:
        agreement, current = found
        old = orjson.loads(current.document)
        if old == document:
            return Applied(partner.slug, current.version, False, [], type_warnings(doc))
    changes = diff_documents(old, document)
    agreement.current_version += 1
    db.add(
        AgreementVersion(
            agreement_pk=agreement.pk,
            version=agreement.current_version,
            status=doc.status,
            valid_from=doc.valid_from,
            valid_until=doc.valid_until,
            document=orjson.dumps(document).decode(),
            created_by=actor,
        )
    )
    db.flush()
    # Imported here: sharing decides visibility from agreements, so it imports this module.
    from exchange.sharing.reveal import release_revealed

    revealed = release_revealed(
        db,
        partner_pk=partner.pk,
        partner_active=partner.status == "active",
        before=AgreementDoc.model_validate(old, context=STORED) if old else None,
        after=doc,
    )
    audit.record(
        db,
        actor=actor,
        action="agreement.apply",
        target=partner.slug,
        details={
            "version": agreement.current_version,
            "changes": changes,
            "source": source,
            "released": revealed,
        },
    )
    db.flush()
    return Applied(partner.slug, agreement.current_version, True, changes, type_warnings(doc))


def set_status(db: Session, slug: str, status: str, *, actor: str) -> Applied:
    """Activate, suspend or return an agreement to draft (a new version)."""
    if status not in STATUSES:
        raise BadRequestError(f"status must be one of {', '.join(STATUSES)}")
    document = current_document(db, slug)
    return apply(db, document | {"status": status}, actor=actor)


def current_document(db: Session, slug: str) -> dict[str, Any]:
    """The partner's current agreement as a document, or NotFoundError."""
    partner = partner_service.get_by_slug(db, slug)
    assert partner is not None
    found = _current(db, partner)
    if found is None:
        raise NotFoundError(f"partner {slug!r} has no agreement")
    document: dict[str, Any] = orjson.loads(found[1].document)
    return document


def history(db: Session, slug: str) -> list[AgreementVersion]:
    """Every version of a partner's agreement, oldest first."""
    partner = partner_service.get_by_slug(db, slug)
    assert partner is not None
    agreement = db.scalars(select(Agreement).where(Agreement.partner_pk == partner.pk)).first()
    if agreement is None:
        raise NotFoundError(f"partner {slug!r} has no agreement")
    return list(
        db.scalars(
            select(AgreementVersion)
            .where(AgreementVersion.agreement_pk == agreement.pk)
            .order_by(AgreementVersion.version)
        )
    )


def diff(db: Session, slug: str, from_version: int, to_version: int) -> list[dict[str, Any]]:
    """What changed between two versions of a partner's agreement."""
    versions = {v.version: v for v in history(db, slug)}
    for number in (from_version, to_version):
        if number not in versions:
            raise NotFoundError(f"agreement of {slug!r} has no version {number}")
    return diff_documents(
        orjson.loads(versions[from_version].document), orjson.loads(versions[to_version].document)
    )


def get_version(db: Session, slug: str, version: int) -> AgreementVersion:
    """One version of a partner's agreement, or NotFoundError."""
    for found in history(db, slug):
        if found.version == version:
            return found
    raise NotFoundError(f"agreement of {slug!r} has no version {version}")


def canonical_yaml(document: dict[str, Any]) -> str:
    """An agreement document as YAML in the schema's field order (what `apply` takes back)."""
    import yaml

    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


def version_diff(db: Session, slug: str, from_version: int, to_version: int) -> VersionDiff:
    """The changed fields and a unified diff of the canonical YAML between two versions."""
    import difflib

    old, new = get_version(db, slug, from_version), get_version(db, slug, to_version)
    old_doc, new_doc = orjson.loads(old.document), orjson.loads(new.document)
    unified = "".join(
        difflib.unified_diff(
            canonical_yaml(old_doc).splitlines(keepends=True),
            canonical_yaml(new_doc).splitlines(keepends=True),
            fromfile=f"{slug} version {from_version}",
            tofile=f"{slug} version {to_version}",
        )
    )
    return VersionDiff(slug, from_version, to_version, diff_documents(old_doc, new_doc), unified)


def export_all(db: Session) -> list[dict[str, Any]]:
    """Every current agreement as a document (the form `apply` takes)."""
    out = []
    for partner in partner_service.list_(db):
        found = _current(db, partner)
        if found is not None:
            out.append(orjson.loads(found[1].document))
    return out


@functools.lru_cache(maxsize=1024)
def parsed(document: str) -> AgreementDoc:
    """A stored agreement document, validated. Stored versions never change and AgreementDoc is
    frozen, so equal texts share one parse: every partner request reads its own agreement and,
    for originator control, every other partner's (a validation each, before this)."""
    return AgreementDoc.model_validate(orjson.loads(document), context=STORED)


def current_doc_for(db: Session, partner_pk: int) -> AgreementDoc | None:
    """The validated current agreement of a partner, or None."""
    row = db.execute(
        select(AgreementVersion.document)
        .join(Agreement, Agreement.pk == AgreementVersion.agreement_pk)
        .where(Agreement.partner_pk == partner_pk, AgreementVersion.version == Agreement.current_version)
    ).first()
    return parsed(row.document) if row else None


def current_docs(db: Session) -> list[tuple[Partner, AgreementDoc | None]]:
    """Every partner with its validated current agreement (None when it has none), by pk."""
    rows = db.execute(
        select(Partner, AgreementVersion.document)
        .join(Agreement, Agreement.partner_pk == Partner.pk, isouter=True)
        .join(
            AgreementVersion,
            (AgreementVersion.agreement_pk == Agreement.pk)
            & (AgreementVersion.version == Agreement.current_version),
            isouter=True,
        )
        .order_by(Partner.pk)
    ).all()
    return [(partner, parsed(document) if document else None) for partner, document in rows]
