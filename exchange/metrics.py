"""Prometheus metrics in the text exposition format, without a client library.

Counters live in the process that counts (API worker or scheduler); feed health and run totals
come from the database at scrape time, so any API worker reports them for every feed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs)
    return f"{{{text}}}" if text else ""


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_: str, labels: tuple[str, ...]) -> None:
        self.name, self.help, self.label_names = name, help_, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1, **labels: str) -> None:
        if amount <= 0:
            return
        key = tuple(str(labels.get(n, "")) for n in self.label_names)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(str(labels.get(n, "")) for n in self.label_names), 0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        lines += [
            f"{self.name}{_labels(zip(self.label_names, key, strict=False))} {value:g}"
            for key, value in items
        ]
        return lines


def gauge(name: str, help_: str, samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
    lines += [f"{name}{_labels(sorted(labels.items()))} {value:g}" for labels, value in samples]
    return lines


FEED_RUNS = Counter(
    "exchange_feed_runs_total", "Feed runs finished in this process, by status.", ("feed", "status")
)
FEED_OBJECTS = Counter(
    "exchange_feed_objects_total",
    "Objects from feed runs in this process, by what became of them.",
    ("feed", "result"),
)
OBJECTS_SERVED = Counter(
    "exchange_objects_served_total",
    "Object versions sent to callers, by channel (taxii, export, push).",
    ("channel",),
)
OBJECTS_INGESTED = Counter(
    "exchange_objects_ingested_total",
    "Object versions stored, by origin (analyst, partner, feed).",
    ("origin",),
)
ERRORS = Counter("exchange_errors_total", "Errors, by where they happened.", ("where",))
PUSHES = Counter(
    "exchange_push_runs_total",
    "Push deliveries in this process, by partner and status.",
    ("partner", "status"),
)

LOGIN_FAILURES = Counter("exchange_login_failures_total", "Failed logins, by channel.", ("channel",))
LOGINS_THROTTLED = Counter(
    "exchange_login_throttled_total",
    "Login attempts answered 429 because their address failed too often, by channel.",
    ("channel",),
)
RATE_LIMITED = Counter(
    "exchange_rate_limited_total",
    "Requests answered 429 by a credential's rate limit, by partner (or staff role) and channel.",
    ("caller", "channel"),
)

COUNTERS = (
    FEED_RUNS,
    FEED_OBJECTS,
    OBJECTS_SERVED,
    OBJECTS_INGESTED,
    ERRORS,
    PUSHES,
    LOGIN_FAILURES,
    LOGINS_THROTTLED,
    RATE_LIMITED,
)


def render_counters() -> list[str]:
    lines: list[str] = []
    for counter in COUNTERS:
        lines += counter.render()
    return lines
