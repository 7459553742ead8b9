"""Real `exchange` server processes for tests whose point is several processes at once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.support.cli import EXE


class ServerProcess:
    """`exchange ARGS...` started in the background; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, env: Mapping[str, str], args: Sequence[str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen([EXE, *args], env=dict(env), stdout=self._out, stderr=subprocess.STDOUT)

    def wait_healthy(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(url, timeout=2, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} did not answer within {timeout:g} s:\n{self.output()}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


def serve(env: Mapping[str, str], port: int, log: Path, *extra: str) -> ServerProcess:
    """`exchange serve` on 127.0.0.1:`port`, answering /healthz before this returns."""
    server = ServerProcess(env, ["serve", "--host", "127.0.0.1", "--port", str(port), *extra], log)
    try:
        server.wait_healthy(f"http://127.0.0.1:{port}/healthz")
    except BaseException:
        server.stop()
        raise
    return server


def stop_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM to every process still running, then wait for each (SIGKILL if it will not end)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
