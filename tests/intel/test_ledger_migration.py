"""Migrations 0013_ledger and 0015_delivery. 0013_ledger: the ledger's index on the STIX id goes, and versions deleted before it
are kept in deleted_version from the ledger rows that served them, so who received them stays
answerable through the version pk; the ledger's foreign key to partner becomes a trigger that
keeps a partner the ledger names from being deleted. 0015_delivery: the ledger's rows of one
delivery become one delivery row and one narrow row per version, and back."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from exchange.database.core import make_engine, make_session_factory
from exchange.database.migrate import alembic_config, upgrade
from exchange.disclosure import service as disclosure
from tests.support.databases import seed_collection, seed_partner

KEPT = "indicator--00000000-0000-4000-8000-000000000001"
GONE = "indicator--00000000-0000-4000-8000-000000000002"
OTHER = "indicator--00000000-0000-4000-8000-000000000003"
REUSED = "indicator--00000000-0000-4000-8000-000000000004"


def test_0013_keeps_deleted_versions_the_ledger_names_and_drops_the_stix_id_index(empty_database):
    engine = make_engine(empty_database)
    try:
        upgrade(engine, "0012_peer")
        with engine.begin() as conn:
            seed_partner(conn, 7, "cert-x")
            seed_collection(conn)
            conn.execute(
                text(
                    "INSERT INTO object_version (pk, collection_pk, stix_id, type, spec_version, version, "
                    "version_text, date_added_us, revoked, is_latest, is_first, origin, added_by, body) "
                    "VALUES (1, 1, :s, 'indicator', '2.1', 'v1', 'v1', 10, false, true, true, 'analyst', "
                    "'staff', '{}')"
                ),
                {"s": KEPT},
            )
            # Version pk 2 (of GONE) was served twice, then deleted: only the ledger remembers it.
            conn.execute(
                text(
                    "INSERT INTO disclosure (object_version_pk, stix_id, version, collection_pk, partner_pk, "
                    "credential_id, requested_by, channel, at_us) VALUES (:pk, :s, 'v1', 1, 7, 'cred-x', "
                    "'cred-x', 'taxii', :at)"
                ),
                [
                    {"pk": 1, "s": KEPT, "at": 100},
                    {"pk": 2, "s": GONE, "at": 100},
                    {"pk": 2, "s": GONE, "at": 200},
                ],
            )
        upgrade(engine, "0014_policy_token")
        with engine.connect() as conn:
            kept = conn.execute(
                text("SELECT pk, collection_pk, stix_id, version_text FROM deleted_version")
            ).all()
        assert [tuple(r) for r in kept] == [(2, 1, GONE, "v1")]
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("disclosure")}
        assert "ix_disclosure_object" not in indexes
        assert {"ix_disclosure_partner", "ix_disclosure_version_recipient"} <= indexes
        assert inspect(engine).get_foreign_keys("disclosure") == []
        # The foreign key's one duty, kept by a trigger: a partner the ledger names stays.
        with pytest.raises(DBAPIError, match="suspend it instead"), engine.begin() as conn:
            conn.execute(text("DELETE FROM partner WHERE pk = 7"))
        with engine.begin() as conn:
            seed_partner(conn, 8, "cert-y")
            assert conn.execute(text("DELETE FROM partner WHERE pk = 8")).rowcount == 1
        upgrade(engine, "head")
        with make_session_factory(engine)() as db:
            gone = disclosure.recipients(db, GONE)
            still = disclosure.recipients(db, KEPT)
        assert [(r["partner"], r["version"], r["times"]) for r in gone["received"]] == [("cert-x", "v1", 2)]
        assert [(r["partner"], r["version"], r["times"]) for r in still["received"]] == [("cert-x", "v1", 1)]
    finally:
        engine.dispose()


def _old_ledger_row(conn, **row) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        text(
            "INSERT INTO disclosure (object_version_pk, stix_id, version, collection_pk, partner_pk, "
            "credential_id, requested_by, channel, at_us) VALUES (:pk, :s, :v, 1, :partner, :cred, "
            ":by, :channel, :at)"
        ),
        row,
    )


def _version(conn, pk: int, stix_id: str) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        text(
            "INSERT INTO object_version (pk, collection_pk, stix_id, type, spec_version, version, "
            "version_text, date_added_us, revoked, is_latest, is_first, origin, added_by, body) "
            "VALUES (:pk, 1, :s, 'indicator', '2.1', 'v1', 'v1', :at, false, true, true, 'analyst', "
            "'staff', '{}')"
        ),
        {"pk": pk, "s": stix_id, "at": 10 * pk},
    )


_FIELDS = ("pk", "s", "v", "partner", "cred", "by", "channel", "at")
OLD_ROWS = [
    dict(zip(_FIELDS, row, strict=True))
    for row in (
        # A TAXII page of two versions for cred-x; at the same moment, a page of one for another
        # partner's cred-y; an export to cert-x; a push of a version deleted before
        # deleted_version existed (only the ledger says what it was).
        (1, KEPT, "v1", 7, "cred-x", "cred-x", "taxii", 100),
        (3, OTHER, "v1", 7, "cred-x", "cred-x", "taxii", 100),
        (3, OTHER, "v1", 8, "cred-y", "cred-y", "taxii", 100),
        (1, KEPT, "v1", 7, None, "analyst", "export", 150),
        (9, GONE, "v0", 7, None, "scheduler", "push", 200),
        # A row whose pk SQLite has since given to another version (KEPT): pk alone cannot name it.
        (1, REUSED, "v9", 7, None, "scheduler", "push", 300),
    )
]


def test_0015_makes_one_delivery_per_page_and_keeps_every_row_and_back(empty_database):
    engine = make_engine(empty_database)
    try:
        upgrade(engine, "0014_policy_token")
        with engine.begin() as conn:
            seed_partner(conn, 7, "cert-x")
            seed_partner(conn, 8, "cert-y")
            seed_collection(conn)
            _version(conn, 1, KEPT)
            _version(conn, 3, OTHER)
            for row in OLD_ROWS:
                _old_ledger_row(conn, **row)
        upgrade(engine, "head")
        with engine.connect() as conn:
            deliveries = conn.execute(
                text(
                    "SELECT pk, collection_pk, partner_pk, credential_id, requested_by, channel, at_us, "
                    "objects FROM delivery ORDER BY pk"
                )
            ).all()
            rows = conn.execute(
                text(
                    "SELECT delivery_pk, object_version_pk FROM disclosure ORDER BY delivery_pk, object_version_pk"
                )
            ).all()
            deleted = conn.execute(text("SELECT pk, stix_id, version_text FROM deleted_version")).all()
        # Two pages at the same moment, for two partners, stay two deliveries.
        assert [tuple(d)[1:] for d in deliveries] == [
            (1, 7, "cred-x", "cred-x", "taxii", 100, 2),
            (1, 8, "cred-y", "cred-y", "taxii", 100, 1),
            (1, 7, None, "analyst", "export", 150, 1),
            (1, 7, None, "scheduler", "push", 200, 1),
            (1, 7, None, "scheduler", "push", 300, 1),
        ]
        taxii, other, export, push, _ = (d.pk for d in deliveries)
        assert [tuple(r) for r in rows] == [(taxii, 1), (taxii, 3), (other, 3), (export, 1), (push, 9)]
        assert [tuple(r) for r in deleted] == [(9, GONE, "v0")]
        with engine.connect() as conn:
            unresolved = conn.execute(
                text("SELECT object_version_pk, stix_id, version FROM disclosure_unresolved")
            ).all()
        assert [tuple(r) for r in unresolved] == [(1, REUSED, "v9")]
        assert {ix["name"] for ix in inspect(engine).get_indexes("disclosure")} == {
            "ix_disclosure_version",
            "ix_disclosure_delivery",
        }
        with pytest.raises(DBAPIError, match="suspend it instead"), engine.begin() as conn:
            conn.execute(text("DELETE FROM partner WHERE pk = 7"))
        with make_session_factory(engine)() as db:
            kept = disclosure.recipients(db, KEPT)["received"]
            gone = disclosure.recipients(db, GONE)["received"]
        assert sorted((r["channel"], r["credential_id"], r["requested_by"]) for r in kept) == [
            ("export", None, "analyst"),
            ("taxii", "cred-x", "cred-x"),
        ]
        assert [(r["channel"], r["version"]) for r in gone] == [("push", "v0")]
        # New deliveries number on from the migrated ones (PostgreSQL's sequence was moved on).
        with make_session_factory(engine)() as db:
            disclosure.record_versions(
                db,
                partner_pk=7,
                credential_id="cred-x",
                requested_by="cred-x",
                object_version_pks=[1],
                collection_pk=1,
                channel="taxii",
            )
            db.commit()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT MAX(pk) FROM delivery")).scalar() == push + 2
            conn.execute(text("DELETE FROM disclosure WHERE delivery_pk = :d"), {"d": push + 2})
            conn.execute(text("DELETE FROM delivery WHERE pk = :d"), {"d": push + 2})
            conn.commit()

        command.downgrade(alembic_config(engine), "0014_policy_token")
        with engine.connect() as conn:
            back = conn.execute(
                text(
                    "SELECT object_version_pk, stix_id, version, partner_pk, credential_id, requested_by, "
                    "channel, at_us FROM disclosure ORDER BY at_us, object_version_pk, partner_pk"
                )
            ).all()
        assert [tuple(r) for r in back] == [
            (r["pk"], r["s"], r["v"], r["partner"], r["cred"], r["by"], r["channel"], r["at"])
            for r in OLD_ROWS
        ]
        with pytest.raises(DBAPIError, match="suspend it instead"), engine.begin() as conn:
            conn.execute(text("DELETE FROM partner WHERE pk = 7"))
    finally:
        engine.dispose()
