"""`text` feeds: one IoC per line (IPv4/IPv6, CIDR, domain, URL, MD5/SHA-1/SHA-256).

Blank lines and comments (`#` or `;` at the start of a line, or after whitespace at the end of
one) are skipped. Options: `kind` forces one observable type for every line instead of
detecting it per line; `comment_prefixes` replaces the default ("#", ";", "//").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exchange.incident.observables import TYPES
from feeds.base import Batch, FeedError, FetchContext, Ioc
from feeds.conditional import conditional_get
from feeds.http import MAX_LINE_BYTES

DEFAULT_PREFIXES = ("#", ";", "//")
_TOO_LONG = f"longer than {MAX_LINE_BYTES:,} bytes: skipped"


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Known options with the right types; ValueError otherwise."""
    unknown = set(options) - {"kind", "comment_prefixes"}
    if unknown:
        raise ValueError(
            f"unknown option(s) for a text feed: {', '.join(sorted(unknown))} (known: kind, comment_prefixes)"
        )
    kind = options.get("kind")
    if kind is not None and kind not in TYPES:
        raise ValueError(f"option kind must be one of {', '.join(TYPES)}, not {kind!r}")
    prefixes = options.get("comment_prefixes")
    if prefixes is not None and (
        not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes)
    ):
        raise ValueError("option comment_prefixes must be a list of non-empty strings")
    return options


def value_of(line: str, prefixes: tuple[str, ...]) -> str | None:
    """The IoC on a line, without comments and surrounding space; None for blank or comment lines."""
    text = line.strip()
    if not text or text.startswith(prefixes):
        return None
    for marker in (" #", "\t#", " ;", "\t;"):
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut].rstrip()
    return text or None


def batches(ctx: FetchContext) -> Iterator[Batch]:
    """Stream the list; the ETag/Last-Modified of a fully stored list makes the next run cheap."""
    options = check_options(ctx.spec.options)
    prefixes = tuple(options.get("comment_prefixes") or DEFAULT_PREFIXES)
    kind = options.get("kind")
    response, validators = conditional_get(ctx.http, ctx.spec.url, ctx.cursor)
    if response is None:
        yield Batch(cursor=dict(ctx.cursor))
        return
    batch = Batch()
    for number, line in enumerate(ctx.http.iter_lines(response), start=1):
        if line is None:
            batch.fetched += 1
            batch.failures.append({"id": f"line {number}", "message": _TOO_LONG})
            continue
        if "\x00" in line:
            raise FeedError(f"line {number} holds a NUL byte: this is not a text list")
        value = value_of(line, prefixes)
        if value is None:
            continue
        batch.fetched += 1
        batch.iocs.append(Ioc(value=value, kind=kind, line=number))
        if len(batch.iocs) >= ctx.spec.batch_size:
            yield batch
            batch = Batch()
    batch.cursor = validators
    yield batch
