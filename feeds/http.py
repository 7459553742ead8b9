"""HTTP(S) for feeds: TLS always verified (a per-feed CA bundle may be trusted), timeouts,
an overall deadline, a size cap, and no credentials in errors or logs."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import HTTPBasicAuth

from exchange.feed.service import safe_url
from exchange.http_deadline import HEAD, DeadlineSession
from feeds.masking import credential_forms, mask, remote_text

_CHUNK = 64 * 1024
# No line of an IoC list is longer (a URL, a hash, a CSV row with its description); a longer one
# is counted as failed and skipped, never buffered.
MAX_LINE_BYTES = 64 * 1024
# urllib3 logs every request line, query string included (where feeds put API keys), at DEBUG.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


class HttpError(Exception):
    """The feed's server could not be used; the message names the URL without secrets."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


_DEFAULT_PORTS = {"http": 80, "https": 443}


class _FeedSession(DeadlineSession):
    """A session that sends a feed's credentials only to the feed's own origin.

    requests drops `Authorization` on a redirect to another host, but keeps every other header
    (X-Api-Key, MISP's Authorization under another name, ...). Here a redirect to another origin
    (scheme, host or port) drops the Authorization header and every configured auth header, for
    that hop and all after it, and leaves a note for the run record.
    """

    def __init__(self, *, deadline: float | None, head_within: float) -> None:
        super().__init__(deadline=deadline, head_within=head_within)
        self.secret_headers: set[str] = set()
        self.notes: list[str] = []

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        old, new = response.request.url or "", prepared_request.url or ""
        if _origin(old) != _origin(new):
            names = {"authorization", *(h.lower() for h in self.secret_headers)}
            dropped = sorted(h for h in prepared_request.headers if h.lower() in names)
            for header in dropped:
                del prepared_request.headers[header]
            if dropped:
                note = (
                    f"redirected from {safe_url(old)} to {safe_url(new)}, another origin: "
                    f"the feed's credentials ({', '.join(dropped)}) were not sent there"
                )
                if note not in self.notes and len(self.notes) < 5:
                    self.notes.append(note)
        super().rebuild_auth(prepared_request, response)


