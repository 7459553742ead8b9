"""What the limits cost a partner's pull: the same requests with limits off and on, side by side.

    python -m benchmarks.limits [--requests 200] [--rounds 2]

One throw-away SQLite exchange with the demo data; two uvicorn servers in this process on the
same database, one with every limit off (no rate limit, no login throttle), one with the
defaults (6000/min, burst 600: the partner never reaches it, so what is measured is the cost
of checking). The partner `cert-in` pulls a 10-object page over one keep-alive connection,
alternating servers round by round. Also: one RateLimiter.check in isolation.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from exchange import demo
from exchange.auth.service import Principal
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.httpserver import HTTP_PROTOCOL
from exchange.intel import service
from exchange.limits.ratelimit import RateLimiter
from exchange.main import create_app
from exchange.partner import service as partner_service

TAXII = "application/taxii+json;version=2.1"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            http=HTTP_PROTOCOL,
            proxy_headers=False,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def _pull(url: str, auth: tuple[str, str], n: int) -> list[float]:
    times = []
    with httpx.Client(auth=auth, headers={"Accept": TAXII}, timeout=60) as client:
        client.get(url).raise_for_status()  # the slow hash, once
        for _ in range(n):
            start = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="limits-bench-") as tmp:
        base = Settings(data_dir=Path(tmp), secret_key="bench-secret-" + "x" * 40)
        base.ensure_data_dir()
        engine = make_engine(base.sqlalchemy_url)
        migrate(engine)
        sessions = make_session_factory(engine)
        with session_scope(sessions, write=True) as db:
            root = initialise(db, base).api_root
            demo.load(db, root)
            partner_id, partner_key, _ = demo.load_partner(db)
            coll = service.get_collection(db, api_root_pk=root.pk, ref="indicators")
            path = f"/taxii2/{root.name}/collections/{coll.id}/objects/?limit=10"
        off = base.model_copy(update={"rate_limit_per_minute": 0, "login_failures_per_minute": 10**9})
        on = base  # the defaults
        servers = {"limits off": _serve(off), "limits on (defaults)": _serve(on)}
        results: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, (url, _, _) in servers.items():
                results[name] += _pull(url + path, (partner_id, partner_key), args.requests)
        print(f"partner cert-in, 10-object TAXII page, {args.rounds} x {args.requests} requests per server")
        print(f"{'':24} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
        for name, times in results.items():
            p99 = sorted(times)[int(len(times) * 0.99) - 1]
            print(
                f"{name:24} {len(times) / sum(times):11.1f} {statistics.median(times) * 1000:8.2f} "
                f"{p99 * 1000:8.2f}"
            )
        for _, server, thread in servers.values():
            server.should_exit = True
            thread.join(timeout=10)

        limiter = RateLimiter(on, sessions)
        with session_scope(sessions) as db:
            partner_pk = partner_service.get_by_slug(db, demo.DEMO_PARTNER).pk
        caller = Principal(
            credential_id=partner_id, name="p", role="partner", partner_pk=partner_pk, partner_slug="cert-in"
        )
        limiter.check(caller, "taxii")
        n = 200_000
        start = time.perf_counter()
        bucket = limiter._buckets[partner_id]
        for _ in range(n):
            bucket.tokens = 600.0  # stay under the limit: what is measured is the check itself
            limiter.check(caller, "taxii")
        per_call = (time.perf_counter() - start) / n
        print(f"RateLimiter.check (agreement cached, under the limit): {per_call * 1e6:.2f} us per request")
        engine.dispose()


if __name__ == "__main__":
    main()
