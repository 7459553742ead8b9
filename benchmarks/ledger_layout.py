"""What a partner page's ledger costs in the ledger's layout before migration 0015_delivery and
in its layout now, side by side, on SQLite and PostgreSQL, in one run.

    .venv/bin/python -m benchmarks.ledger_layout [--existing 200000] [--pages 60] [--backends sqlite,postgresql]

Before: one row per served version with an id column, the STIX id and version copied from
object_version, the recipient, channel, collection and time repeated on each row, and indexes on
(partner_pk, at_us) and (object_version_pk, partner_pk, credential_id). Now: one delivery row
(who, how, when, from where, how many; index on (partner_pk, at_us)) and one (delivery_pk,
object_version_pk) row per version not deleted (checked in deleted_version), indexed by each. Each page is 1,000 versions picked at random
from `--existing` stored ones, written in one transaction and committed, as the exchange writes a
page's ledger (SQLite in WAL mode with synchronous=NORMAL); the two layouts take turns page by
page. Prints the median and 90th percentile milliseconds per page and their ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import orjson
from sqlalchemy import Connection, create_engine, event, text

from benchmarks.instance import create_postgres_database

BEFORE = (
    (
        "CREATE TABLE disclosure_before (pk {serial} PRIMARY KEY, object_version_pk BIGINT NOT NULL, "
        "stix_id VARCHAR(300) NOT NULL, version VARCHAR(40) NOT NULL, collection_pk INTEGER NOT NULL, "
        "partner_pk INTEGER, credential_id VARCHAR(64), requested_by VARCHAR(64), "
        "channel VARCHAR(16) NOT NULL, at_us BIGINT NOT NULL)"
    ),
    "CREATE INDEX ix_before_partner ON disclosure_before (partner_pk, at_us)",
    "CREATE INDEX ix_before_version ON disclosure_before (object_version_pk, partner_pk, credential_id)",
)
NOW = (
    (
        "CREATE TABLE delivery (pk {serial} PRIMARY KEY, collection_pk INTEGER NOT NULL, partner_pk INTEGER, "
        "credential_id VARCHAR(64), requested_by VARCHAR(64), channel VARCHAR(16) NOT NULL, "
        "at_us BIGINT NOT NULL, objects INTEGER NOT NULL)"
    ),
    "CREATE INDEX ix_delivery_partner ON delivery (partner_pk, at_us)",
    "CREATE TABLE disclosure (delivery_pk BIGINT NOT NULL, object_version_pk BIGINT NOT NULL)",
    "CREATE INDEX ix_disclosure_version ON disclosure (object_version_pk)",
    "CREATE INDEX ix_disclosure_delivery ON disclosure (delivery_pk)",
)
CREDENTIAL = "cred-28244dce35b3c858"


def _bound(keys: list[int], sqlite: bool) -> object:
    # As the exchange binds a page's keys: one JSON array (SQLite) or one array (PostgreSQL).
    return orjson.dumps(keys).decode() if sqlite else keys


def _before(conn: Connection, keys: list[int], sqlite: bool) -> None:
    where = "IN (SELECT value FROM json_each(:keys))" if sqlite else "= ANY(CAST(:keys AS BIGINT[]))"
    conn.execute(
        text(
            "INSERT INTO disclosure_before (object_version_pk, stix_id, version, collection_pk, partner_pk, "
            "credential_id, requested_by, channel, at_us) SELECT pk, stix_id, version_text, 1, 1, :c, :c, "
            f"'taxii', :at FROM object_version WHERE pk {where}"
        ),
        {"keys": _bound(keys, sqlite), "c": CREDENTIAL, "at": time.time_ns() // 1000},
    )


def _now(conn: Connection, keys: list[int], sqlite: bool) -> None:
    delivery = conn.execute(
        text(
            "INSERT INTO delivery (collection_pk, partner_pk, credential_id, requested_by, channel, at_us, "
            "objects) VALUES (1, 1, :c, :c, 'taxii', :at, :n) RETURNING pk"
        ),
        {"c": CREDENTIAL, "at": time.time_ns() // 1000, "n": len(keys)},
    ).scalar_one()
    each = "json_each(:keys) k" if sqlite else "unnest(CAST(:keys AS BIGINT[])) AS k(value)"
    # As record_versions: a row only for a version not deleted (a probe into deleted_version).
    conn.execute(
        text(
            f"INSERT INTO disclosure (delivery_pk, object_version_pk) SELECT :d, k.value FROM {each} "
            "WHERE NOT EXISTS (SELECT 1 FROM deleted_version g WHERE g.pk = k.value AND NOT EXISTS "
            "(SELECT 1 FROM object_version o WHERE o.pk = g.pk))"
        ),
        {"d": delivery, "keys": _bound(keys, sqlite)},
    )


def run(url: str, *, existing: int, pages: int, seed: int) -> dict[str, list[float]]:
    sqlite = url.startswith("sqlite")
    engine = create_engine(url)
    if sqlite:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi, _record):  # type: ignore[no-untyped-def]
            dbapi.execute("PRAGMA journal_mode=WAL")
            dbapi.execute("PRAGMA synchronous=NORMAL")

    serial = "INTEGER" if sqlite else "BIGSERIAL"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE object_version (pk BIGINT PRIMARY KEY, stix_id VARCHAR(300), "
                    "version_text VARCHAR(40))"
                )
            )
            conn.execute(text("CREATE TABLE deleted_version (pk BIGINT PRIMARY KEY)"))
            # A few hundred deleted versions, as an exchange that has deleted some holds.
            conn.execute(
                text("INSERT INTO deleted_version VALUES (:pk)"),
                [{"pk": existing + 1 + i} for i in range(300)],
            )
            for statement in (*BEFORE, *NOW):
                conn.execute(text(statement.format(serial=serial)))
            rows = [
                {"pk": i, "s": f"indicator--{uuid.uuid4()}", "v": "2026-01-01T00:00:00.000Z"}
                for i in range(1, existing + 1)
            ]
            for start in range(0, len(rows), 20_000):
                conn.execute(
                    text("INSERT INTO object_version VALUES (:pk, :s, :v)"), rows[start : start + 20_000]
                )
        rng = random.Random(seed)
        times: dict[str, list[float]] = {"before": [], "now": []}
        with engine.connect() as conn:
            for page in range(pages):
                keys = sorted(rng.sample(range(1, existing + 1), 1000))
                for name, write in (("before", _before), ("now", _now))[:: 1 if page % 2 else -1]:
                    started = time.perf_counter()
                    write(conn, keys, sqlite)
                    conn.commit()
                    times[name].append(time.perf_counter() - started)
        return times
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--existing", type=int, default=200_000, help="stored object versions")
    parser.add_argument("--pages", type=int, default=60, help="1,000-version pages written in each layout")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seed", type=int, default=2032)
    opts = parser.parse_args(argv)
    print(
        f"{opts.pages} pages of 1,000 served versions over {opts.existing:,} stored, ms per page (commit included):"
    )
    print(
        f"  {'backend':<11} {'before: median':>15} {'p90':>6} {'now: median':>12} {'p90':>6} {'before/now':>11}"
    )
    for backend in opts.backends.split(","):
        with ExitStack() as stack:
            if backend == "postgresql":
                url = create_postgres_database(opts.pg_url, stack)
            else:
                url = f"sqlite:///{Path(stack.enter_context(tempfile.TemporaryDirectory())) / 'ledger.db'}"
            times = run(url, existing=opts.existing, pages=opts.pages, seed=opts.seed)
        before, now = (sorted(times[k]) for k in ("before", "now"))
        b50, n50 = statistics.median(before) * 1000, statistics.median(now) * 1000
        b90, n90 = before[int(len(before) * 0.9)] * 1000, now[int(len(now) * 0.9)] * 1000
        print(f"  {backend:<11} {b50:>15.2f} {b90:>6.2f} {n50:>12.2f} {n90:>6.2f} {b50 / n50:>10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
