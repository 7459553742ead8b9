"""Limits without a server: buckets, windows, addresses, proxies, the docs page's CSP, the schema."""

from __future__ import annotations

import pytest

from exchange.auth.service import Principal
from exchange.config import Settings
from exchange.errors import RateLimitedError
from exchange.limits.client import client_address
from exchange.limits.logins import address_key
from exchange.limits.ratelimit import Rate, RateLimiter, share
from policies.schemas import AgreementDoc, RateLimitSection


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _limiter(settings: Settings, clock: Clock, **overrides) -> RateLimiter:  # type: ignore[no-untyped-def]
    limited = settings.model_copy(update=overrides)

    def no_sessions():  # type: ignore[no-untyped-def]
        raise AssertionError("staff limits need no database")

    limiter = RateLimiter(limited, no_sessions, clock=clock, wall=clock)  # type: ignore[arg-type]
    limiter._audit = lambda *a: None  # type: ignore[method-assign]  # the live tests check the trail
    return limiter


STAFF = Principal(credential_id="cred-staff", name="s", role="analyst")


def test_burst_then_refill_then_refusal_with_retry_after(settings: Settings) -> None:
    clock = Clock()
    limiter = _limiter(settings, clock, rate_limit_staff_per_minute=60, rate_limit_staff_burst=3)
    for _ in range(3):
        limiter.check(STAFF, "rest")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(STAFF, "rest")
    assert refused.value.status == 429 and refused.value.retry_after_seconds == 1
    clock.now += 1.0  # one request a second comes back
    limiter.check(STAFF, "rest")
    with pytest.raises(RateLimitedError):
        limiter.check(STAFF, "taxii")  # the same bucket, whatever the channel


def test_each_worker_keeps_its_share(settings: Settings) -> None:
    clock = Clock()
    limiter = _limiter(settings, clock, rate_limit_staff_per_minute=60, rate_limit_staff_burst=10, workers=2)
    waits = []
    for _ in range(20):
        try:
            limiter.check(STAFF, "rest")
        except RateLimitedError as exc:
            waits.append(exc.retry_after_seconds)
    assert len(waits) == 15, "two workers together must not allow more than the burst"
    assert set(waits) == {2}  # half the rate: one every two seconds
    assert share(Rate(600, 100), 4) == (2.5, 25.0)
    assert share(Rate(1, 1), 8) == (1 / 60 / 8, 1.0)  # at least one request per worker


def test_staff_are_not_limited_by_default_and_credentials_are_separate(settings: Settings) -> None:
    clock = Clock()
    unlimited = _limiter(settings, clock)
    for _ in range(5000):
        unlimited.check(STAFF, "rest")
    limited = _limiter(settings, clock, rate_limit_staff_per_minute=1, rate_limit_staff_burst=1)
    limited.check(STAFF, "rest")
    other = Principal(credential_id="cred-other", name="o", role="admin")
    limited.check(other, "rest")  # its own bucket
    with pytest.raises(RateLimitedError):
        limited.check(STAFF, "rest")


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same /64: one host
        ("::ffff:192.0.2.7", "192.0.2.7"),
        (None, "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_failures_are_counted_by_address_and_ipv6_by_its_64(given: str | None, key: str) -> None:
    assert address_key(given) == key


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = Settings(trusted_proxies="10.0.0.0/8, 192.0.2.1").trusted_proxy_networks
    # Not from a proxy: the header is whatever the client wrote.
    assert client_address("198.51.100.9", ["203.0.113.5"], proxies) == "198.51.100.9"
    assert client_address("198.51.100.9", ["203.0.113.5"], ()) == "198.51.100.9"
    # From a proxy: the right-most hop that is not a proxy; what the client prepended is ignored.
    assert client_address("10.1.2.3", ["6.6.6.6, 203.0.113.5"], proxies) == "203.0.113.5"
    assert client_address("10.1.2.3", ["6.6.6.6", "203.0.113.5, 10.0.0.2"], proxies) == "203.0.113.5"
    assert client_address("::ffff:10.1.2.3", ["203.0.113.5"], proxies) == "203.0.113.5"
    # Garbled or absent: the proxy itself.
    assert client_address("10.1.2.3", ["not-an-ip"], proxies) == "10.1.2.3"
    assert client_address("10.1.2.3", [], proxies) == "10.1.2.3"
    with pytest.raises(ValueError, match="EXCHANGE_TRUSTED_PROXIES"):
        Settings(trusted_proxies="10.0.0.0/8,localhost")


def test_agreement_rate_limit_schema() -> None:
    base = {"partner": "cert-in", "title": "t", "valid_from": "2024-01-01", "valid_until": "2025-01-01"}
    doc = AgreementDoc.model_validate({**base, "rate_limit": {"per_minute": 120}})
    assert doc.rate_limit == RateLimitSection(per_minute=120) and doc.rate_limit.capacity == 12
    assert AgreementDoc.model_validate(doc.to_document()) == doc
    for bad in ({"per_minute": 0}, {"per_minute": "60"}, {"per_minute": 60, "every": "1m"}, {"burst": 5}):
        with pytest.raises(ValueError):
            AgreementDoc.model_validate({**base, "rate_limit": bad})


def test_even_an_unhandled_500_carries_the_security_headers(settings: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from exchange.main import create_app

    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom-for-test", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom-for-test")
    assert response.status_code == 500
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
