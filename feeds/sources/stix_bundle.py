"""`stix-bundle` feeds: a STIX 2.1 bundle over HTTP(S), read as a stream in bounded memory.

ETag / Last-Modified make an unchanged bundle cost one small conditional request. Objects are
stored in batches as they arrive; an object that is not strict JSON is a counted failure, an
invalid STIX object is refused by ingest and counted; the rest are kept. Broken framing (not a
bundle, cut off) fails the run; the batches before it stay stored, and the validators are saved
only after the last batch, so the next run reads the whole bundle again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exchange.feed.service import safe_url
from feeds.base import Batch, FeedError, FetchContext
from feeds.conditional import conditional_get
from feeds.jsonstream import BundleHeader, StreamError, bundle_objects

MAX_OBJECT_BYTES = 16 * 1024 * 1024


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """A bundle feed takes no options."""
    if options:
        raise ValueError(f"a stix-bundle feed takes no options (given: {', '.join(sorted(options))})")
    return options


def batches(ctx: FetchContext) -> Iterator[Batch]:
    """Slices of ctx.spec.batch_size objects; the last carries the validators for next time."""
    check_options(ctx.spec.options)
    response, validators = conditional_get(ctx.http, ctx.spec.url, ctx.cursor)
    if response is None:
        yield Batch(cursor=dict(ctx.cursor))
        return
    header = BundleHeader()
    batch = Batch()
    try:
        for element in bundle_objects(
            ctx.http.iter_bytes(response), header=header, max_object_bytes=MAX_OBJECT_BYTES
        ):
            batch.fetched += 1
            if element.error is not None:
                batch.failures.append({"id": f"objects[{element.index}]", "message": element.error})
            else:
                batch.objects.append(element.value)
            if batch.fetched >= ctx.spec.batch_size:
                yield batch
                batch = Batch()
    except StreamError as exc:
        if batch.fetched:
            yield batch  # keep what was complete before the break
        raise FeedError(f"{safe_url(ctx.spec.url)}: {exc}") from None
    if header.members.get("type") != "bundle":
        if batch.fetched:
            yield batch
        raise FeedError(f'{safe_url(ctx.spec.url)}: not a STIX bundle (no "type": "bundle")')
    batch.cursor = validators
    yield batch
