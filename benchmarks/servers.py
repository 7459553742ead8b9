"""The servers under test, each in its own process: ours and medallion's memory backend.

The parent binds a listening socket on 127.0.0.1 port 0 and hands it down (no port race);
the child serves it with uvicorn, medallion's Flask app wrapped by a2wsgi the same way our
app mounts its TAXII views. Run as a script by `ServerProcess`; not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _serve(app, fd: int) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _exchange(args: argparse.Namespace) -> None:
    from exchange import heap
    from exchange.config import Settings
    from exchange.main import create_app

    settings = Settings(
        data_dir=Path(args.data_dir),
        database_url=args.database_url or None,
        secret_key=os.environ["BENCH_SECRET_KEY"],
        max_page_size=1000,
    )
    app = create_app(settings)
    heap.settle()  # as `exchange serve` does
    if os.environ.get("BENCH_PHASES"):
        from benchmarks import phases

        phases.install(os.environ["BENCH_PHASES"])
    _serve(app, args.fd)


def _medallion(args: argparse.Namespace) -> None:
    from a2wsgi import WSGIMiddleware
    from medallion import load_app

    _serve(WSGIMiddleware(load_app(args.config), workers=8), args.fd)


class ServerStartError(RuntimeError):
    """The server process died or never answered; `log_tail` holds the end of its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        last = log_tail.strip().splitlines()[-1] if log_tail.strip() else "(empty log)"
        super().__init__(f"{message}; its log ends: {last}")
        self.log_tail = log_tail


class ServerProcess:
    """One server subprocess on a fresh loopback port; `stop()` always ends it."""

    def __init__(self, kind: str, extra: list[str], *, log_path: Path, env: dict[str, str] | None = None):
        self.kind = kind
        self.log_path = log_path
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = dict(os.environ, **(env or {}))
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), child_env.get("PYTHONPATH")]))
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), kind, "--fd", str(sock.fileno()), *extra],
                pass_fds=(sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=child_env,
                start_new_session=True,  # Ctrl-C reaches only us; we end the child ourselves
            )
        sock.close()  # the child holds it now; if it dies, connections are refused, not stuck

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, path: str, *, auth: tuple[str, str] | None = None, timeout: float = 60) -> float:
        """Poll `path` until it answers 200; returns the seconds it took."""
        start = time.perf_counter()
        headers = {"Accept": "application/taxii+json;version=2.1"}
        while True:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.kind} server exited with {self.proc.returncode}", self.log_tail()
                )
            try:
                response = httpx.get(self.url + path, auth=auth, headers=headers, timeout=5)
                if response.status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            if time.perf_counter() - start > timeout:
                raise ServerStartError(f"{self.kind} server not ready after {timeout:.0f} s", self.log_tail())
            time.sleep(0.1)

    def kill(self) -> None:
        """End the server at once (used when a time budget runs out mid-request)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    ours = sub.add_parser("exchange")
    ours.add_argument("--fd", type=int, required=True)
    ours.add_argument("--data-dir", required=True)
    ours.add_argument("--database-url", default="")
    theirs = sub.add_parser("medallion")
    theirs.add_argument("--fd", type=int, required=True)
    theirs.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    (_exchange if args.kind == "exchange" else _medallion)(args)


if __name__ == "__main__":
    sys.path[0] = str(ROOT)  # run as a script: import the project, not benchmarks/ siblings
    main()
