"""A peer's published JWK Set: fetched over TLS only, bounded, never redirected, and vetted.

A peer's key set decides what this exchange stores as that peer's word, so it is read as
hostile input: https only (a per-peer CA bundle may be trusted), no redirect followed, a small
size cap, strict JSON, and every key an Ed25519 public key with a unique kid. A set that breaks
any rule is refused whole with a `KeySetError` naming the rule; nothing of it is trusted.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from exchange.errors import BadRequestError
from exchange.http_deadline import BodyTooLarge, DeadlineSession
from exchange.intel.strictjson import loads_strict
from exchange.signing.keys import ALG, b64url_decode

MAX_BYTES = 64 * 1024
MAX_KEYS = 64


class KeySetError(BadRequestError):
    title = "Unusable peer key set"


def check_url(url: str) -> str:
    """The JWK Set URL, which must be an absolute https:// URL without credentials."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise KeySetError(f"the JWK Set URL is not a URL: {exc}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise KeySetError("a peer's JWK Set must be fetched over TLS: give an https:// URL")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise KeySetError("the JWK Set URL must carry no credentials, query or fragment")
    return url


def vet(document: Any, *, source: str) -> dict[str, list[dict[str, str]]]:
    """The set's public Ed25519 keys as `{"keys": [...]}`, or KeySetError naming what is wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeySetError(f'{source} is not a JWK Set (expected {{"keys": [...]}})')
    keys = document["keys"]
    if not keys:
        raise KeySetError(f"{source} holds no keys")
    if len(keys) > MAX_KEYS:
        raise KeySetError(f"{source} holds {len(keys)} keys, more than the {MAX_KEYS} accepted")
    vetted: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, jwk in enumerate(keys):
        where = f"key {index + 1} of {source}"
        if not isinstance(jwk, dict):
            raise KeySetError(f"{where} is not a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 128:
            raise KeySetError(f"{where} has no usable kid")
        if kid in seen:
            raise KeySetError(f"{source} names kid {kid!r} twice; a kid must pick exactly one key")
        seen.add(kid)
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise KeySetError(
                f"{where} (kid {kid!r}) is not an Ed25519 key (kty {jwk.get('kty')!r}, "
                f"crv {jwk.get('crv')!r}); peers sign with EdDSA over Ed25519 only"
            )
        if "d" in jwk:
            raise KeySetError(f"{where} (kid {kid!r}) holds a private key; a published set must not")
        if jwk.get("alg", ALG) != ALG or jwk.get("use", "sig") != "sig":
            raise KeySetError(f"{where} (kid {kid!r}) is not an EdDSA signing key")
        x = jwk.get("x")
        if not isinstance(x, str):
            raise KeySetError(f"{where} (kid {kid!r}) has no public key in x")
        try:
            raw = b64url_decode(x)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise KeySetError(f"{where} (kid {kid!r}) has no 32-byte Ed25519 public key in x")
        vetted.append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALG, "use": "sig"})
    return {"keys": vetted}


def parse(body: bytes, *, source: str) -> dict[str, list[dict[str, str]]]:
    """A JWK Set from bytes (strict JSON, bounded), vetted."""
    if len(body) > MAX_BYTES:
        raise KeySetError(f"{source} is larger than {MAX_BYTES:,} bytes; no peer needs a key set that big")
    try:
        document = loads_strict(body, max_depth=8)
    except ValueError as exc:
        raise KeySetError(f"{source} is not strict JSON: {str(exc)[:200]}") from None
    return vet(document, source=source)


def fetch(url: str, *, ca_bundle: str | None, timeout: float = 5.0) -> dict[str, list[dict[str, str]]]:
    """GET the peer's JWK Set over TLS (no redirects, no proxy, bounded), vetted.

    `timeout` bounds the whole fetch (connect, TLS, headers, body), whatever the peer's server
    does, and the body is read only up to MAX_BYTES (decoded).
    """
    url = check_url(url)
    ca_path: str | None = None
    session = DeadlineSession(deadline=time.monotonic() + timeout)
    session.trust_env = False  # no proxies, no .netrc, no REQUESTS_CA_BUNDLE in place of the peer's CA
    try:
        verify: bool | str = True
        if ca_bundle:
            fd, ca_path = tempfile.mkstemp(prefix="peer-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as handle:
                handle.write(ca_bundle)
            verify = ca_path
        try:
            response = session.get(
                url,
                headers={"Accept": "application/jwk-set+json, application/json"},
                allow_redirects=False,
                stream=True,
                timeout=(timeout, timeout),
                verify=verify,
            )
            with contextlib.closing(response):
                if response.is_redirect or 300 <= response.status_code < 400:
                    raise KeySetError(
                        f"the JWK Set at {url} answered with a redirect (HTTP {response.status_code}); "
                        "a peer's key set is fetched from exactly the URL registered, never elsewhere"
                    )
                if response.status_code != 200:
                    raise KeySetError(f"the JWK Set at {url} answered HTTP {response.status_code}")
                length = response.headers.get("Content-Length")
                if length and length.isascii() and length.isdigit() and int(length) > MAX_BYTES:
                    raise KeySetError(f"the JWK Set at {url} is larger than {MAX_BYTES:,} bytes")
                body = session.read_body(response, MAX_BYTES)
        except BodyTooLarge:
            raise KeySetError(f"the JWK Set at {url} is larger than {MAX_BYTES:,} bytes") from None
        except requests.exceptions.RequestException as exc:
            if session.expired:
                raise KeySetError(
                    f"the JWK Set at {url} did not arrive within {timeout:g} s; nothing of it is trusted"
                ) from None
            if isinstance(exc, requests.exceptions.SSLError):
                raise KeySetError(
                    f"TLS verification failed for the JWK Set at {url} (give the peer's CA bundle)"
                ) from None
            raise KeySetError(f"cannot fetch the JWK Set at {url}: {type(exc).__name__}") from None
        return parse(body, source=f"the JWK Set at {url}")
    finally:
        session.close()
        if ca_path:
            with contextlib.suppress(OSError):
                os.unlink(ca_path)
