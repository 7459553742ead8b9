"""The feeds package's side of `exchange.feed.launcher.FeedLauncher`: check options, start runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from exchange.config import Settings
from exchange.signing import KeyRing
from feeds import push, runner, sources


@dataclass(frozen=True)
class Launcher:
    """Feed runs and push deliveries on background threads of this process."""

    settings: Settings
    sessions: sessionmaker[Session]
    keyring: KeyRing

    def check_options(self, kind: str, options: dict[str, Any]) -> dict[str, Any]:
        return sources.check_options(kind, options)

    def start_feed(self, name: str, *, actor: str | None = None) -> int:
        return runner.start_in_background(self.sessions, self.settings, name, actor=actor)

    def start_push(self, slug: str, *, actor: str | None = None) -> None:
        push.start_in_background(
            self.sessions, self.settings, self.keyring, slug, requested_by=actor or "api"
        )
