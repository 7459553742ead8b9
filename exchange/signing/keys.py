"""The exchange's Ed25519 keyring: one current, one pre-published next, retired keys kept for archives.

Layout of the keyring directory (mode 0700):

    keyring.json     public metadata only: kid, state, created, activated, retired, x
    <kid>.pem        each private key, PKCS#8 PEM, mode 0600
    .lock            flock(2) target serialising ensure/rotate/remove across processes

Readers never take the lock: every write goes to a temporary file renamed into place, private
keys are written before the metadata naming them and deleted after the metadata dropping them.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.config import Settings
from exchange.errors import ConflictError, ExchangeError, NotFoundError
from exchange.signing.small_order import has_small_order

METADATA_FILE = "keyring.json"
LOCK_FILE = ".lock"
ALG = "EdDSA"
KeyState = Literal["current", "next", "retired"]
# An Ed25519 public key's `x` (RFC 8037 section 2): 32 bytes, base64url without padding.
_X = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)
_STATE_ORDER = {"current": 0, "next": 1, "retired": 2}


class KeyRingError(ExchangeError):
    title = "Signing keyring error"


class InsecureKeyFileError(KeyRingError):
    """A private key file others could read: refused rather than used."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ed25519_public_key(x: object) -> Ed25519PublicKey:
    """The Ed25519 public key a JWK's `x` names; ValueError for anything else (another length,
    characters outside base64url, padding, non-canonical trailing bits, not text at all)."""
    shape = "a 32-byte Ed25519 public key in base64url (43 characters, no padding)"
    if not isinstance(x, str) or not _X.fullmatch(x):
        raise ValueError(f"x must be {shape}")
    raw = b64url_decode(x)
    if b64url(raw) != x:
        raise ValueError(f"x must be {shape}; its last character is not canonical")
    if has_small_order(raw):
        raise ValueError(
            "x is a point of small order, not a usable Ed25519 public key: any forged signature "
            "would verify against it"
        )
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError(f"x must be {shape}") from None


