"""Settings read from EXCHANGE_* environment variables; defaults run with nothing set."""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SECRET_FILE = "secret.key"
# Settings that may be read from a file named by EXCHANGE_<NAME>_FILE (Docker and Kubernetes
# secrets are files): the value never has to sit in the environment or a compose file.
FILE_SETTINGS = ("secret_key", "database_url", "database_replica_url")


class SettingsFileError(ValueError):
    """An EXCHANGE_*_FILE that names no readable, non-empty file (the message names the file only)."""


class _SecretFiles(PydanticBaseSettingsSource):
    """EXCHANGE_<NAME>_FILE for the settings in FILE_SETTINGS: the file's text, stripped."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[object, str, bool]:
        return None, field_name, False  # __call__ reads them all at once

    def __call__(self) -> dict[str, object]:
        values: dict[str, object] = {}
        for name in FILE_SETTINGS:
            variable = f"EXCHANGE_{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if os.environ.get(variable):
                raise SettingsFileError(f"set {variable} or {variable}_FILE, not both")
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
                raise SettingsFileError(f"{variable}_FILE={path}: cannot read it ({reason})") from None
            if not value:
                raise SettingsFileError(f"{variable}_FILE={path}: the file is empty")
            values[name] = value
        return values


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error never repeats a value (it may be a secret).
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore", hide_input_in_errors=True)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./exchange-data")
    # May carry a password: kept out of repr and logs (also EXCHANGE_DATABASE_URL_FILE).
    database_url: str | None = Field(default=None, repr=False)
    # A PostgreSQL streaming replica for TAXII and REST reads; writes, the disclosure ledger and
    # every access decision (credentials, partners, agreements) stay on the primary.
    database_replica_url: str | None = Field(default=None, repr=False)
    # How long reads go to the primary after the replica failed to answer, before it is tried again.
    database_replica_retry_seconds: float = Field(default=10.0, gt=0)
    host: str = "127.0.0.1"
    port: int = 8000
    # API processes for `exchange serve` (uvicorn workers). Any worker answers any request. Rate
    # limits are kept per process without a database write per request, so each process enforces
    # its share (the limit divided by this).
    workers: int = Field(default=1, ge=1)
    # Public base URL partners reach us at (behind a proxy); derived from the request when unset.
    public_url: str | None = None
    # Signs `next` cursors and session cookies. Generated into the data dir when unset in
    # development; production refuses to start without it.
    secret_key: str | None = Field(default=None, repr=False)
    api_root: str = "root"
    # Addresses (comma-separated, CIDR allowed) of the TLS-terminating proxies whose
    # X-Forwarded-For and X-Client-Cert / X-Client-Verify headers are believed (exchange.auth.certs,
    # exchange.limits.client); empty: the peer address is the client, whatever headers say.
    trusted_proxies: str = ""
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
    # One envelope's POST (upload, the partner's answer and its status resource) at most this long.
    push_max_post_seconds: float = 120.0
    # The signing key in use longer than this is flagged for rotation.
    signing_key_rotate_days: int = 365
    # Web pages (/ui/): a session ends after this long without a request, and after this long at most.
    ui_idle_minutes: float = 30.0
    ui_session_hours: float = 12.0
    # A failed sign-in is answered no sooner than this (doubling with each recent failure from
    # the same address, up to ui_login_max_delay_seconds).
    ui_login_delay_seconds: float = 1.0
    ui_login_max_delay_seconds: float = 8.0

    # Limits (README "Limits and security headers"). Requests per minute per partner credential
    # (token bucket: this rate, `burst` at once); an agreement's `rate_limit` overrides it.
    # 0 turns the limit off.
    rate_limit_per_minute: int = Field(default=6000, ge=0)
    rate_limit_burst: int = Field(default=600, ge=0)
    # Staff credentials (admin, analyst): no limit by default (0); set to cap a leaked staff key.
    rate_limit_staff_per_minute: int = Field(default=0, ge=0)
    rate_limit_staff_burst: int = Field(default=1000, ge=0)
    # Failed logins from one address (IPv6: its /64) in a minute before further attempts are
    # answered 429 without checking the key; the flood is one audit row per address per minute.
    login_failures_per_minute: int = Field(default=10, ge=1)
    # Strict-Transport-Security max-age, sent when public_url is https (0: never sent).
    hsts_seconds: int = Field(default=31_536_000, ge=0)

    # Peering: the name peers know us by (their partner slug for us, the `aud` of what they sign
    # for us); `exchange peer add --our-name` overrides it per peer.
    peer_name: str | None = None
    # A peer's cached key set is fetched again once it is this old, and at most this often when
    # a page names a kid it lacks (a key the peer rotated to).
    peer_keys_max_age_seconds: float = 300.0
    peer_keys_refetch_seconds: float = 60.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _SecretFiles(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.environment == "production":
            if not self.secret_key or len(self.secret_key) < 32:
                raise ValueError("EXCHANGE_SECRET_KEY must be set to at least 32 characters in production")
            if not self.database_url:
                raise ValueError("EXCHANGE_DATABASE_URL must be set in production")
        self.trusted_proxy_networks  # noqa: B018  (fails fast on a bad entry)
        if self.database_replica_url and not self.database_replica_url.startswith("postgresql"):
            raise ValueError("EXCHANGE_DATABASE_REPLICA_URL must be a PostgreSQL URL (a streaming replica)")
        if self.database_replica_url and not (self.database_url or "").startswith("postgresql"):
            raise ValueError("EXCHANGE_DATABASE_REPLICA_URL needs a PostgreSQL EXCHANGE_DATABASE_URL primary")
        return self

    @property
    def trusted_proxy_networks(self) -> list[Any]:
        from exchange.auth.certs import parse_networks

        return parse_networks(self.trusted_proxies)

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
