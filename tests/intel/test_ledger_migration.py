"""Migration 0013_ledger: the ledger's index on the STIX id goes, and versions deleted before it
are kept in deleted_version from the ledger rows that served them, so who received them stays
answerable through the version pk; the ledger's foreign key to partner becomes a trigger that
keeps a partner the ledger names from being deleted."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from exchange.database.core import make_engine, make_session_factory
from exchange.database.migrate import upgrade
from exchange.disclosure import service as disclosure
from tests.support.databases import seed_collection, seed_partner

KEPT = "indicator--00000000-0000-4000-8000-000000000001"
GONE = "indicator--00000000-0000-4000-8000-000000000002"


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
        upgrade(engine, "head")
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
        with make_session_factory(engine)() as db:
            gone = disclosure.recipients(db, GONE)
            still = disclosure.recipients(db, KEPT)
        assert [(r["partner"], r["version"], r["times"]) for r in gone["received"]] == [("cert-x", "v1", 2)]
        assert [(r["partner"], r["version"], r["times"]) for r in still["received"]] == [("cert-x", "v1", 1)]
    finally:
        engine.dispose()
