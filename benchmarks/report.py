"""The results table, machine facts and number formatting."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shlex
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    section: str
    measure: str
    backend: str
    result: str
    target: str = ""
    verdict: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    failed: bool = False

    def add(
        self, section: str, measure: str, backend: str, result: str, target: str = "", verdict: str = ""
    ) -> None:
        self.rows.append(Row(section, measure, backend, result, target, verdict))

    def error(self, section: str, measure: str, backend: str, message: str) -> None:
        self.failed = True
        one_line = " ".join(message.split())
        if len(one_line) > 240:
            one_line = one_line[:237] + "..."
        self.add(section, measure, backend, f"ERROR: {one_line}", verdict="ERROR")

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict:
        return {"facts": self.facts, "rows": [asdict(r) for r in self.rows], "notes": self.notes}

    def render(self) -> str:
        header = ("#", "measure", "backend", "result", "target", "verdict")
        table = [header] + [
            (r.section, r.measure, r.backend, r.result, r.target, r.verdict) for r in self.rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]

        def line(cells: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"

        out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(cells) for cells in table[1:]]
        return "\n".join(out)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def count(n: float) -> str:
    return f"{n:,.0f}"


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return (
        f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, at start; other work on the machine skews figures)"
    )


def machine_facts(argv: list[str], postgres: str) -> dict[str, str]:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *argv]),
        "cwd": os.getcwd(),
        "cpu": f"{os.cpu_count()} x {_cpu_model()}",
        "memory": _memory(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres,
        "load avg": _load_average(),
        "server": (
            f"uvicorn {_version('uvicorn')} ({http}, {loop} loop, 1 process) + a2wsgi "
            f"{_version('a2wsgi')}, Flask {_version('Flask')}"
        ),
        "libraries": (
            f"medallion {_version('medallion')}, taxii2-client {_version('taxii2-client')}, "
            f"SQLAlchemy {_version('SQLAlchemy')}, psycopg {_version('psycopg')}, "
            f"httpx {_version('httpx')}, requests {_version('requests')}, orjson {_version('orjson')}"
        ),
    }