class HttpClient:
    """One feed run's HTTP session."""

    def __init__(
        self,
        *,
        timeout: float,
        ca_bundle: str | None = None,
        auth: dict[str, Any] | None = None,
        url: str | None = None,
        max_bytes: int = 512 * 1024 * 1024,
        deadline: float | None = None,
        user_agent: str = "national-cert-exchange/1.0",
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.deadline = deadline  # time.monotonic() value after which reading stops
        # The deadline holds whatever the server does (headers included): a watchdog shuts the
        # connection when it passes, and the response head must come within `timeout`.
        self.session = _FeedSession(deadline=deadline, head_within=timeout)
        # Not from the environment: REQUESTS_CA_BUNDLE would silently replace the feed's own CA
        # bundle, and ~/.netrc or proxy variables would send credentials where nobody configured them.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = user_agent
        self._ca_path: str | None = None
        if ca_bundle:
            fd, self._ca_path = tempfile.mkstemp(prefix="feed-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as handle:
                handle.write(ca_bundle)
            self.session.verify = self._ca_path
        else:
            self.session.verify = True
        auth = auth or {}
        # What must never be stored or logged from this feed: its credentials and query values.
        self._secret_forms = credential_forms(auth, url)
        if auth.get("username") is not None:
            self.session.auth = HTTPBasicAuth(auth["username"], auth.get("password") or "")
        self.session.headers.update(auth.get("headers") or {})
        self.session.secret_headers = set(auth.get("headers") or {})

    def scrub(self, text: str) -> str:
        """`text` (a run error, a failure) with every form of the feed's credentials masked."""
        return mask(text, self._secret_forms)

    def scrub_remote(self, text: str) -> str:
        """Text the feed's server sent, masked as `scrub` does and past any auth scheme too, on
        one line and short (`masking.remote_text`)."""
        return remote_text(text, self._secret_forms)

    @property
    def notes(self) -> list[str]:
        """What the run record should say about this session (credentials withheld from redirects)."""
        return list(self.session.notes)

    @property
    def verify(self) -> bool | str:
        return self.session.verify

    def close(self) -> None:
        self.session.close()
        if self._ca_path:
            with contextlib.suppress(OSError):
                os.unlink(self._ca_path)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_deadline(self) -> None:
        if self.session.expired or (self.deadline is not None and time.monotonic() > self.deadline):
            raise self._expired()

    def stopped(self) -> HttpError | None:
        """Why this session was stopped by a limit (the HttpError to raise), or None."""
        return self._expired() if self.session.expired else None

    def _expired(self, shown: str = "the feed's server") -> HttpError:
        if self.session.expired == HEAD:
            return HttpError(f"{shown} did not answer within {self.timeout:g} s (no complete response head)")
        return HttpError("the run took longer than its time limit and was stopped")

    def _failed(self, exc: requests.exceptions.RequestException, shown: str) -> HttpError:
        """What a request that raised `exc` tells the run record."""
        if self.session.expired:  # the watchdog shut the connection: say which limit, not how
            return self._expired(shown)
        if isinstance(exc, requests.exceptions.SSLError):
            return HttpError(
                f"TLS verification failed for {shown}: {_reason(exc)} "
                "(give the feed the CA bundle that signs its certificate)"
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return HttpError(f"{shown} did not answer within {self.timeout:g} s")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return HttpError(f"cannot connect to {shown}: {_reason(exc)}")
        return HttpError(f"request to {shown} failed: {type(exc).__name__}")

    def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        """GET with streaming on; a status outside `ok` is an HttpError naming it."""
        self.check_deadline()
        shown = safe_url(url)
        try:
            response = self.session.get(
                url, headers=headers, params=params, stream=True, timeout=(self.timeout, self.timeout)
            )
        except requests.exceptions.RequestException as exc:
            raise self._failed(exc, shown) from None
        if response.status_code not in ok:
            response.close()
            hint = " (check the feed's credentials)" if response.status_code in (401, 403) else ""
            # The reason phrase is the server's own text: it may echo what it received.
            reason = self.scrub_remote(response.reason or "")
            raise HttpError(
                f"{shown} answered HTTP {response.status_code} {reason}{hint}",
                status=response.status_code,
            )
        length = response.headers.get("Content-Length")
        if length and length.isascii() and length.isdigit() and int(length) > self.max_bytes:
            response.close()
            raise HttpError(f"{shown} is {int(length):,} bytes, over the limit of {self.max_bytes:,}")
        return response

    def iter_bytes(self, response: requests.Response) -> Iterator[bytes]:
        """The body in chunks, stopping with HttpError past the size cap, time limit or a stall."""
        shown = safe_url(response.url)
        total = 0
        try:
            for chunk in response.iter_content(_CHUNK):
                total += len(chunk)
                if total > self.max_bytes:
                    raise HttpError(f"{shown} sent more than the limit of {self.max_bytes:,} bytes")
                self.check_deadline()
                yield chunk
            if self.session.expired:  # cut short by a limit, not the end of the body
                raise self._expired(shown)
        except requests.exceptions.RequestException as exc:
            if self.session.expired:
                raise self._expired(shown) from None
            if (
                isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))
                and "timed out" in str(exc).lower()
            ):
                raise HttpError(f"{shown} stopped sending for more than {self.timeout:g} s") from None
            raise HttpError(f"reading {shown} failed: {_reason(exc)}") from None
        finally:
            response.close()

    def iter_lines(
        self, response: requests.Response, *, max_line: int = MAX_LINE_BYTES
    ) -> Iterator[str | None]:
        """Text lines (UTF-8, a BOM dropped, undecodable bytes replaced), without line ends; None
        in place of a line longer than `max_line` bytes, which is skipped, not held.

        Linear in the body: each chunk is searched for line ends once, and the pieces of a line
        that spans chunks are joined once, when it ends.
        """
        pieces: list[bytes] = []  # of the line not yet ended
        size = 0
        skipping = False  # the line not yet ended is already too long
        first = True
        for chunk in self.iter_bytes(response):
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                piece = chunk[start:end]
                start = end + 1
                if skipping or size + len(piece) > max_line:
                    yield None
                else:
                    line = b"".join((*pieces, piece)) if pieces else piece
                    if first:
                        line = line.removeprefix(b"\xef\xbb\xbf")
                    yield line.rstrip(b"\r").decode("utf-8", "replace")
                first, pieces, size, skipping = False, [], 0, False
            if not skipping and start < len(chunk):
                size += len(chunk) - start
                if size > max_line:
                    pieces, skipping = [], True
                else:
                    pieces.append(chunk[start:])
        if skipping:
            yield None
        elif pieces:
            line = b"".join(pieces)
            if first:
                line = line.removeprefix(b"\xef\xbb\xbf")
            yield line.rstrip(b"\r").decode("utf-8", "replace")

    def read_all(self, response: requests.Response) -> bytes:
        """The whole body (bounded by the size cap)."""
        return b"".join(self.iter_bytes(response))


def _reason(exc: BaseException) -> str:
    """The innermost cause's text, which names the TLS or socket problem without our URL."""
    text = str(exc)
    # The specific reasons first: OpenSSL puts CERTIFICATE_VERIFY_FAILED in front of all of them.
    for marker in (
        "certificate has expired",
        "self-signed certificate",
        "self signed certificate",
        "unable to get local issuer certificate",
        "hostname mismatch",
        "CERTIFICATE_VERIFY_FAILED",
        "Connection refused",
        "Name or service not known",
    ):
        if marker.lower() in text.lower():
            return marker
    inner = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    return type(inner).__name__
