"""Partner pulls under an agreement: is filtering free? (issue: agreements, "Speed").

A collection of N objects of which exactly half is withheld from a partner (half TLP:GREEN,
half TLP:AMBER+STRICT, the agreement's ceiling is amber) is pulled by that partner with
taxii2-client; so is a collection holding only the N/2 objects it may see. Target: the
filtered pull costs at most 1.3x the unfiltered one. The admin's pull of the same N/2
objects shows what the partner path itself (policy predicates, the decide gate, signatures,
disclosure-ledger rows) costs.

    .venv/bin/python -m benchmarks.partner_pull [--objects 100000] [--backends sqlite,postgresql]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select

from benchmarks import data, measure
from benchmarks.instance import Instance, postgres_problem
from exchange.agreement import service as agreement_service
from exchange.database.core import session_scope
from exchange.disclosure.models import Disclosure
from exchange.partner import service as partner_service

GREEN, AMBER_STRICT = 1, 3
CHUNK = 1000


def run(backend: str, total: int, pg_url: str) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix=f"partner-bench-{backend}-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        inst = Instance(backend, workdir, stack, pg_admin_url=pg_url)
        mixed, visible = inst.collection("mixed"), inst.collection("visible")
        green = data.BulkLoader(inst.engine, tlp_rank=GREEN, added_by=inst.auth[0])
        strict = data.BulkLoader(inst.engine, tlp_rank=AMBER_STRICT, added_by=inst.auth[0])
        factory = data.IndicatorFactory(seed=6)
        allowed: set[str] = set()
        for _ in range(total // (2 * CHUNK)):
            batch = factory.batch(CHUNK)
            allowed.update(o["id"] for o in batch)
            green.load(mixed.pk, iter(batch), CHUNK)
            strict.load(mixed.pk, iter(factory.batch(CHUNK)), CHUNK)
        green.load(visible.pk, iter(factory.batch(total // 2)), total // 2)
        today = date.today()
        with session_scope(inst.factory, write=True) as db:
            _, credential, key = partner_service.create(db, slug="cert-bench", name="Bench", country="IN",
                                                        actor="bench")
            agreement_service.apply(db, {
                "partner": "cert-bench", "title": "benchmark", "status": "active",
                "valid_from": (today - timedelta(days=1)).isoformat(),
                "valid_until": (today + timedelta(days=365)).isoformat(),
                "read": {"collections": ["mixed", "visible"], "max_tlp": "amber"}}, actor="bench")
        partner = (credential.id, key)

        def pull(coll, auth, expected_ids=None):  # type: ignore[no-untyped-def]
            result = measure.taxii_pull(inst.collection_url(coll), auth, per_request=1000,
                                        expected=total // 2, expected_ids=expected_ids,
                                        deadline_seconds=600, on_timeout=inst.server.kill)
            assert result.finished and not result.duplicates and not result.missing, result
            assert result.objects == total // 2, result.objects
            return result.seconds

        filtered = pull(mixed, partner, allowed)
        unfiltered = pull(visible, partner)
        admin = pull(visible, inst.auth)
        with session_scope(inst.factory) as db:
            ledger = db.scalar(select(func.count()).select_from(Disclosure))
    return {"filtered": filtered, "unfiltered": unfiltered, "admin": admin, "ledger": ledger}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(f"| backend | filtered pull of {args.objects:,} (half withheld) | unfiltered pull of {args.objects // 2:,} "
          "| ratio (target <= 1.3x) | admin pull of the same | partner path / admin | ledger rows |")
    print("|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        if backend == "postgresql" and postgres_problem(args.pg_url):
            print(f"| postgresql | skipped: {postgres_problem(args.pg_url)} |")
            continue
        r = run(backend, args.objects, args.pg_url)
        half = args.objects // 2
        print(f"| {backend} | {r['filtered']:.2f} s ({half / r['filtered']:,.0f} obj/s) "
              f"| {r['unfiltered']:.2f} s ({half / r['unfiltered']:,.0f} obj/s) | {r['filtered'] / r['unfiltered']:.2f}x "
              f"| {r['admin']:.2f} s | {r['unfiltered'] / r['admin']:.2f}x | {r['ledger']:,} |")


if __name__ == "__main__":
    main()
