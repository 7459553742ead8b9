"""`csv` feeds: IoC lists with a column mapping, streamed.

Options: `columns` maps `value` (required), `kind`, `description`, `labels`, `first_seen` to a
column name (with a header row) or a 0-based index; `delimiter` (default ","); `header` (default
true); `comment_prefixes` (default ["#"]); `kind` (one observable type for every row). A kind
column may say ip-dst, ip-src, ip, ipv4, ipv6, domain, hostname, url, uri, md5, sha1, sha256 or
an observables type; other text means "detect". `labels` are split on ";" or ",". `first_seen`
may be an ISO date or date-time, or epoch seconds; it becomes valid_from of a new indicator.
"""

from __future__ import annotations

import csv as csvlib
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from exchange.incident.observables import TYPES
from feeds.base import Batch, FeedError, FetchContext, Ioc
from feeds.conditional import conditional_get
from feeds.http import MAX_LINE_BYTES
from feeds.normalize import stix_time

FIELDS = ("value", "kind", "description", "labels", "first_seen")
KNOWN = ("columns", "delimiter", "header", "comment_prefixes", "kind")
KIND_NAMES = {
    "ip": "ipv4-addr",
    "ipv4": "ipv4-addr",
    "ip-dst": None,
    "ip-src": None,
    "ipv6": "ipv6-addr",
    "domain": "domain-name",
    "hostname": "domain-name",
    "fqdn": "domain-name",
    "url": "url",
    "uri": "url",
    "link": "url",
    "email": "email-addr",
    "email-src": "email-addr",
    "email-dst": "email-addr",
    "md5": "file:hashes.'MD5'",
    "sha1": "file:hashes.'SHA-1'",
    "sha-1": "file:hashes.'SHA-1'",
    "sha256": "file:hashes.'SHA-256'",
    "sha-256": "file:hashes.'SHA-256'",
    "sha512": "file:hashes.'SHA-512'",
}  # None: an address of either family, detected


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Known options with the right types; ValueError otherwise."""
    unknown = set(options) - set(KNOWN)
    if unknown:
        raise ValueError(
            f"unknown option(s) for a csv feed: {', '.join(sorted(unknown))} (known: {', '.join(KNOWN)})"
        )
    columns = options.get("columns", {"value": 0})
    if not isinstance(columns, dict) or "value" not in columns:
        raise ValueError('option columns must map at least "value" to a column name or index')
    for name, where in columns.items():
        if name not in FIELDS:
            raise ValueError(f"columns.{name}: unknown field (known: {', '.join(FIELDS)})")
        if (
            isinstance(where, bool)
            or not isinstance(where, (str, int))
            or (isinstance(where, int) and where < 0)
        ):
            raise ValueError(f"columns.{name} must be a column name or a 0-based index")
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError("option delimiter must be one character")
    if not isinstance(options.get("header", True), bool):
        raise ValueError("option header must be true or false")
    if options.get("header") is False and any(isinstance(w, str) for w in columns.values()):
        raise ValueError("without a header row, columns must be given by index")
    prefixes = options.get("comment_prefixes", ["#"])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        raise ValueError("option comment_prefixes must be a list of non-empty strings")
    kind = options.get("kind")
    if kind is not None and kind not in TYPES:
        raise ValueError(f"option kind must be one of {', '.join(TYPES)}")
    return options


def kind_of(text: str) -> str | None:
    """The observables type a kind column names, or None to detect it from the value."""
    name = text.strip().lower()
    if name in TYPES:
        return name
    return KIND_NAMES.get(name)


def first_seen(text: str) -> str:
    """RFC 3339 from an ISO date, an ISO date-time or epoch seconds; ValueError if none of them."""
    text = text.strip()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return stix_time(datetime.fromtimestamp(float(text), tz=UTC))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        return stix_time(datetime(day.year, day.month, day.day, tzinfo=UTC))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return stix_time(moment)


def _rows(
    ctx: FetchContext, response: Any, prefixes: tuple[str, ...], too_long: list[int]
) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(ctx.http.iter_lines(response), start=1):
        if line is None:
            too_long.append(number)  # counted into the batch by _count_too_long
            continue
        if "\x00" in line:
            raise FeedError(f"line {number} holds a NUL byte: this is not a CSV list")
        if line.lstrip().startswith(prefixes):
            continue
        yield number, line


def batches(ctx: FetchContext) -> Iterator[Batch]:
    """Stream the rows; a complete list's ETag/Last-Modified make the next run cheap."""
    options = check_options(ctx.spec.options)
    columns: dict[str, Any] = dict(options.get("columns", {"value": 0}))
    response, validators = conditional_get(ctx.http, ctx.spec.url, ctx.cursor)
    if response is None:
        yield Batch(cursor=dict(ctx.cursor))
        return
    too_long: list[int] = []
    numbered = _rows(ctx, response, tuple(options.get("comment_prefixes", ["#"])), too_long)
    line_of = {"n": 0}

    def lines() -> Iterator[str]:
        for number, line in numbered:
            line_of["n"] = number
            yield line + "\n"  # csv needs the line end to keep newlines inside quoted fields

    reader = csvlib.reader(lines(), delimiter=options.get("delimiter", ","))
    index: dict[str, int] = {}
    try:
        if options.get("header", True):
            header = [h.strip() for h in next(reader, [])]
            for name, where in columns.items():
                if isinstance(where, str):
                    if where not in header:
                        raise FeedError(
                            f"the CSV has no column {where!r} (columns.{name}); its header is: "
                            f"{', '.join(header)[:300]}"
                        )
                    index[name] = header.index(where)
        index |= {name: where for name, where in columns.items() if isinstance(where, int)}
        batch = Batch()
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            batch.fetched += 1
            ioc = _ioc(row, index, line_of["n"], options.get("kind"), batch)
            if ioc is not None:
                batch.iocs.append(ioc)
            _count_too_long(too_long, batch)
            if batch.fetched >= ctx.spec.batch_size:
                yield batch
                batch = Batch()
    except csvlib.Error as exc:
        raise FeedError(f"line {line_of['n']}: not CSV: {exc}") from None
    _count_too_long(too_long, batch)
    batch.cursor = validators
    yield batch


def _count_too_long(numbers: list[int], batch: Batch) -> None:
    """The lines skipped as too long since the last call, as failed records of `batch`."""
    for number in numbers:
        batch.fetched += 1
        batch.failures.append(
            {"id": f"line {number}", "message": f"longer than {MAX_LINE_BYTES:,} bytes: skipped"}
        )
    numbers.clear()


def _ioc(
    row: list[str], index: dict[str, int], line: int, fixed_kind: str | None, batch: Batch
) -> Ioc | None:
    def cell(name: str) -> str:
        at = index.get(name)
        return row[at].strip() if at is not None and at < len(row) else ""

    value = cell("value")
    if not value:
        batch.failures.append({"id": f"line {line}", "message": "no value in the mapped column"})
        return None
    seen = None
    if cell("first_seen"):
        try:
            seen = first_seen(cell("first_seen"))
        except (ValueError, OverflowError, OSError):
            batch.failures.append(
                {
                    "id": f"line {line}",
                    "message": f"first_seen {cell('first_seen')[:60]!r} is not "
                    "an ISO date, date-time or epoch seconds",
                }
            )
            return None
    labels = tuple(label.strip() for label in re.split(r"[;,]", cell("labels")) if label.strip())
    kind = fixed_kind or (kind_of(cell("kind")) if cell("kind") else None)
    return Ioc(
        value=value,
        kind=kind,
        description=cell("description") or None,
        labels=labels,
        first_seen=seen,
        line=line,
    )
