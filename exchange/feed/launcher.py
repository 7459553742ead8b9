"""The seam between the exchange and the `feeds` package, as the exchange declares it.

`feeds.launcher.Launcher` implements it; `create_app(settings, feeds=...)` and the CLI pass it
in. The exchange never imports `feeds`: it asks this interface, and where no launcher was wired
it refuses (fail closed) rather than letting feed options in unchecked.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from exchange.config import Settings
from exchange.signing import KeyRing


class FeedLauncher(Protocol):
    """What the exchange's routes ask of the feeds package."""

    def check_options(self, kind: str, options: dict[str, Any]) -> dict[str, Any]:
        """The kind-specific options, vetted (ValueError says why they are refused)."""
        ...

    def start_feed(self, name: str, *, actor: str | None = None) -> int:
        """Start a run of feed `name` in the background for `actor`; the run's id (FeedBusyError
        while one runs)."""
        ...

    def start_push(self, slug: str, *, actor: str | None = None) -> None:
        """Start push delivery to partner `slug` in the background (domain error if none is in force)."""
        ...


class FeedLauncherFactory(Protocol):
    """Builds the launcher from what the app shares (`create_app` calls it once)."""

    def __call__(
        self, *, settings: Settings, sessions: sessionmaker[Session], keyring: KeyRing
    ) -> FeedLauncher: ...
