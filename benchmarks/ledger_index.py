"""What an index on the ledger's STIX id cost a partner page: the disclosure table as it was
before migration 0013 (three secondary indexes) against as it was after it (no index on stix_id),
SQLite, one run, side by side. (Migration 0015 replaced that layout again; see ledger_layout.)

    .venv/bin/python -m benchmarks.ledger_index [--existing 200000] [--pages 50]

Each page is what `disclosure.service.record_versions` did then for 1,000 served versions: one
INSERT ... SELECT by primary key over the keys bound as one JSON array, then a commit (WAL,
synchronous=NORMAL, as the exchange runs SQLite). The ledger starts with `--existing` rows. STIX
ids are random UUIDs, so an index led by them takes each new row at a random place.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

LEDGER = (
    "CREATE TABLE disclosure (pk INTEGER PRIMARY KEY, object_version_pk BIGINT, stix_id VARCHAR(300), "
    "version VARCHAR(40), collection_pk INT, partner_pk INT, credential_id VARCHAR(64), "
    "requested_by VARCHAR(64), channel VARCHAR(16), at_us BIGINT)"
)
INDEXES = {
    "ix_disclosure_partner": "(partner_pk, at_us)",
    "ix_disclosure_version_recipient": "(object_version_pk, partner_pk, credential_id)",
}
BY_STIX_ID = {"ix_disclosure_object": "(stix_id, version)"}
INSERT = (
    "INSERT INTO disclosure (object_version_pk, stix_id, version, collection_pk, partner_pk, "
    "credential_id, requested_by, channel, at_us) SELECT pk, stix_id, version_text, 1, {partner}, "
    "'cred', 'cred', 'taxii', {at} FROM object_version WHERE pk {where}"
)


def page_ms(*, by_stix_id: bool, existing: int, pages: int) -> tuple[float, float]:
    """Mean milliseconds of a 1,000-row ledger page over the first and the last tenth of the run."""
    with tempfile.TemporaryDirectory(prefix="ledger-index-") as tmp:
        db = sqlite3.connect(Path(tmp) / "ledger.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE object_version (pk INTEGER PRIMARY KEY, stix_id VARCHAR(300), version_text VARCHAR(40))"
        )
        db.execute(LEDGER)
        for name, columns in (INDEXES | (BY_STIX_ID if by_stix_id else {})).items():
            db.execute(f"CREATE INDEX {name} ON disclosure {columns}")
        total = existing + pages * 1000
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO object_version VALUES (?, ?, ?)",
            ((i, f"indicator--{uuid.uuid4()}", "2026-01-01T00:00:00.000Z") for i in range(total)),
        )
        db.execute(INSERT.format(partner=2, at=1, where=f"< {existing}"))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        times = []
        for page in range(pages):
            low = existing + page * 1000
            keys = str(list(range(low, low + 1000)))
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute(INSERT.format(partner=1, at=2, where="IN (SELECT value FROM json_each(?))"), (keys,))
            db.execute("COMMIT")
            times.append(time.perf_counter() - started)
        db.close()
    tenth = max(1, pages // 10)
    return sum(times[:tenth]) / tenth * 1000, sum(times[-tenth:]) / tenth * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--existing", type=int, default=200_000, help="ledger rows before the first page")
    parser.add_argument("--pages", type=int, default=50, help="1,000-row pages written")
    opts = parser.parse_args(argv)
    before = page_ms(by_stix_id=True, existing=opts.existing, pages=opts.pages)
    after = page_ms(by_stix_id=False, existing=opts.existing, pages=opts.pages)
    print(f"ledger of {opts.existing:,} rows, {opts.pages} pages of 1,000 served versions, ms per page:")
    print(
        f"  with ix_disclosure_object (stix_id, version): first tenth {before[0]:.1f}, last tenth {before[1]:.1f}"
    )
    print(
        f"  without it (as now):                        first tenth {after[0]:.1f}, last tenth {after[1]:.1f}"
    )
    print(f"  ratio (last tenth): {before[1] / after[1]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
