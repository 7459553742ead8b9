"""Migration 0011_origin backfills originator control from what is stored: partner submissions name
their credential, whose partner becomes the source; a versioned object's originator is the
source of its earliest version, kept by every later version; SCOs have none; sightings get
their target."""

from __future__ import annotations

import orjson
from sqlalchemy import text

from exchange.database.core import make_engine
from exchange.database.migrate import upgrade
from tests.support.databases import seed_collection, seed_partner


def _row(pk, coll, stix_id, version, us, origin, added_by, body):  # type: ignore[no-untyped-def]
    return {
        "pk": pk,
        "c": coll,
        "s": stix_id,
        "t": stix_id.split("--")[0],
        "v": version,
        "us": us,
        "o": origin,
        "a": added_by,
        "b": orjson.dumps(body).decode(),
    }


def test_0011_origin_backfills_sources_originators_and_sighting_targets(empty_database):
    engine = make_engine(empty_database)
    try:
        upgrade(engine, "0008")
        ind = "indicator--00000000-0000-4000-8000-000000000001"
        sco = "ipv4-addr--00000000-0000-4000-8000-000000000002"
        sig = "sighting--00000000-0000-4000-8000-000000000003"
        cert = "indicator--00000000-0000-4000-8000-000000000004"
        with engine.begin() as conn:
            seed_partner(conn, 7, "cert-x")
            conn.execute(
                text(
                    "INSERT INTO credential (id, name, role, partner_pk, key_hash, created_at) "
                    "VALUES ('cred-x', 'x', 'partner', 7, 'h', CURRENT_TIMESTAMP)"
                )
            )
            seed_collection(conn)
            created = {"created": "2026-01-01T00:00:00.000Z"}
            rows = [
                _row(1, 1, ind, "v1", 10, "partner", "cred-x", {"id": ind, **created}),
                _row(2, 1, ind, "v2", 20, "analyst", "staff", {"id": ind, **created}),
                _row(3, 1, sco, "v1", 30, "partner", "cred-x", {"id": sco, "value": "192.0.2.1"}),
                _row(
                    4,
                    1,
                    sig,
                    "v1",
                    40,
                    "partner",
                    "cred-gone",
                    {"id": sig, "sighting_of_ref": ind, **created},
                ),
                _row(5, 1, cert, "v1", 50, "analyst", "staff", {"id": cert, **created}),
            ]
            conn.execute(
                text(
                    "INSERT INTO object_version (pk, collection_pk, stix_id, type, spec_version, version, "
                    "version_text, date_added_us, revoked, is_latest, is_first, origin, added_by, body) "
                    "VALUES (:pk, :c, :s, :t, '2.1', :v, :v, :us, false, true, true, :o, :a, :b)"
                ),
                rows,
            )
        upgrade(engine, "0011_origin")
        with engine.connect() as conn:
            found = {
                r.pk: (r.origin_partner_pk, r.originator_partner_pk, r.sighting_of_ref)
                for r in conn.execute(
                    text(
                        "SELECT pk, origin_partner_pk, originator_partner_pk, sighting_of_ref FROM object_version"
                    )
                )
            }
        assert found == {
            1: (7, 7, None),
            2: (None, 7, None),  # the CERT's later version stays the partner's to relay
            3: (7, None, None),  # an SCO: its source only
            # a credential that is gone: an unknown partner, whose objects nobody relays
            4: (0, 0, ind),
            5: (None, None, None),
        }
    finally:
        engine.dispose()
