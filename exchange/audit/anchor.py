"""Anchor the audit chain in a key the database does not hold: the exchange's Ed25519 keyring.

Why the signing keyring and not an HMAC: the keyring lives in the data directory (never in
the database), every process that writes the trail already has it (it signs what partners
receive), and an Ed25519 signature can be checked with the public key alone, so an auditor
can verify an exported checkpoint against the published JWKS without holding any secret.

Three kinds of signature, told apart by their protected header's `cty` so one can never be
passed off as another (nor as anything the exchange signs for partners):

- every event, over its seq and hash, written with it;
- the head, over the chain's last seq and hash, rewritten on every append;
- an exported checkpoint, over seq, hash and when it was made, kept outside the exchange.

The anchor travels as an execution option on the engine, like the SQLite write-lock option,
so every session on an anchored engine signs what it appends.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from exchange.signing.keys import ALG, KeyRing, KeyRingError, b64url, b64url_decode

OPTION = "exchange_audit_anchor"
EVENT = "exchange-audit-event"
HEAD = "exchange-audit-head"
CHECKPOINT = "exchange-audit-checkpoint"


class AuditAnchor:
    """Signs chain links with the keyring's current key; checks them against every published key."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def sign(self, kind: str, claims: Mapping[str, Any]) -> str:
        """A compact JWS (payload detached) over `claims`, of the given kind."""
        try:
            key = self.keyring.current()
        except KeyRingError:
            key = self.keyring.ensure()  # a first command before `exchange init` makes the keys
        header = {"alg": ALG, "kid": key.kid, "cty": kind}
        protected = b64url(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))
        payload = b64url(orjson.dumps(dict(claims), option=orjson.OPT_SORT_KEYS))
        signature = key.sign(f"{protected}.{payload}".encode("ascii"))
        return f"{protected}..{b64url(signature)}"

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """kid -> public key, for every key the keyring still publishes (current, next, retired)."""
        return {k.kid: Ed25519PublicKey.from_public_bytes(b64url_decode(k.x)) for k in self.keyring.keys()}


def attach(engine: Engine, keyring: KeyRing) -> Engine:
    """Make every session on `engine` sign the audit events it appends."""
    engine.update_execution_options(**{OPTION: AuditAnchor(keyring)})
    return engine


def of(db: Session) -> AuditAnchor | None:
    """The anchor of the engine behind `db`, or None when it has none."""
    found = db.connection().get_execution_options().get(OPTION)
    return found if isinstance(found, AuditAnchor) else None


def check(
    token: str | None, kind: str, claims: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]
) -> tuple[str | None, str | None]:
    """(kid, None) when `token` signs exactly `claims` as `kind` with a known key, else (kid, why not)."""
    if not token:
        return None, "carries no signature"
    try:
        protected, payload, signature = token.split(".")
        header = orjson.loads(b64url_decode(protected))
        kid = header.get("kid") if isinstance(header, dict) else None
    except (ValueError, orjson.JSONDecodeError):
        return None, "has a malformed signature"
    if not isinstance(kid, str):
        return None, "has a malformed signature"
    if payload or header.get("alg") != ALG or header.get("cty") != kind:
        return kid, "has a signature of another kind"
    key = keys.get(kid)
    if key is None:
        return kid, f"is signed by key {kid}, which the keyring no longer holds"
    expected = b64url(orjson.dumps(dict(claims), option=orjson.OPT_SORT_KEYS))
    try:
        key.verify(b64url_decode(signature), f"{protected}.{expected}".encode("ascii"))
    except (InvalidSignature, ValueError):
        return kid, "has a signature that does not match"
    return kid, None


def checkpoint_claims(seq: int, digest: str, iss: str | None = None) -> dict[str, Any]:
    """What an exported checkpoint signs: the head, when it was taken, and by whom."""
    claims: dict[str, Any] = {"seq": seq, "hash": digest, "iat": int(time.time())}
    if iss:
        claims["iss"] = iss
    return claims
