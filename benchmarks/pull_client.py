"""One taxii2-client pull in a process of its own, as a partner's client runs it.

    .venv/bin/python -m benchmarks.pull_client < request.json

`measure.taxii_pull` starts this module and writes it one JSON request on standard input:
`url`, `user`, `password`, `per_request` and, optionally, `expected_ids` (a file holding the ids
the pull should bring, one per line). The client pulls with `as_pages(get_objects,
per_request=...)` and prints one line per page, `page <objects> <seconds since the last page>`,
then one line `done <JSON>` with what it counted (objects, pages, seconds, duplicates, missing,
unexpected, error).

Why a process of its own: the benchmark's own process holds everything it generated (a
1,000,000-object run keeps hundreds of MB of live objects), and Python's garbage collector walks
all of them while the client parses pages. Measured with this module's parent heap, the same
564 kB page parsed in 6 ms or in 20 ms depending on whether a full collection fell inside it;
a partner's client process holds nothing of ours.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from taxii2client.v21 import Collection as TaxiiCollection
from taxii2client.v21 import as_pages


def pull(request: dict[str, Any]) -> dict[str, Any]:
    expected: set[str] | None = None
    if request.get("expected_ids"):
        with open(request["expected_ids"], encoding="ascii") as handle:
            expected = {line.strip() for line in handle if line.strip()}
    seen: set[str] = set()
    outcome: dict[str, Any] = {"objects": 0, "pages": 0, "error": None, "finished": False}
    collection = TaxiiCollection(request["url"], user=request["user"], password=request["password"])
    out = sys.stdout
    started = last = time.perf_counter()
    try:
        for envelope in as_pages(collection.get_objects, per_request=request["per_request"]):
            objects = envelope.get("objects", [])
            seen.update(obj["id"] for obj in objects)
            outcome["objects"] += len(objects)
            outcome["pages"] += 1
            now = time.perf_counter()
            out.write(f"page {len(objects)} {now - last:.6f}\n")
            out.flush()
            last = now
        outcome["finished"] = True
    except Exception as exc:  # reported in the table, never raised past the harness
        outcome["error"] = f"{type(exc).__name__}: {exc}"[:300]
    outcome["seconds"] = time.perf_counter() - started
    outcome["duplicates"] = outcome["objects"] - len(seen)
    if expected is not None:
        outcome["missing"] = len(expected - seen)
        outcome["unexpected"] = len(seen - expected)
    return outcome


def main() -> int:
    request = orjson.loads(sys.stdin.buffer.read())
    outcome = pull(request)
    sys.stdout.write("done " + orjson.dumps(outcome).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
