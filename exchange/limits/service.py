"""Limits: what every entry point (REST, TAXII, pages) asks before and after authenticating."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from exchange.auth.keys import VerifiedKeyCache
from exchange.auth.service import Principal
from exchange.config import Settings
from exchange.limits.logins import LoginThrottle
from exchange.limits.ratelimit import RateLimiter


@dataclass(frozen=True)
class Limits:
    """One app's rate limiter and failed-login throttle (per process; see the modules)."""

    rates: RateLimiter
    logins: LoginThrottle
    key_cache: VerifiedKeyCache

    @classmethod
    def build(
        cls, settings: Settings, sessions: sessionmaker[Session], key_cache: VerifiedKeyCache
    ) -> Limits:
        return cls(RateLimiter(settings, sessions), LoginThrottle(settings, sessions), key_cache)

    def before_login(self, address: str | None, key: str, channel: str) -> None:
        """Raise RateLimitedError when `address` is throttled and this key was not verified lately:
        a flood is refused before its slow hash, a known client behind the same address is not."""
        wait = self.logins.retry_after(address)
        if wait is not None and not self.key_cache.recently_verified(key):
            raise self.logins.refuse(address, channel, wait)

    def login_failed(self, address: str | None, who: str, channel: str) -> str:
        """Count and (under the flood threshold) audit a failed login; the actor, fit for logs."""
        return self.logins.failed(address, who, channel)

    def admit(self, principal: Principal, channel: str) -> None:
        """Take one request from the caller's rate, or raise RateLimitedError (429)."""
        self.rates.check(principal, channel)
