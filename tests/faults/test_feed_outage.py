"""A feed run cut short by PostgreSQL going away: the run is recorded as failed and its claim
released once the database is back, so the next run goes ahead at once. Before, the end of the
run could not be recorded, the claim stayed, and every run of the feed was refused as busy until
the claim's lease ran out (found by `benchmarks.faults`: 0 runs, 18 refused)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.feed import service as feed_service
from exchange.feed.schemas import FeedCreate
from feeds.runner import run_feed
from feeds.sources import check_options
from tests.support.pgcluster import Cluster, ClusterUnavailable, own_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with ExitStack() as stack:
        try:
            yield stack.enter_context(own_cluster("feedout"))
        except ClusterUnavailable as exc:
            pytest.skip(str(exc))


def test_a_feed_run_cut_short_by_a_database_restart_releases_its_claim(cluster: Cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    outage: dict[str, Any] = {"first": True}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if outage.pop("first", False):
                # The database goes away while the run is fetching, and comes back 1.5 s later.
                cluster.ctl("stop", "-m", "fast")
                timer = threading.Timer(1.5, cluster.ctl, args=("start",))
                timer.start()
                outage["timer"] = timer
            body = b"198.51.100.7\n198.51.100.8\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = Settings(
        data_dir=tmp_path / "data", database_url=cluster.url, secret_key=secrets.token_urlsafe(40)
    )
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        migrate(engine)
        factory = make_session_factory(engine)
        with session_scope(factory, write=True) as db:
            initialise(db, settings)
            feed_service.create(
                db,
                FeedCreate(
                    name="outage",
                    kind="text",
                    url=f"http://127.0.0.1:{server.server_address[1]}/list.txt",
                    collection="indicators",
                    tlp="green",
                ),
                actor="test",
                check_options=check_options,
            )
        first = run_feed(factory, settings, "outage")  # raised OperationalError before the fix
        assert first.status == "failed" and first.error
        outage["timer"].join(timeout=30)
        second = run_feed(factory, settings, "outage")  # FeedBusyError before the fix
        assert second.status == "ok", second.line()
        assert second.counts["new"] == 2
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
