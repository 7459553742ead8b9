"""Keys of small order verify forged signatures: refused when registered, skipped when verifying."""

from __future__ import annotations

import base64

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.signing import SignatureError, verify_detached
from exchange.signing.keys import b64url, ed25519_public_key
from exchange.signing.small_order import has_small_order

_P = 2**255 - 19
# The points of order 1, 2, 4 and 8 as libsodium lists them (its ge25519_has_small_order), and
# the same with the sign bit of x set.
SMALL = [
    (1).to_bytes(32, "little"),  # the identity: order 1
    (_P - 1).to_bytes(32, "little"),  # order 2
    bytes(32),  # y = 0: order 4
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
]
SMALL += [raw[:31] + bytes([raw[31] | 0x80]) for raw in SMALL if raw != (1).to_bytes(32, "little")]


def _raw(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.mark.parametrize("raw", SMALL, ids=lambda r: r.hex()[:8])
def test_every_small_order_point_is_found_and_refused(raw: bytes) -> None:
    assert has_small_order(raw)
    with pytest.raises(ValueError, match="small order"):
        ed25519_public_key(b64url(raw))


def test_real_keys_are_not_small_order() -> None:
    for _ in range(50):
        raw = _raw(Ed25519PrivateKey.generate())
        assert not has_small_order(raw)
        ed25519_public_key(b64url(raw))


def test_a_forged_signature_against_the_identity_key_does_not_verify() -> None:
    # Found by an outside probe: registered as a partner's key, the identity point made the
    # signature 0x01 followed by 63 zero bytes pass for any submission.
    identity = b64url((1).to_bytes(32, "little"))
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": identity, "kid": "weak"}]}
    header = b64url(
        orjson.dumps({"alg": "EdDSA", "kid": "weak", "typ": "JOSE", "cty": "stix+json;version=2.1"})
    )
    forged = header + ".." + base64.urlsafe_b64encode(b"\x01" + bytes(63)).decode().rstrip("=")
    with pytest.raises(SignatureError):
        verify_detached(forged, {"type": "bundle", "objects": []}, jwks=jwks)
