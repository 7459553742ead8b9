"""`taxii21` feeds: a TAXII 2.1 collection pulled with taxii2-client, page by page.

The feed URL is the collection's URL (`.../collections/<id>/`; an alias in place of the id is
looked up in the API root's collection list, since taxii2-client refuses such URLs). Each page's
`X-TAXII-Date-Added-Last` becomes the cursor stored with that page, so the next run asks only
for what was added after it (`added_after`), and a run that fails part-way resumes after the
last page it stored. A server that sends no such header is asked for everything each run;
deduplication keeps that from adding anything twice. Options: `page_size` (default 1000),
`types` (a list of STIX types, sent as match[type]), `peer` (a peer's slug: every page must carry
a detached JWS that the peer's trust accepts, exchange.peer.trust; a page that does not is
refused whole, the run fails and its cursor stays where it was).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import requests
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection, as_pages

from exchange.feed.service import safe_url
from feeds.base import Batch, FeedError, FetchContext

KNOWN = ("page_size", "types", "peer")
FUTURE_SKEW_US = 5 * 60 * 1_000_000
DATE_ADDED_LAST = "X-TAXII-Date-Added-Last"
TAXII_MEDIA = "application/taxii+json;version=2.1"
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Known options with the right types; ValueError otherwise."""
    unknown = set(options) - set(KNOWN)
    if unknown:
        raise ValueError(
            f"unknown option(s) for a taxii21 feed: {', '.join(sorted(unknown))} (known: {', '.join(KNOWN)})"
        )
    size = options.get("page_size", 1000)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 10_000:
        raise ValueError("option page_size must be a whole number from 1 to 10000")
    types = options.get("types")
    if types is not None and (
        not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types)
    ):
        raise ValueError("option types must be a non-empty list of STIX type names")
    peer = options.get("peer")
    if peer is not None and (
        not isinstance(peer, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}[a-z0-9]", peer)
    ):
        raise ValueError("option peer must be a partner slug")
    return options