def thumbprint(x: str) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key given by its `x`."""
    # Required members only, sorted, no whitespace (RFC 7638 section 3.2; RFC 8037 section 2).
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_x(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64url(raw)


def public_jwk(kid: str, x: str) -> dict[str, str]:
    """The published form of a key: standard JWK members only."""
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": ALG}


@dataclass(frozen=True)
class SigningKey:
    """A private key and its kid. The key never appears in repr or logs."""

    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.kid, public_x(self.private_key.public_key()))


@dataclass(frozen=True)
class KeyInfo:
    """One entry of keyring.json (public metadata)."""

    kid: str
    state: KeyState
    x: str
    created: str
    activated: str | None = None
    retired: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "state": self.state,
            "x": self.x,
            "created": self.created,
            "activated": self.activated,
            "retired": self.retired,
        }


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def default_directory(settings: Settings) -> Path:
    """Where the keyring lives: EXCHANGE_SIGNING_KEY_DIR when configured, else <data_dir>/signing."""
    configured = getattr(settings, "signing_key_dir", None)
    return Path(configured) if configured else settings.data_dir / "signing"


class KeyRing:
    """The exchange's signing keys in `directory` (created owner-only on first write)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._meta_path = self.directory / METADATA_FILE
        self._cache_lock = threading.Lock()
        self._meta_raw: bytes | None = None
        self._meta: list[KeyInfo] = []
        self._private: dict[str, SigningKey] = {}

    def __repr__(self) -> str:
        return f"KeyRing({str(self.directory)!r})"

    # -- public API ---------------------------------------------------------------------------

    def ensure(self) -> SigningKey:
        """Create a current key and a pre-published next key where missing (idempotent); the current key."""
        with self._locked():
            keys = self._read_meta_uncached()
            changed = False
            if not any(k.state == "current" for k in keys):
                waiting = next((k for k in keys if k.state == "next"), None)
                if waiting is not None:
                    # A published next key is the natural successor; promoting it keeps the JWKS stable.
                    keys = [
                        _replace(k, state="current", activated=_now()) if k is waiting else k for k in keys
                    ]
                else:
                    keys.append(self._create_key("current"))
                changed = True
            if not any(k.state == "next" for k in keys):
                keys.append(self._create_key("next"))
                changed = True
            if changed:
                self._write_meta(keys)
        return self.current()

    def current(self) -> SigningKey:
        """The key that signs now."""
        info = next((k for k in self._keys() if k.state == "current"), None)
        if info is None:
            raise KeyRingError(f"no current signing key in {self.directory}; run `exchange init`")
        return self._load_private(info)

    def rotate(self) -> tuple[str, str, str]:
        """Next becomes current, current becomes retired (still published), a fresh next is made.

        Returns (old_kid, new_current_kid, new_next_kid).
        """
        self.ensure()
        with self._locked():
            keys = self._read_meta_uncached()
            old = next(k for k in keys if k.state == "current")
            successor = next(k for k in keys if k.state == "next")
            # The successor must be usable before anything changes state.
            self._load_private(successor)
            now = _now()
            fresh = self._create_key("next")
            rotated: list[KeyInfo] = []
            for k in keys:
                if k is old:
                    rotated.append(_replace(k, state="retired", retired=now))
                elif k is successor:
                    rotated.append(_replace(k, state="current", activated=now))
                else:
                    rotated.append(k)
            rotated.append(fresh)
            self._write_meta(rotated)
        return old.kid, successor.kid, fresh.kid

    def remove_retired(self, kid: str) -> None:
        """Stop publishing a retired key and delete its private key file."""
        with self._locked():
            keys = self._read_meta_uncached()
            info = next((k for k in keys if k.kid == kid), None)
            if info is None:
                raise NotFoundError(f"no signing key {kid!r} in the keyring")
            if info.state != "retired":
                raise ConflictError(f"signing key {kid!r} is {info.state}; only retired keys can be removed")
            self._write_meta([k for k in keys if k.kid != kid])
            with suppress(FileNotFoundError):
                self._key_path(kid).unlink()
            self._private.pop(kid, None)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK Set: current, next, then retired keys (newest retirement first)."""
        return {"keys": [public_jwk(k.kid, k.x) for k in self.keys()]}

    def keys(self) -> list[KeyInfo]:
        """The keyring's metadata, current first."""
        keys = self._keys()
        retired = sorted(
            (k for k in keys if k.state == "retired"), key=lambda k: k.retired or "", reverse=True
        )
        return [k for k in keys if k.state == "current"] + [k for k in keys if k.state == "next"] + retired

    # -- metadata -----------------------------------------------------------------------------

    def _keys(self) -> list[KeyInfo]:
        """keyring.json as it is now (another process may have rotated); parsed only when it changed."""
        try:
            raw = self._meta_path.read_bytes()
        except FileNotFoundError:
            return []
        with self._cache_lock:
            # Compared by content, not mtime: two rotations within one timestamp tick must not be missed.
            if raw != self._meta_raw:
                self._meta = self._parse_meta(raw)
                self._meta_raw = raw
            return list(self._meta)

    def _read_meta_uncached(self) -> list[KeyInfo]:
        try:
            raw = self._meta_path.read_bytes()
        except FileNotFoundError:
            return []
        return self._parse_meta(raw)

    def _parse_meta(self, raw: bytes) -> list[KeyInfo]:
        try:
            data = json.loads(raw)
            keys = [
                KeyInfo(
                    kid=e["kid"],
                    state=e["state"],
                    x=e["x"],
                    created=e["created"],
                    activated=e.get("activated"),
                    retired=e.get("retired"),
                )
                for e in data["keys"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"{self._meta_path} is not a valid keyring file") from exc
        for k in keys:
            if k.state not in _STATE_ORDER:
                raise KeyRingError(f"{self._meta_path}: key {k.kid!r} has unknown state {k.state!r}")
            if thumbprint(k.x) != k.kid:
                raise KeyRingError(f"{self._meta_path}: key {k.kid!r} does not match its public key")
        for state in ("current", "next"):
            if sum(k.state == state for k in keys) > 1:
                raise KeyRingError(f"{self._meta_path} names more than one {state} key")
        return keys

    def _write_meta(self, keys: list[KeyInfo]) -> None:
        body = json.dumps({"keys": [k.as_dict() for k in keys]}, indent=2).encode() + b"\n"
        _atomic_write(self._meta_path, body, mode=0o644)

    # -- private keys -------------------------------------------------------------------------

    def _key_path(self, kid: str) -> Path:
        return self.directory / f"{kid}.pem"

    def _create_key(self, state: KeyState) -> KeyInfo:
        private = Ed25519PrivateKey.generate()
        x = public_x(private.public_key())
        kid = thumbprint(x)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _atomic_write(self._key_path(kid), pem, mode=0o600)
        now = _now()
        return KeyInfo(kid=kid, state=state, x=x, created=now, activated=now if state == "current" else None)

    def _load_private(self, info: KeyInfo) -> SigningKey:
        cached = self._private.get(info.kid)
        if cached is not None:
            return cached
        path = self._key_path(info.kid)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise KeyRingError(f"private key file for {info.kid} is missing: {path}") from exc
        with os.fdopen(fd, "rb") as handle:
            # Checked on the open file, so the mode we judge is the mode of what we read.
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & 0o077:
                raise InsecureKeyFileError(
                    f"refusing to load private key {path}: its mode is {mode:04o}, which lets group or "
                    f"others access it; restrict it with `chmod 600 {path}`"
                )
            pem = handle.read()
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            # The exception text from the PEM parser is not echoed: keep key material out of logs.
            raise KeyRingError(f"{path} is not an unencrypted PKCS#8 PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyRingError(f"{path} is not an Ed25519 private key")
        if thumbprint(public_x(private.public_key())) != info.kid:
            raise KeyRingError(f"{path} does not hold the key {info.kid} the keyring names")
        key = SigningKey(kid=info.kid, private_key=private)
        self._private[info.kid] = key
        return key

    # -- locking ------------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # mkdir's mode is filtered by the umask, and a pre-existing directory may be wider.
            if stat.S_IMODE(self.directory.stat().st_mode) != 0o700:
                os.chmod(self.directory, 0o700)
        except OSError:
            pass  # a directory we cannot chmod (read-only mount): its key files are still checked

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_directory()
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _replace(info: KeyInfo, **changes: Any) -> KeyInfo:
    return KeyInfo(**{**info.as_dict(), **changes})


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask may have narrowed it; never widened
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
