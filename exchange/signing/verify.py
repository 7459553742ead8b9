"""Verify the exchange's detached JWS signatures against a JWK Set (ours, or a partner's).

Every failure is a `SignatureError` whose `reason` is one of the fixed strings below, so
callers (TAXII status messages, `exchange verify`, tests) can rely on it.
"""

from __future__ import annotations

import binascii
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.errors import BadRequestError, ExchangeError
from exchange.signing.jws import SIGNATURE_MEMBER, canonical_bytes, signing_input
from exchange.signing.keys import ALG, b64url_decode
from exchange.signing.small_order import has_small_order

MALFORMED_TOKEN = "malformed token"
NOT_DETACHED = "not detached"
UNKNOWN_KID = "unknown kid"
ALG_NOT_EDDSA = "alg not EdDSA"
BAD_SIGNATURE = "bad signature"
AUDIENCE_MISMATCH = "audience mismatch"
NOT_SIGNED = "not signed"
MALFORMED_PAYLOAD = "malformed payload"

JWKS_MAX_BYTES = 1024 * 1024
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


class SignatureError(ExchangeError):
    status = 422
    title = "Invalid signature"

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason} ({detail})")
        self.reason = reason
        self.detail = detail


class JwksError(BadRequestError):
    title = "Unusable JWK Set"


@dataclass(frozen=True)
class VerifyResult:
    kid: str
    header: dict[str, Any]

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def iat(self) -> int | None:
        return self.header.get("iat")

    @property
    def iss(self) -> str | None:
        return self.header.get("iss")

    @property
    def aud(self) -> str | None:
        return self.header.get("aud")

    @property
    def cty(self) -> str | None:
        return self.header.get("cty")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate member {name!r}")
        result[name] = value
    return result


def _decode_header(segment: str) -> dict[str, Any]:
    try:
        header = json.loads(b64url_decode(segment), object_pairs_hook=_no_duplicates)
    except (ValueError, binascii.Error) as exc:
        raise SignatureError(MALFORMED_TOKEN, "the protected header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise SignatureError(MALFORMED_TOKEN, "the protected header is not a JSON object")
    return header


def _find_key(jwks: Mapping[str, Any], kid: str) -> Ed25519PublicKey:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for jwk in keys if isinstance(keys, list) else ():
        if not isinstance(jwk, Mapping) or jwk.get("kid") != kid:
            continue
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALG) != ALG:
            continue
        try:
            raw = b64url_decode(jwk["x"])
            if has_small_order(raw):
                continue  # it would verify forged signatures (exchange.signing.small_order)
            return Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, binascii.Error):
            continue
    raise SignatureError(UNKNOWN_KID, f"no Ed25519 key with kid {kid!r} in the JWK Set")


