"""The policy token: every process keeps a partner's access inputs only while the database's
token is unchanged, and the database renews it itself on every change of those inputs (from any
process, through the API or plain SQL), never on unrelated writes, and not for a rolled-back
change."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from exchange.agreement import service as agreement_service
from exchange.auth.service import Principal
from exchange.database.core import make_session_factory, session_scope
from exchange.intel import service as intel_service
from exchange.intel.models import Collection
from exchange.partner import service as partner_service
from exchange.sharing import access
from tests.support.partners import agreement_doc


def _token(engine) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT token FROM policy_token WHERE pk = 1")).scalar_one())


@pytest.fixture
def setup(engine, settings):  # type: ignore[no-untyped-def]
    factory = make_session_factory(engine)
    slug = f"p-{uuid.uuid4().hex[:8]}"
    alias = f"c-{uuid.uuid4().hex[:8]}"
    with session_scope(factory, write=True) as db:
        root = intel_service.get_api_root(db, settings.api_root)
        assert root is not None
        coll = intel_service.create_collection(db, api_root=root, alias=alias, title="t")
        partner, credential, _ = partner_service.create(db, slug=slug, name="P", country="IN", actor="test")
        agreement_service.apply(
            db, agreement_doc(slug, read={"collections": [alias], "max_tlp": "green"}), actor="test"
        )
        principal = Principal(
            credential_id=credential.id, name="p", role="partner", partner_pk=partner.pk, partner_slug=slug
        )
        coll_pk, partner_pk = coll.pk, partner.pk
    return factory, principal, coll_pk, partner_pk, slug, alias


def _can_read(factory, principal, coll_pk) -> bool:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        found = access.collection_access(db, principal, db.get(Collection, coll_pk))
        return found is not None and found.can_read


_COPY_VERSION = (
    "INSERT INTO agreement_version (agreement_pk, version, status, valid_from, valid_until, document, "
    "created_by, created_at) SELECT agreement_pk, 99, status, valid_from, valid_until, document, created_by, "
    "created_at FROM agreement_version WHERE agreement_pk IN (SELECT pk FROM agreement WHERE partner_pk = :partner)"
)
_OWN_VERSIONS = "agreement_pk IN (SELECT pk FROM agreement WHERE partner_pk = :partner)"

# (what to do first, committed; the change whose commit must renew the token). Each touches only
# this test's own partner and collection, and leaves its agreement whole: the database is shared.
WATCHED_CHANGES = [
    (None, "UPDATE partner SET status = 'suspended' WHERE pk = :partner"),
    (None, "UPDATE partner SET slug = slug || '-x' WHERE pk = :partner"),
    (
        None,
        "UPDATE partner SET identity_id = 'identity--00000000-0000-4000-8000-000000000009' WHERE pk = :partner",
    ),
    (None, "UPDATE collection SET default_tlp = 'clear' WHERE pk = :coll"),
    (None, "UPDATE collection SET alias = alias || '-x' WHERE pk = :coll"),
    (None, "UPDATE agreement SET current_version = current_version WHERE partner_pk = :partner"),
    (None, f"UPDATE agreement_version SET status = status WHERE {_OWN_VERSIONS}"),
    (None, _COPY_VERSION),
    (_COPY_VERSION, f"DELETE FROM agreement_version WHERE version = 99 AND {_OWN_VERSIONS}"),
]


@pytest.mark.parametrize(("first", "change"), WATCHED_CHANGES)
def test_every_change_of_an_access_input_renews_the_token(engine, setup, first, change):  # type: ignore[no-untyped-def]
    _, _, coll_pk, partner_pk, _, _ = setup
    names = {"partner": partner_pk, "coll": coll_pk}
    if first is not None:
        with engine.begin() as conn:
            conn.execute(text(first), names)
    before = _token(engine)
    with engine.begin() as conn:
        conn.execute(text(change), names)
    assert _token(engine) != before


def test_unrelated_writes_and_rolled_back_changes_keep_the_token(engine, setup):  # type: ignore[no-untyped-def]
    _, _, coll_pk, partner_pk, _, _ = setup
    before = _token(engine)
    with engine.begin() as conn:
        # Every ingest bumps the collection's high-water mark: not an input of access.
        conn.execute(
            text("UPDATE collection SET last_date_added_us = last_date_added_us + 1 WHERE pk = :c"),
            {"c": coll_pk},
        )
        conn.execute(text("UPDATE partner SET contact = 'x@example.org' WHERE pk = :p"), {"p": partner_pk})
    assert _token(engine) == before
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(text("UPDATE partner SET status = 'suspended' WHERE pk = :p"), {"p": partner_pk})
        tx.rollback()
    assert _token(engine) == before


def test_a_change_made_elsewhere_applies_to_the_next_request(engine, setup):  # type: ignore[no-untyped-def]
    """The kept inputs are never used past a change another process made with plain SQL."""
    factory, principal, coll_pk, partner_pk, _, alias = setup
    assert _can_read(factory, principal, coll_pk)
    assert _can_read(factory, principal, coll_pk)  # now from the kept inputs
    with engine.begin() as conn:
        conn.execute(text("UPDATE partner SET status = 'suspended' WHERE pk = :p"), {"p": partner_pk})
    assert not _can_read(factory, principal, coll_pk)
    with engine.begin() as conn:
        conn.execute(text("UPDATE partner SET status = 'active' WHERE pk = :p"), {"p": partner_pk})
    assert _can_read(factory, principal, coll_pk)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE collection SET alias = :a WHERE pk = :c"), {"a": alias + "-renamed", "c": coll_pk}
        )
    assert not _can_read(factory, principal, coll_pk)  # the agreement names the old alias
