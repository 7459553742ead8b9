"""A hostile peer: what its key set and its signatures may not get past (no database, no servers
except one small TLS server for the key set fetch)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.peer import keyset
from exchange.peer.keyset import KeySetError
from exchange.peer.trust import KeyCache, PeerTrust
from exchange.signing.jws import CTY_STIX, CTY_TAXII, attach_signature, canonical_bytes, sign_canonical
from exchange.signing.keys import SigningKey, b64url, public_x, thumbprint
from tests.support.certs import ca_pem, make_ca, server_context
from tests.support.feeds import within

US, PEER = "cert-bd", "identity--0b9fcb4f-39c1-4c4e-9a4e-5a5e4c0a1f11"


def new_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(kid=thumbprint(public_x(private.public_key())), private_key=private)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """The peer's published key set as the fetcher sees it, and how often it was fetched."""

    def __init__(self, *keys: SigningKey) -> None:
        self.published = jwks(*keys)
        self.fetches = 0

    def fetch(self) -> dict[str, Any]:
        self.fetches += 1
        return keyset.vet(self.published, source="test")


def trust(peer: Peer, cached: dict[str, Any], clock: Clock, **kw: Any) -> PeerTrust:
    return PeerTrust(
        slug="cert-in",
        audience=US,
        issuer=PEER,
        cache=KeyCache(jwks=cached, fetched_at=clock.now, tried_at=clock.now),
        fetch=peer.fetch,
        max_age=kw.pop("max_age", 300.0),
        refetch_every=kw.pop("refetch_every", 60.0),
        clock=clock,
        **kw,
    )


def page(key: SigningKey, *, aud: str | None = US, iss: str = PEER, cty: str = CTY_TAXII) -> bytes:
    envelope = {"more": False, "objects": [{"type": "indicator", "id": "indicator--1"}]}
    canonical = canonical_bytes(envelope)
    return attach_signature(canonical, sign_canonical(canonical, key=key, cty=cty, aud=aud, iss=iss))


def reason(check: Any) -> str:
    from exchange.signing.verify import SignatureError

    with pytest.raises(SignatureError) as caught:
        check()
    return caught.value.reason


def test_a_page_signed_for_us_by_the_peer_verifies_and_any_change_is_refused() -> None:
    key, clock = new_key(), Clock()
    t = trust(Peer(key), jwks(key), clock)
    body = page(key)
    assert t.verify_document(body, cty=CTY_TAXII)["objects"][0]["id"] == "indicator--1"

    changed = body.replace(b"indicator--1", b"indicator--2")
    assert reason(lambda: t.verify_document(changed, cty=CTY_TAXII)) == "bad signature"
    missing = orjson.dumps({k: v for k, v in orjson.loads(body).items() if k != "x_exchange_jws"})
    assert reason(lambda: t.verify_document(missing, cty=CTY_TAXII)) == "not signed"
    duplicated = body[:-1] + b',"more":true}'
    assert reason(lambda: t.verify_document(duplicated, cty=CTY_TAXII)) == "malformed payload"
    assert reason(lambda: t.verify_document(body, cty=CTY_STIX)) == "content type mismatch"


def test_audience_and_issuer_must_name_us_and_the_peer() -> None:
    key, clock = new_key(), Clock()
    t = trust(Peer(key), jwks(key), clock)
    assert reason(lambda: t.verify_document(page(key, aud="cert-lk"), cty=CTY_TAXII)) == "audience mismatch"
    assert reason(lambda: t.verify_document(page(key, aud=None), cty=CTY_TAXII)) == "audience mismatch"
    other = "identity--7d1b0d1e-8b7e-4b0e-8f7e-111111111111"
    assert reason(lambda: t.verify_document(page(key, iss=other), cty=CTY_TAXII)) == "issuer mismatch"


def _token(header: dict[str, Any], payload: bytes = b"", signature: bytes = b"x") -> str:
    return b64url(json.dumps(header).encode()) + "." + b64url(payload) + "." + b64url(signature)


