"""Whether a page (or export) really comes from a peer, signed for us.

A `PeerTrust` holds the peer's vetted key set as last fetched, and checks each signed document:
a detached JWS (exchange.signing.verify) by a key in that set, with `aud` naming us as the peer
knows us, `iss` the peer's identity and the expected content type. The key set is refreshed
when it is older than its maximum age, and once, rate-limited, when a token names a kid the
cached set lacks (so a key the peer pre-published and then rotated to is picked up); a key the
peer stopped publishing is gone from the set after that refresh. No HTTP here: the caller gives
the fetcher (exchange.peer.keyset.fetch) and where to keep the refreshed set.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchange.errors import InvalidJsonError
from exchange.intel.strictjson import loads_strict
from exchange.signing.jws import SIGNATURE_MEMBER, canonical_bytes
from exchange.signing.keys import b64url_decode
from exchange.signing.verify import (
    BAD_SIGNATURE,
    MALFORMED_PAYLOAD,
    MALFORMED_TOKEN,
    NOT_SIGNED,
    UNKNOWN_KID,
    SignatureError,
    VerifyResult,
    verify_detached,
)

ISSUER_MISMATCH = "issuer mismatch"
CONTENT_TYPE_MISMATCH = "content type mismatch"
KEYS_UNAVAILABLE = "peer keys unavailable"


@dataclass
class KeyCache:
    """The peer's key set as last vetted, and when it was fetched and last tried (epoch seconds)."""

    jwks: dict[str, Any]
    fetched_at: float | None = None
    tried_at: float | None = None

    def kids(self) -> set[str]:
        return {k["kid"] for k in self.jwks.get("keys", []) if isinstance(k, dict) and "kid" in k}


class PeerTrust:
    """Checks documents signed by one peer for this exchange."""

    def __init__(
        self,
        *,
        slug: str,
        audience: str,
        issuer: str,
        cache: KeyCache,
        fetch: Callable[[], dict[str, Any]] | None,
        save: Callable[[KeyCache], None] | None = None,
        max_age: float = 300.0,
        refetch_every: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.slug = slug
        self.audience = audience
        self.issuer = issuer
        self.cache = cache
        self._fetch = fetch
        self._save = save
        self.max_age = max_age
        self.refetch_every = refetch_every
        self._clock = clock
        self._refetched_for_kid = False  # at most one refetch for an unknown kid per trust (one run)
        self.refetches = 0

    def _refresh(self) -> None:
        assert self._fetch is not None
        now = self._clock()
        self.cache.tried_at = now
        self.refetches += 1
        try:
            jwks = self._fetch()
        except Exception:
            if self._save is not None:
                self._save(self.cache)
            raise
        self.cache = KeyCache(jwks=jwks, fetched_at=now, tried_at=now)
        if self._save is not None:
            self._save(self.cache)

    def _expired(self) -> bool:
        fetched = self.cache.fetched_at
        return fetched is None or self._clock() - fetched >= self.max_age

    def _may_refetch(self) -> bool:
        tried = self.cache.tried_at
        return not self._refetched_for_kid and (tried is None or self._clock() - tried >= self.refetch_every)

    def ensure_fresh(self) -> None:
        """Refresh the key set if it is past its maximum age (fail closed when that fails)."""
        if self._fetch is not None and self._expired():
            self._refresh_or_refuse("the cached key set expired")

    def _refresh_or_refuse(self, why: str) -> None:
        from exchange.peer.keyset import KeySetError

        try:
            self._refresh()
        except KeySetError as exc:
            raise SignatureError(KEYS_UNAVAILABLE, f"{why} and refreshing it failed: {exc.message}") from None

    def verify_token(self, token: Any, content: bytes, *, cty: str) -> VerifyResult:
        """Check a detached JWS over exactly `content` (fixed reasons in SignatureError)."""
        self.ensure_fresh()
        kid = _kid_of(token)
        if (
            kid is not None
            and kid not in self.cache.kids()
            and self._fetch is not None
            and self._may_refetch()
        ):
            self._refetched_for_kid = True
            self._refresh_or_refuse(f"kid {kid!r} is not in the cached key set")
        try:
            result = verify_detached(token, content, jwks=self.cache.jwks, audience=self.audience)
        except SignatureError as exc:
            if exc.reason == UNKNOWN_KID:
                raise SignatureError(
                    UNKNOWN_KID, f"kid {kid!r} is not in the key set {self.slug} publishes"
                ) from None
            raise
        if result.iss != self.issuer:
            raise SignatureError(ISSUER_MISMATCH, f"signed by {result.iss!r}, expected {self.issuer!r}")
        if result.cty != cty:
            raise SignatureError(CONTENT_TYPE_MISMATCH, f"cty is {result.cty!r}, expected {cty!r}")
        return result

    def verify_document(self, raw: bytes, *, cty: str) -> dict[str, Any]:
        """The JSON object in `raw`, once its `x_exchange_jws` member verifies; without the member."""
        fast = _served_form(raw)
        if fast is not None:
            # An exchange serves the canonical bytes it signed with the member appended last:
            # check the signature over exactly those bytes and use only what they hold. Anything
            # else (another serializer, a change) takes the full path below.
            content, token = fast
            try:
                self.verify_token(token, content, cty=cty)
            except SignatureError as exc:
                if exc.reason != BAD_SIGNATURE:
                    raise
            else:
                try:
                    document = loads_strict(content)
                except InvalidJsonError as exc:
                    raise SignatureError(MALFORMED_PAYLOAD, f"not strict JSON: {exc.message[:200]}") from None
                if not isinstance(document, dict) or SIGNATURE_MEMBER in document:
                    raise SignatureError(
                        MALFORMED_PAYLOAD, f"a signed object with a second {SIGNATURE_MEMBER}"
                    )
                return document
        try:
            document = loads_strict(raw)
        except InvalidJsonError as exc:
            raise SignatureError(MALFORMED_PAYLOAD, f"not strict JSON: {exc.message[:200]}") from None
        if not isinstance(document, dict):
            raise SignatureError(MALFORMED_PAYLOAD, "not a JSON object")
        if SIGNATURE_MEMBER not in document:
            raise SignatureError(NOT_SIGNED, f"no {SIGNATURE_MEMBER} member")
        token = document[SIGNATURE_MEMBER]
        if not isinstance(token, str):
            raise SignatureError(MALFORMED_TOKEN, f"{SIGNATURE_MEMBER} is not a string")
        self.verify_token(token, canonical_bytes(document), cty=cty)
        return {k: v for k, v in document.items() if k != SIGNATURE_MEMBER}


_MEMBER = b'"' + SIGNATURE_MEMBER.encode() + b'":"'
_TOKEN = re.compile(rb'([A-Za-z0-9_.-]{1,8192})"}\s*')


def _served_form(raw: bytes) -> tuple[bytes, str] | None:
    """(the bytes before the trailing signature member, closed; the token), when `raw` ends so."""
    at = raw.rfind(_MEMBER)
    if at <= 0:
        return None
    tail = _TOKEN.fullmatch(raw, at + len(_MEMBER))
    if tail is None:
        return None
    head = raw[:at]
    if head.endswith(b","):
        head = head[:-1]
    elif head != b"{":
        return None
    if head == b"{":
        return b"{}", tail.group(1).decode("ascii")
    return head + b"}", tail.group(1).decode("ascii")


def _kid_of(token: Any) -> str | None:
    """The kid a compact JWS names, if its header reads at all (verify_detached judges the rest)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    try:
        header = loads_strict(b64url_decode(token.split(".", 1)[0]), max_depth=4)
    except (ValueError, TypeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
