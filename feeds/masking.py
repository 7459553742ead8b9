"""The credentials the exchange sends to a remote server, in every form it sends them, and their
masking in anything that server says back before it is stored, shown or logged.

A remote server may echo what it received (a debug page repeating the Authorization header, a
401 naming the request's query): the password, `user:password`, its base64 (HTTP Basic), a
header's value and the token after its scheme, and each query value, raw and percent-decoded.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

MASK = "***"
# Shorter than this, a secret is masked only where it stands alone (not inside other words).
_SHORT = 4
# Whatever follows an auth scheme or an Authorization header in remote text, known to us or not.
_AUTH_VALUE = re.compile(
    r"(?i)(\b(?:basic|bearer|digest|token|negotiate|apikey)\s+|\bauthorization\s*[=:]\s*)"
    r"(?:(?:basic|bearer|digest|token|negotiate|apikey)\s+)?[A-Za-z0-9._~+/=-]{6,}"
)


def _encodings(text: str) -> set[str]:
    return {text, quote(text, safe=""), quote_plus(text, safe=""), unquote(text), unquote_plus(text)}


def credential_forms(auth: dict[str, Any], url: str | None = None) -> list[str]:
    """Every form in which `auth` (username/password or headers) and `url`'s query values go out,
    longest first (so a secret inside a longer one never leaves the longer one half-masked)."""
    forms: set[str] = set()
    username = auth.get("username")
    if isinstance(username, str):
        password = auth.get("password") or ""
        pair = f"{username}:{password}"
        forms |= _encodings(password) | _encodings(pair)
        for charset in ("latin-1", "utf-8"):  # requests sends latin-1; servers may decode either
            try:
                raw = pair.encode(charset)
            except UnicodeEncodeError:
                continue
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                # Without padding: a prefix of the padded form, so both are masked.
                forms.add(encode(raw).decode("ascii").rstrip("="))
    headers = auth.get("headers") or {}
    for value in headers.values() if isinstance(headers, dict) else ():
        if isinstance(value, str):
            forms |= _encodings(value)
            _, _, token = value.strip().partition(" ")  # "Bearer abc": abc alone too
            if token.strip():
                forms |= _encodings(token.strip())
    if url:
        forms |= set(query_values(url))
    return sorted((f for f in forms if f), key=len, reverse=True)


def query_values(url: str) -> list[str]:
    """The values (and bare items) of `url`'s query, as written and percent-decoded."""
    try:
        query = urlsplit(url).query
    except ValueError:
        query = url.partition("?")[2]
    found: set[str] = set()
    for item in query.split("&"):
        name, sep, value = item.partition("=")
        for part in (value,) if sep else (name,):
            if part:
                found |= _encodings(part)
    return sorted(found, key=len, reverse=True)


def mask(text: str, forms: Iterable[str]) -> str:
    """`text` with every one of `forms` replaced by ***."""
    for form in forms:
        if len(form) >= _SHORT:
            text = text.replace(form, MASK)
        elif form:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", MASK, text)
    return text


def mask_remote(text: str, forms: Iterable[str]) -> str:
    """Text a remote server sent, with our credentials masked, and also any value that follows an
    auth scheme or an Authorization header (a form we did not think of, or another client's)."""
    return _AUTH_VALUE.sub(lambda m: m.group(1) + MASK, mask(text, forms))


def remote_text(text: str, forms: Iterable[str], limit: int = 200) -> str:
    """Text a remote server sent, as a run error or push status shows it: on one line, masked as
    `mask_remote` does, then cut to `limit` (masked first: a cut inside a credential would leave
    a piece that no form matches)."""
    return mask_remote(" ".join(text.split()), forms)[:limit]