def test_alg_none_hs256_and_attached_payloads_are_refused() -> None:
    key, clock = new_key(), Clock()
    t = trust(Peer(key), jwks(key), clock)
    content = canonical_bytes({"more": False})
    base = {"kid": key.kid, "aud": US, "iss": PEER, "cty": CTY_TAXII}
    assert (
        reason(lambda: t.verify_token(_token({**base, "alg": "none"}), content, cty=CTY_TAXII))
        == "alg not EdDSA"
    )
    assert (
        reason(lambda: t.verify_token(_token({**base, "alg": "HS256"}), content, cty=CTY_TAXII))
        == "alg not EdDSA"
    )
    # A JWS over another payload, carried in the token: not the detached form, refused.
    good = sign_canonical(b'{"more":true}', key=key, cty=CTY_TAXII, aud=US, iss=PEER)
    protected, _, signature = good.split(".")
    carried = base64.urlsafe_b64encode(b'{"more":true}').rstrip(b"=").decode()
    attached = f"{protected}.{carried}.{signature}"
    assert reason(lambda: t.verify_token(attached, content, cty=CTY_TAXII)) == "not detached"
    # The same detached token over other content.
    assert reason(lambda: t.verify_token(good, content, cty=CTY_TAXII)) == "bad signature"


def test_a_pre_published_key_needs_no_refetch_and_an_unknown_kid_one_rate_limited_refetch() -> None:
    current, upcoming, later = new_key(), new_key(), new_key()
    clock = Clock()
    peer = Peer(current, upcoming)
    t = trust(peer, jwks(current, upcoming), clock)
    t.verify_document(page(upcoming), cty=CTY_TAXII)
    assert peer.fetches == 0

    peer.published = jwks(upcoming, later)  # the peer rotated once more
    clock.now += 61
    t.verify_document(page(later), cty=CTY_TAXII)
    assert peer.fetches == 1

    # A forged kid: one refetch per run at most, and none again inside the rate limit.
    stranger = new_key()
    assert reason(lambda: t.verify_document(page(stranger), cty=CTY_TAXII)) == "unknown kid"
    assert peer.fetches == 1  # this run already refetched
    again = trust(peer, t.cache.jwks, clock)
    again.cache.tried_at = clock.now - 10
    assert reason(lambda: again.verify_document(page(stranger), cty=CTY_TAXII)) == "unknown kid"
    assert peer.fetches == 1  # the last attempt was 10 s ago, under the 60 s limit
    clock.now += 61
    fresh = trust(peer, t.cache.jwks, clock)
    fresh.cache.tried_at = clock.now - 61
    assert reason(lambda: fresh.verify_document(page(stranger), cty=CTY_TAXII)) == "unknown kid"
    assert peer.fetches == 2


def test_a_key_the_peer_removed_is_not_trusted_once_the_cache_expires() -> None:
    old, new = new_key(), new_key()
    clock = Clock()
    peer = Peer(old, new)
    saved: list[KeyCache] = []
    t = trust(peer, jwks(old, new), clock, max_age=300.0, save=saved.append)
    t.verify_document(page(old), cty=CTY_TAXII)
    peer.published = jwks(new)
    clock.now += 301
    assert reason(lambda: t.verify_document(page(old), cty=CTY_TAXII)) == "unknown kid"
    assert peer.fetches >= 1 and saved and old.kid not in saved[-1].kids()
    t.verify_document(page(new), cty=CTY_TAXII)


def test_an_expired_cache_that_cannot_be_refreshed_fails_closed() -> None:
    key, clock = new_key(), Clock()

    def down() -> dict[str, Any]:
        raise KeySetError("cannot fetch the JWK Set: ConnectionError")

    t = PeerTrust(
        slug="cert-in",
        audience=US,
        issuer=PEER,
        cache=KeyCache(jwks=jwks(key), fetched_at=clock.now - 1000, tried_at=clock.now - 1000),
        fetch=down,
        max_age=300,
        clock=clock,
    )
    assert reason(lambda: t.verify_document(page(key), cty=CTY_TAXII)) == "peer keys unavailable"


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]}, "not an Ed25519 key"),
        ({"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", "x": "AA", "y": "AA"}]}, "not an Ed25519 key"),
        ({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}, "not an Ed25519 key"),
        ("dup", "twice"),
        ("private", "private key"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "s", "x": "AAAA"}]}, "32-byte"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}, "no usable kid"),
        ("hs-alg", "not an EdDSA signing key"),
        ({"keys": []}, "holds no keys"),
        ({"key": []}, "not a JWK Set"),
    ],
)
def test_hostile_key_sets_are_refused_whole(document: Any, words: str) -> None:
    key = new_key()
    good = key.public_jwk()
    if document == "dup":
        document = {"keys": [good, {**new_key().public_jwk(), "kid": key.kid}]}
    elif document == "private":
        document = {"keys": [{**good, "d": "AAAA"}]}
    elif document == "hs-alg":
        document = {"keys": [{**good, "alg": "HS256"}]}
    with pytest.raises(KeySetError, match=words):
        keyset.vet(document, source="the set")