def verify_detached(
    token: str,
    payload: Mapping[str, Any] | bytes,
    *,
    jwks: Mapping[str, Any],
    audience: str | None = None,
    member: str = SIGNATURE_MEMBER,
) -> VerifyResult:
    """Check a detached compact JWS over `payload` (a JSON object, or its canonical bytes as signed).

    A JSON object is canonicalised (RFC 8785) without its signature `member`; bytes are taken
    as the exact signed content. `audience`, when given, must equal the header's `aud`.
    """
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise SignatureError(MALFORMED_TOKEN, "not ASCII") from exc
    if not isinstance(token, str):
        raise SignatureError(MALFORMED_TOKEN, "not a string")
    segments = token.split(".")
    if len(segments) != 3 or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise SignatureError(MALFORMED_TOKEN, "not a JWS compact serialization")
    protected, payload_segment, signature_segment = segments
    if not protected or not signature_segment:
        raise SignatureError(MALFORMED_TOKEN, "empty header or signature")
    if payload_segment:
        raise SignatureError(NOT_DETACHED, "the token carries its payload; expected <header>..<signature>")
    header = _decode_header(protected)
    if "crit" in header:
        # RFC 7515 section 4.1.11: a recipient must reject critical extensions it does not understand.
        raise SignatureError(MALFORMED_TOKEN, f"unsupported critical header parameters {header['crit']!r}")
    if header.get("b64", True) is not True:
        raise SignatureError(MALFORMED_TOKEN, "unencoded payloads (RFC 7797 b64=false) are not used")
    if header.get("alg") != ALG:
        raise SignatureError(ALG_NOT_EDDSA, f"alg is {header.get('alg')!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignatureError(UNKNOWN_KID, "the header names no kid")
    public_key = _find_key(jwks, kid)

    if isinstance(payload, (bytes, bytearray, memoryview)):
        content = bytes(payload)
    elif isinstance(payload, Mapping):
        try:
            content = canonical_bytes(payload, member)
        except rfc8785.CanonicalizationError as exc:
            raise SignatureError(MALFORMED_PAYLOAD, f"not representable in RFC 8785: {exc}") from exc
    else:
        raise TypeError("payload must be a JSON object or bytes")

    try:
        signature = b64url_decode(signature_segment)
        public_key.verify(signature, signing_input(protected.encode("ascii"), content))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureError(BAD_SIGNATURE, "the content or the header changed after signing") from exc

    if audience is not None:
        aud = header.get("aud")
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise SignatureError(AUDIENCE_MISMATCH, f"signed for {aud!r}, expected {audience!r}")
    return VerifyResult(kid=kid, header=header)


def verify_file(path: str | Path, *, jwks: Mapping[str, Any], audience: str | None = None) -> VerifyResult:
    """Verify a saved bundle or TAXII envelope carrying `x_exchange_jws`, or any file with a `<file>.jws` sidecar.

    When both the member and a sidecar are present, both must verify. A sidecar named on its
    own (`FILE.jws`) verifies the file `FILE` beside it.
    """
    path = _signed_file(Path(path))
    raw = path.read_bytes()
    sidecar = path.with_name(path.name + ".jws")
    sidecar_token = (
        sidecar.read_text(encoding="ascii", errors="replace").strip() if sidecar.is_file() else None
    )
    try:
        document = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        document = None

    if not isinstance(document, dict):
        # Not a JSON object: only a sidecar can sign it, over the file's exact bytes.
        if sidecar_token is None:
            raise SignatureError(
                NOT_SIGNED, f"{path.name} is not a JSON object and has no sidecar {sidecar.name}"
            )
        return verify_detached(sidecar_token, raw, jwks=jwks, audience=audience)

    tokens: list[str] = []
    if SIGNATURE_MEMBER in document:
        embedded = document[SIGNATURE_MEMBER]
        if not isinstance(embedded, str):
            raise SignatureError(MALFORMED_TOKEN, f"{SIGNATURE_MEMBER} is not a string")
        tokens.append(embedded)
    if sidecar_token is not None:
        tokens.append(sidecar_token)
    if not tokens:
        raise SignatureError(NOT_SIGNED, f"no {SIGNATURE_MEMBER} member and no sidecar {sidecar.name}")
    try:
        content = canonical_bytes(document)
    except rfc8785.CanonicalizationError as exc:
        raise SignatureError(MALFORMED_PAYLOAD, f"not representable in RFC 8785: {exc}") from exc
    results = [verify_detached(token, content, jwks=jwks, audience=audience) for token in tokens]
    return results[0]


def _signed_file(path: Path) -> Path:
    """`path` itself, or for a sidecar `FILE.jws` holding a compact JWS, the file it signs."""
    if path.suffix != ".jws" or path.with_name(path.name + ".jws").is_file():
        return path
    with path.open("rb") as handle:  # a token is short; a large file is not one
        head = handle.read(64 * 1024).strip()
    if not head or head.startswith(b"{") or head.count(b".") != 2:
        return path
    signed = path.with_name(path.name[: -len(".jws")])
    if not signed.is_file():
        raise SignatureError(
            NOT_SIGNED, f"{path.name} is a signature, but the file it signs, {signed.name}, is not beside it"
        )
    return signed


def load_jwks(source: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """A JWK Set from a file path or an http(s) URL (such as a partner's /.well-known/jwks.json)."""
    if source.startswith(("http://", "https://")):
        request = urllib.request.Request(
            source,
            headers={"Accept": "application/jwk-set+json, application/json", "User-Agent": "exchange-verify"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
                body = response.read(JWKS_MAX_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise JwksError(f"cannot fetch the JWK Set from {source}: {getattr(exc, 'reason', exc)}") from exc
    else:
        try:
            with open(source, "rb") as handle:
                body = handle.read(JWKS_MAX_BYTES + 1)
        except OSError as exc:
            raise JwksError(f"cannot read the JWK Set {source}: {exc.strerror or exc}") from exc
    if len(body) > JWKS_MAX_BYTES:
        raise JwksError(f"the JWK Set at {source} is larger than {JWKS_MAX_BYTES} bytes")
    try:
        jwks = json.loads(body)
    except ValueError as exc:
        raise JwksError(f"{source} is not JSON") from exc
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise JwksError(f'{source} is not a JWK Set (expected {{"keys": [...]}})')
    return jwks
