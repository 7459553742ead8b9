"""The `exchange` command run inside the test process: an exit status, stdout and stderr.

Starting a Python for every command costs a second or more each; a subprocess stays for the
tests whose point is the real entry point (the console script, `serve`, `scheduler`).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

EXE = str(Path(sys.executable).with_name("exchange"))


@dataclass(frozen=True)
class Result:
    """What a shell would see of one command (the fields of subprocess.CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


def run(env: Mapping[str, str], *args: str) -> Result:
    """`exchange ARGS...` with exactly `env` as its environment, in this process."""
    from exchange.cli import main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, dict(env), clear=True), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, bad arguments
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def run_process(env: Mapping[str, str], *args: str, timeout: float = 120) -> Result:
    """`exchange ARGS...` as its own process, through the installed console script."""
    done = subprocess.run([EXE, *args], env=dict(env), capture_output=True, text=True, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


def environment(data_dir: Path | str, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without EXCHANGE_*, pointed at one data dir (and database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env["EXCHANGE_DATA_DIR"] = str(data_dir)
    if database_url:
        env["EXCHANGE_DATABASE_URL"] = database_url
    env.update(extra)
    return env