def test_oversize_and_non_strict_key_sets_are_refused() -> None:
    big = json.dumps({"keys": [new_key().public_jwk()], "pad": "x" * keyset.MAX_BYTES}).encode()
    with pytest.raises(KeySetError, match="larger than"):
        keyset.parse(big, source="the set")
    with pytest.raises(KeySetError, match="strict JSON"):
        keyset.parse(b'{"keys": [], "keys": []}', source="the set")
    with pytest.raises(KeySetError, match="https"):
        keyset.check_url("http://127.0.0.1/.well-known/jwks.json")


@pytest.fixture(scope="module")
def jwks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    """A TLS server for key sets: path -> body (a body b'REDIRECT' answers 302, b'BIG' streams 1 MB)."""
    tmp = tmp_path_factory.mktemp("jwks")
    ca = make_ca()
    routes: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = routes.get(self.path, b"")
            if body == b"REDIRECT":
                self.send_response(302)
                self.send_header("Location", "/good")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body == b"TRICKLE":  # 200, then a space every 0.2 s, for a minute
                self.send_response(200)
                self.end_headers()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    for _ in range(300):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.2)
                return
            if body == b"BIG":
                self.send_response(200)
                self.end_headers()  # no length: read until the cap
                for _ in range(64):
                    self.wfile.write(b" " * 16384)
                return
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(Path(tmp), issuer=ca).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_pem(ca), routes
    server.shutdown()
    server.server_close()


def test_the_key_set_is_fetched_over_verified_tls_never_redirected_and_bounded(
    jwks_server: tuple[str, str, dict[str, bytes]],
) -> None:
    url, ca, routes = jwks_server
    key = new_key()
    routes["/good"] = json.dumps(jwks(key)).encode()
    routes["/moved"] = b"REDIRECT"
    routes["/big"] = b"BIG"
    assert keyset.fetch(url + "/good", ca_bundle=ca)["keys"][0]["kid"] == key.kid
    with pytest.raises(KeySetError, match="TLS verification failed"):
        keyset.fetch(url + "/good", ca_bundle=None)  # not signed by a CA the system trusts
    with pytest.raises(KeySetError, match="redirect"):
        keyset.fetch(url + "/moved", ca_bundle=ca)
    with pytest.raises(KeySetError, match="larger than"):
        keyset.fetch(url + "/big", ca_bundle=ca)
    with pytest.raises(KeySetError, match="HTTP 404"):
        keyset.fetch(url + "/missing", ca_bundle=ca)


def test_a_key_set_that_trickles_is_given_up_at_its_deadline(
    jwks_server: tuple[str, str, dict[str, bytes]],
) -> None:
    url, ca, routes = jwks_server
    routes["/trickle"] = b"TRICKLE"
    started = time.monotonic()
    with pytest.raises(KeySetError, match="did not arrive within 2 s"):
        within(15, lambda: keyset.fetch(url + "/trickle", ca_bundle=ca, timeout=2.0))
    assert time.monotonic() - started < 4


def test_a_page_in_another_serialization_verifies_through_full_canonicalization() -> None:
    key, clock = new_key(), Clock()
    t = trust(Peer(key), jwks(key), clock)
    served = orjson.loads(page(key))
    pretty = json.dumps(dict(reversed(list(served.items()))), indent=2).encode()  # member first, spaced
    assert t.verify_document(pretty, cty=CTY_TAXII)["objects"][0]["id"] == "indicator--1"
    # A second member inside what was signed is not a page any exchange serves.
    canonical = canonical_bytes({"more": False, "x_exchange_jws": "a.b.c"}, member="unused")
    token = sign_canonical(canonical, key=key, cty=CTY_TAXII, aud=US, iss=PEER)
    doubled = canonical[:-1] + b',"x_exchange_jws":"' + token.encode() + b'"}'
    assert reason(lambda: t.verify_document(doubled, cty=CTY_TAXII)) == "malformed payload"
