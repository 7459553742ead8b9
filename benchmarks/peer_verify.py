"""What verifying a peer's pages costs: one 1,000-object TAXII page, parsed as a plain feed does
(json.loads) and checked as a peer's feed does (strict JSON, RFC 8785 bytes, Ed25519 over them).

    .venv/bin/python -m benchmarks.peer_verify [--objects 1000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.intel.strictjson import canonical_text
from exchange.peer.trust import KeyCache, PeerTrust
from exchange.signing.jws import CTY_TAXII, attach_signature, canonical_envelope, sign_canonical
from exchange.signing.keys import SigningKey, public_x, thumbprint

ISSUER = "identity--0b9fcb4f-39c1-4c4e-9a4e-5a5e4c0a1f11"


def page(count: int, key: SigningKey) -> bytes:
    texts = []
    for n in range(count):
        texts.append(
            canonical_text(
                {
                    "type": "indicator",
                    "spec_version": "2.1",
                    "id": f"indicator--{uuid.uuid4()}",
                    "created": "2026-01-01T00:00:00.000Z",
                    "modified": "2026-01-01T00:00:00.000Z",
                    "name": f"C2 {n}",
                    "pattern_type": "stix",
                    "pattern": f"[ipv4-addr:value = '198.51.{n // 250 % 250}.{n % 250}']",
                    "valid_from": "2026-01-01T00:00:00.000Z",
                    "confidence": 80,
                }
            )
        )
    canonical = canonical_envelope({"more": True, "next": "x" * 40}, texts)
    token = sign_canonical(canonical, key=key, cty=CTY_TAXII, aud="cert-bd", iss=ISSUER)
    return attach_signature(canonical, token)


def median_ms(func, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    private = Ed25519PrivateKey.generate()
    key = SigningKey(kid=thumbprint(public_x(private.public_key())), private_key=private)
    body = page(args.objects, key)
    trust = PeerTrust(
        slug="cert-in",
        audience="cert-bd",
        issuer=ISSUER,
        cache=KeyCache(jwks={"keys": [key.public_jwk()]}, fetched_at=time.time(), tried_at=time.time()),
        fetch=None,
    )
    plain = median_ms(lambda: json.loads(body), args.rounds)
    verified = median_ms(lambda: trust.verify_document(body, cty=CTY_TAXII), args.rounds)
    print(f"page of {args.objects:,} objects, {len(body):,} bytes, median of {args.rounds}")
    print(f"{'plain feed (json.loads)':34} {plain:8.2f} ms")
    print(f"{'peer feed (strict JSON + verify)':34} {verified:8.2f} ms   {verified / plain:.1f}x")
    print(f"{'verified objects per second':34} {args.objects / verified * 1000:8,.0f}")


if __name__ == "__main__":
    main()
