"""The staff's figures at growing store sizes: the reciprocity report, the dashboard and the
preview of a draft agreement (with its reasons and its change against the agreement in force).

Every one is a handful of grouped SQL counts, so time should grow with the rows scanned, never
with a Python walk through them. Rows are bulk-loaded (as `benchmarks/data.py` does for the
TAXII benchmarks), a tenth of them stored by a partner's credential, and half of them in the
partner's disclosure ledger. Prints one table, side by side per size.

    .venv/bin/python -m benchmarks.reports [--sizes 10000,100000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from benchmarks.data import BulkLoader, IndicatorFactory, endless
from benchmarks.instance import create_postgres_database, postgres_problem
from exchange.agreement import service as agreement_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.disclosure.models import Delivery, Disclosure
from exchange.intel import service as intel_service
from exchange.intel.models import ObjectVersion
from exchange.partner import service as partner_service
from exchange.report import service as report_service
from exchange.sharing import preview as preview_service

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _timed(run: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(backend: str, size: int, workdir: Path, pg_url: str, rounds: int) -> dict[str, Any]:
    with ExitStack() as stack:
        url = create_postgres_database(pg_url, stack) if backend == "postgresql" else None
        settings = Settings(data_dir=workdir / "data", database_url=url, secret_key="bench-" + "x" * 40)
        settings.ensure_data_dir()
        engine = make_engine(settings.sqlalchemy_url)
        stack.callback(engine.dispose)
        migrate(engine)
        factory = make_session_factory(engine)
        slug = f"p-{uuid.uuid4().hex[:6]}"
        with session_scope(factory, write=True) as db:
            initialise(db, settings)
            root = intel_service.get_api_root(db, settings.api_root)
            assert root is not None
            coll = intel_service.create_collection(
                db, api_root=root, alias="bench", title="b", default_tlp="green"
            )
            _, credential, _ = partner_service.create(db, slug=slug, name=slug, country="IN", actor="bench")
            today = date.today()
            agreement_service.apply(
                db,
                {
                    "partner": slug,
                    "title": "bench",
                    "valid_from": (today - timedelta(days=10)).isoformat(),
                    "valid_until": (today + timedelta(days=30)).isoformat(),
                    "status": "active",
                    "read": {"collections": ["bench"], "max_tlp": "amber"},
                },
                actor="bench",
            )
            coll_pk, partner_pk, cred_id = coll.pk, credential.partner_pk, credential.id
        objects = endless(IndicatorFactory(seed=7))
        BulkLoader(engine, tlp_rank=1, added_by="analyst").load(coll_pk, objects, size - size // 10)
        BulkLoader(engine, tlp_rank=1, added_by=cred_id).load(coll_pk, objects, size // 10)
        with session_scope(factory, write=True) as db:
            rows = db.execute(
                select(ObjectVersion.pk, ObjectVersion.stix_id, ObjectVersion.version_text)
            ).all()
            now_us = report_service.to_us(datetime.now(UTC))
            served = rows[::2]
            # One delivery per 1,000 versions, a microsecond apart, as pages of a pull are.
            for i, start in enumerate(range(0, len(served), 1000)):
                chunk = served[start : start + 1000]
                delivery = db.execute(
                    insert(Delivery)
                    .values(
                        collection_pk=coll_pk,
                        partner_pk=partner_pk,
                        credential_id=cred_id,
                        requested_by=cred_id,
                        channel="taxii",
                        at_us=now_us - i,
                        objects=len(chunk),
                    )
                    .returning(Delivery.pk)
                ).scalar_one()
                db.execute(
                    insert(cast(Table, Disclosure.__table__)),
                    [{"delivery_pk": delivery, "object_version_pk": r.pk} for r in chunk],
                )
        draft = {
            "partner": slug,
            "title": "bench",
            "valid_from": (today - timedelta(days=10)).isoformat(),
            "valid_until": (today + timedelta(days=30)).isoformat(),
            "status": "draft",
            "read": {
                "collections": ["bench"],
                "max_tlp": "amber",
                "min_confidence": 50,
                "types": ["indicator", "malwre"],
            },
        }
        out: dict[str, Any] = {}
        with session_scope(factory) as db:
            assert isinstance(db, Session)
            now = datetime.now(UTC)
            out["reciprocity"], report = _timed(
                lambda: report_service.reciprocity(db, since=now - timedelta(days=90), until=now), rounds
            )
            out["dashboard"], _ = _timed(lambda: report_service.dashboard(db, now=now), rounds)
            doc = agreement_service.validate(db, draft)
            out["preview"], shown = _timed(
                lambda: preview_service.preview(db, doc, now=now, sample_size=3), rounds
            )
        mine = next(p for p in report.partners if p.partner == slug)
        # The figures themselves, checked against what was loaded.
        out["ok"] = (
            mine.contributed == size // 10
            and mine.received == len(served)
            and shown["total"] + shown["withheld"] == size
            and shown["change"]["becomes_withheld"] == shown["withheld"]
        )
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    if "postgresql" in backends and postgres_problem(args.pg_url):
        print(f"PostgreSQL skipped: {postgres_problem(args.pg_url)}")
        backends.remove("postgresql")
    failed = False
    print(
        f"{'backend':11} {'objects':>9} {'reciprocity s':>14} {'dashboard s':>12} {'preview s':>10}  figures"
    )
    for backend in backends:
        first: dict[str, Any] | None = None
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                got = measure(backend, size, Path(tmp), args.pg_url, args.rounds)
            failed |= not got["ok"]
            print(
                f"{backend:11} {size:>9} {got['reciprocity']:>14.3f} {got['dashboard']:>12.3f} "
                f"{got['preview']:>10.3f}  {'right' if got['ok'] else 'WRONG'}"
            )
            if first is None:
                first = got
            else:
                scale = size / sizes[0]
                print(
                    f"{'':11} {'ratio':>9} {got['reciprocity'] / first['reciprocity']:>14.1f} "
                    f"{got['dashboard'] / first['dashboard']:>12.1f} {got['preview'] / first['preview']:>10.1f}"
                    f"  (rows x{scale:.0f})"
                )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
