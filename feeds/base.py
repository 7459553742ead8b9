"""What a feed source gives the runner, and what the runner gives a source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from feeds.http import HttpClient

if TYPE_CHECKING:
    from exchange.peer.trust import PeerTrust


class FeedError(Exception):
    """A run cannot go on (unreachable, refused, garbage); the message is safe to log and show."""


@dataclass(frozen=True)
class Ioc:
    """One value from an IoC list, with what the list says about it."""

    value: str
    kind: str | None = None  # an observables.TYPES entry when the list says; detected otherwise
    description: str | None = None
    labels: tuple[str, ...] = ()
    first_seen: str | None = None  # RFC 3339, becomes valid_from when the indicator is new
    line: int | None = None  # where it came from, for error reports


@dataclass
class Batch:
    """A slice of the feed, stored in one transaction.

    `cursor`, when set, is where the next run starts once this batch is stored; a source sets it
    only where resuming from it loses nothing (after the last batch of a bundle, say).
    """

    objects: list[dict[str, Any]] = field(default_factory=list)  # STIX objects as parsed
    iocs: list[Ioc] = field(default_factory=list)
    fetched: int = 0  # records read from the feed in this slice (objects, lines, events)
    failures: list[dict[str, str]] = field(default_factory=list)  # unreadable records: {"id","message"}
    cursor: dict[str, Any] | None = None


@dataclass
class FeedSpec:
    """A feed's settings as a source needs them (no database objects)."""

    name: str
    kind: str
    url: str
    options: dict[str, Any]
    timeout: float
    batch_size: int


@dataclass
class FetchContext:
    spec: FeedSpec
    http: HttpClient
    cursor: dict[str, Any]  # as saved by the last batch that set one (empty on the first run)
    log: Callable[[str], None] = print
    # Set for a peer's feed: every page must verify with it before anything of it is stored.
    trust: PeerTrust | None = None