def _collection(ctx: FetchContext) -> tuple[Collection, list[str], list[bytes]]:
    """A taxii2-client Collection on the run's session (TLS, credentials), every request timed out."""
    session = ctx.http.session
    if not getattr(session, "_feed_timeout_set", False):
        session.request = functools.partial(session.request, timeout=(ctx.spec.timeout, ctx.spec.timeout))  # type: ignore[method-assign]
        session._feed_timeout_set = True  # type: ignore[attr-defined]
    seen: list[str] = []
    pages: list[bytes] = []  # raw bodies of object pages not yet taken (only for a peer)

    def remember(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen.append(response.headers.get(DATE_ADDED_LAST, ""))
        # taxii2-client reads each body whole itself, with no limit, and a gzip body can expand
        # a thousandfold: read it here first, counting decoded bytes against the feed's cap.
        # Hooks run before requests reads the content, and a body it holds is not read again.
        if response._content is False:
            response._content = ctx.http.read_all(response)
        if ctx.trust is not None and response.status_code == 200 and _is_objects(response.url):
            pages.append(response._content or b"")

    url = _id_url(ctx, ctx.spec.url if ctx.spec.url.endswith("/") else ctx.spec.url + "/")
    session.hooks["response"].append(remember)
    collection = Collection(url, verify=ctx.http.verify)
    collection._conn.session = session  # the run's session: its TLS trust, credentials and timeouts
    return collection, seen, pages


def _is_objects(url: str | None) -> bool:
    return (url or "").split("?", 1)[0].endswith("/objects/")


def _verified(ctx: FetchContext, pages: list[bytes], number: int, shown: str) -> dict[str, Any]:
    """The page exactly as the peer signed it, or FeedError: nothing of a refused page is used."""
    from exchange.errors import ExchangeError
    from exchange.signing.jws import CTY_TAXII
    from exchange.signing.verify import SignatureError

    assert ctx.trust is not None
    if len(pages) != 1:
        raise FeedError(f"page {number} from {shown} refused: expected one signed page, read {len(pages)}")
    raw = pages.pop()
    try:
        return ctx.trust.verify_document(raw, cty=CTY_TAXII)
    except SignatureError as exc:
        raise FeedError(
            f"page {number} from {shown} refused, nothing of it stored: {exc.reason}"
            + (f" ({exc.detail})" if exc.detail else "")
        ) from None
    except ExchangeError as exc:
        raise FeedError(f"page {number} from {shown} refused, nothing of it stored: {exc.message}") from None


def _plausible(stamp: str, shown: str) -> str:
    """A resume point from a header (unsigned, even a peer's) may not lie in the future: it
    would skip pages."""
    import time

    from exchange.intel.timestamps import text_to_us

    try:
        at = text_to_us(stamp)
    except ValueError:
        raise FeedError(f"{shown} sent an unreadable {DATE_ADDED_LAST} header") from None
    if at > time.time() * 1_000_000 + FUTURE_SKEW_US:
        raise FeedError(f"{shown} sent a {DATE_ADDED_LAST} in the future; the resume point stays")
    return stamp


def _id_url(ctx: FetchContext, url: str) -> str:
    """The collection's id URL for `url`, which may name it by alias (`.../collections/indicators/`).

    taxii2-client checks that a collection's id is the last part of its URL and refuses
    anything else, though servers such as this exchange also answer at the alias. TAXII ids
    are UUIDs, so only a URL ending in something else costs the one look-up in the list.
    """
    base, _, ref = url.rstrip("/").rpartition("/")
    if _UUID.fullmatch(ref) or not base.endswith("/collections"):
        return url
    response = ctx.http.get(base + "/", headers={"Accept": TAXII_MEDIA})
    try:
        listing = json.loads(ctx.http.read_all(response))
    except ValueError:
        return url  # the collection request itself will say what is wrong
    found = listing.get("collections") if isinstance(listing, dict) else None
    for entry in found if isinstance(found, list) else []:
        if isinstance(entry, dict) and entry.get("alias") == ref and isinstance(entry.get("id"), str):
            return f"{base}/{entry['id']}/"
    return url


def batches(ctx: FetchContext) -> Iterator[Batch]:
    """One batch per page, each with the date-added cursor to resume after it."""
    options = check_options(ctx.spec.options)
    collection, seen, raw_pages = _collection(ctx)
    if options.get("peer") is not None and ctx.trust is None:
        raise FeedError(f"feed pulls from peer {options['peer']!r} but no key set is loaded to verify it")
    filters: dict[str, Any] = {}
    if ctx.cursor.get("added_after"):
        filters["added_after"] = ctx.cursor["added_after"]
    if options.get("types"):
        filters["type"] = options["types"]
    shown = safe_url(ctx.spec.url)
    pages = as_pages(collection.get_objects, per_request=options.get("page_size", 1000), **filters)
    cursor = dict(ctx.cursor)
    number = 0
    while True:
        number += 1
        ctx.http.check_deadline()
        try:
            envelope = next(pages)
        except StopIteration:
            return
        except requests.exceptions.RequestException as exc:
            if (stopped := ctx.http.stopped()) is not None:
                raise stopped from None  # a time limit shut the connection: say which
            raise _request_failed(exc, shown, ctx.spec.timeout) from None
        except (TAXIIServiceException, ValueError) as exc:
            said = str(exc).splitlines()[0] if isinstance(exc, TAXIIServiceException) else "not JSON"
            reason = ctx.http.scrub_remote(said)
            raise FeedError(f"{shown} did not answer as a TAXII 2.1 server: {reason}") from None
        if ctx.trust is not None:
            envelope = _verified(ctx, raw_pages, number, shown)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("objects", []), list):
            raise FeedError(f"{shown} sent something that is not a TAXII envelope")
        objects = envelope.get("objects", [])
        if seen and seen[-1]:
            # Checked for every server, not only peers: a resume point in the future (a clock
            # ahead, a lie) or unreadable would make every later run skip what was added meanwhile.
            cursor = {**cursor, "added_after": _plausible(seen[-1], shown)}
        yield Batch(objects=objects, fetched=len(objects), cursor=dict(cursor))


def _request_failed(exc: requests.exceptions.RequestException, shown: str, timeout: float) -> FeedError:
    """What a failed request of the TAXII client tells the run record."""
    if isinstance(exc, requests.exceptions.HTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        hint = " (check the feed's credentials)" if status in (401, 403) else ""
        hint = " (is the URL a TAXII 2.1 collection the credentials may read?)" if status == 404 else hint
        return FeedError(f"{shown} answered HTTP {status}{hint}")
    if isinstance(exc, requests.exceptions.SSLError):
        return FeedError(
            f"TLS verification failed for {shown} (give the feed the CA bundle that signs its certificate)"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return FeedError(f"{shown} did not answer within {timeout:g} s")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return FeedError(f"cannot connect to {shown}")
    return FeedError(f"request to {shown} failed: {type(exc).__name__}")
