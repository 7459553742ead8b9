"""API keys: generation, slow hashing (scrypt) and a short-lived cache of verified keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_key(credential_id: str) -> str:
    """A new API key; it starts with its credential id so a bare Bearer key finds its row."""
    return f"{credential_id}.{secrets.token_urlsafe(32)}"


def new_credential_id(prefix: str = "cred") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_key(key: str) -> str:
    """A salted scrypt hash of `key`, self-describing so parameters can change later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_key(key: str, stored: str) -> bool:
    """True when `key` matches the stored hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(key.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


_DUMMY_HASH: list[str] = []


def dummy_check(key: str) -> None:
    """Spend what checking `key` against a real stored hash would cost, for callers with none.

    The dummy hash has the same scrypt parameters as real ones and matches no key.
    """
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_key(secrets.token_urlsafe(32)))
    verify_key(key, _DUMMY_HASH[0])


class VerifiedKeyCache:
    """Remembers (credential id, key) pairs that matched a given stored hash, briefly.

    Only the hash check is cached: the credential row (revocation, expiry) is read on every
    request, so revoking takes effect at once everywhere.
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[tuple[str, bytes], tuple[str, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _fingerprint(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def matches(self, credential_id: str, key: str, stored_hash: str) -> bool:
        if self._ttl <= 0:
            return verify_key(key, stored_hash)
        slot = (credential_id, self._fingerprint(key))
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(slot)
        if entry and entry[0] == stored_hash and entry[1] > now:
            return True
        if not verify_key(key, stored_hash):
            return False
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[slot] = (stored_hash, now + self._ttl)
        return True

    def recently_verified(self, key: str) -> bool:
        """Whether this key matched its credential within the cache's lifetime (the key names its
        credential: `<credential id>.<secret>`). Says nothing of revocation or expiry."""
        if self._ttl <= 0:
            return False
        slot = (key.partition(".")[0], self._fingerprint(key))
        with self._lock:
            entry = self._entries.get(slot)
        return entry is not None and entry[1] > time.monotonic()

    def forget(self, credential_id: str) -> None:
        with self._lock:
            for slot in [s for s in self._entries if s[0] == credential_id]:
                del self._entries[slot]
