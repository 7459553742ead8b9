"""Settings read from EXCHANGE_* environment variables; defaults run with nothing set."""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FILE = "secret.key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./exchange-data")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Public base URL partners reach us at (behind a proxy); derived from the request when unset.
    public_url: str | None = None
    # Signs `next` cursors and session cookies. Generated into the data dir when unset in
    # development; production refuses to start without it.
    secret_key: str | None = Field(default=None, repr=False)
    api_root: str = "root"
    # The STIX identity of the national CERT: created_by_ref of what it publishes, and what
    # third-party sources are replaced by when an agreement anonymises them.
    identity_id: str = "identity--aeb752b6-4288-401d-b1df-705f70901e85"
    identity_name: str = "National CERT"
    max_content_length: int = 10 * 1024 * 1024
    max_page_size: int = 1000
    status_ttl_days: int = 7
    key_cache_seconds: float = 60.0
    # How deeply JSON may nest in a request body.
    max_json_depth: int = 64
    # Objects in one TAXII envelope or REST bundle: one transaction stores them all, holding the
    # collection's write lock meanwhile (85,000 tiny objects held it for 20 s).
    max_envelope_objects: int = 10_000
    # How long a request waits for a database lock before it is answered 503 with Retry-After.
    database_busy_seconds: float = 30.0
    log_level: str = "INFO"
    # Where the Ed25519 signing keys live (owner-only); default <data_dir>/signing.
    signing_key_dir: Path | None = None
    # Scheduled work (feeds, push delivery, housekeeping).
    # Run the scheduler inside `exchange serve` (one process leads; see `exchange scheduler`).
    scheduler_enabled: bool = True
    # The leader renews its database lease this often; another process takes over after ttl.
    scheduler_lease_seconds: float = 30.0
    # How often the leader re-reads feeds and agreements to add, change or drop jobs.
    scheduler_sync_seconds: float = 30.0
    # Runs that start later than this after their time are skipped (and coalesced).
    scheduler_misfire_grace_seconds: int = 300
    # A failed feed run is retried after base * 2^(attempt-1) seconds, at most this many times.
    feed_retry_base_seconds: float = 60.0
    feed_retries: int = 3
    # After this many failed runs in a row a feed is marked unhealthy.
    feed_unhealthy_after: int = 3
    # One feed download may not exceed this many bytes, nor a run this many seconds.
    feed_max_bytes: int = 512 * 1024 * 1024
    feed_max_run_seconds: float = 3600.0
    # Objects per ingest transaction for feeds and per envelope for push.
    feed_batch_size: int = 1000
    push_batch_size: int = 500
    push_timeout_seconds: float = 30.0
    # The signing key in use longer than this is flagged for rotation.
    signing_key_rotate_days: int = 365
    # Peering: the name peers know us by (their partner slug for us, the `aud` of what they sign
    # for us); `exchange peer add --our-name` overrides it per peer.
    peer_name: str | None = None
    # A peer's cached key set is fetched again once it is this old, and at most this often when
    # a page names a kid it lacks (a key the peer rotated to).
    peer_keys_max_age_seconds: float = 300.0
    peer_keys_refetch_seconds: float = 60.0

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.environment == "production":
            if not self.secret_key or len(self.secret_key) < 32:
                raise ValueError("EXCHANGE_SECRET_KEY must be set to at least 32 characters in production")
            if not self.database_url:
                raise ValueError("EXCHANGE_DATABASE_URL must be set in production")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'exchange.db').resolve()}"

    # Reading settings never writes a file. The two methods below create what a new exchange
    # needs; only the paths allowed to create one call them (`init`, `demo`, `serve`, create_app).

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.data_dir, 0o700)
        return self.data_dir

    def ensure_secret(self) -> None:
        """Generate the development secret into the data dir unless one is configured or kept."""
        if self.secret_key:
            return
        path = self.ensure_data_dir() / SECRET_FILE
        if path.exists():
            return
        # Written aside, then linked into place: several workers starting at once all end up
        # reading the one secret that won, never a half-written file.
        draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)

    def resolved_secret(self) -> bytes:
        """The cursor/cookie secret: configured, else the one kept in the data dir (owner-only)."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / SECRET_FILE
        try:
            return path.read_text().strip().encode()
        except FileNotFoundError:
            raise ValueError(
                f"no EXCHANGE_SECRET_KEY and no {path.resolve()}: set the variable, or let create_app "
                "(`exchange serve`) generate the file"
            ) from None


@lru_cache
def get_settings() -> Settings:
    return Settings()
