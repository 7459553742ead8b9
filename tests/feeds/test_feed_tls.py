"""TLS is always verified: a self-signed or expired certificate is refused; a private CA works
once the feed is given it."""

from __future__ import annotations

import pytest

from feeds.runner import run_feed
from tests.support.certs import ca_pem, make_ca, server_context
from tests.support.feeds import FeedHttpServer


@pytest.fixture
def ca():  # type: ignore[no-untyped-def]
    return make_ca()


def _server(context):  # type: ignore[no-untyped-def]
    server = FeedHttpServer(tls=context)
    server.serve("/l.txt", b"198.51.100.123\n")
    return server


def test_self_signed_is_refused(tmp_path, feeds, factory, feed_settings) -> None:
    server = _server(server_context(tmp_path, issuer=None))
    try:
        name, _ = feeds.add("text", server.base + "/l.txt")
        result = run_feed(factory, feed_settings, name)
        assert result.status == "failed" and "TLS verification failed" in (result.error or "")
    finally:
        server.close()


def test_private_ca_is_trusted_once_configured(tmp_path, ca, feeds, factory, feed_settings) -> None:
    server = _server(server_context(tmp_path, issuer=ca))
    try:
        name, _ = feeds.add("text", server.base + "/l.txt")
        assert run_feed(factory, feed_settings, name).status == "failed"
        name, _ = feeds.add("text", server.base + "/l.txt", ca_bundle=ca_pem(ca))
        result = run_feed(factory, feed_settings, name)
        assert (result.status, result.counts["new"]) == ("ok", 1), result.line()
    finally:
        server.close()


def test_expired_certificate_is_refused_even_with_its_ca(tmp_path, ca, feeds, factory, feed_settings) -> None:
    server = _server(server_context(tmp_path, issuer=ca, expired=True))
    try:
        name, _ = feeds.add("text", server.base + "/l.txt", ca_bundle=ca_pem(ca))
        result = run_feed(factory, feed_settings, name)
        assert result.status == "failed" and "TLS verification failed" in (result.error or "")
        assert "expired" in (result.error or "")
    finally:
        server.close()
