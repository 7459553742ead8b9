"""`misp` feeds: a MISP feed (`manifest.json` plus `<event uuid>.json` per event, as MISP's feed
export and CIRCL's OSINT feed publish it), each event converted to STIX 2.1 with misp-stix.

Only events that are new or whose manifest timestamp changed are fetched; each stored event is
remembered with its timestamp in the cursor, so a run that fails part-way resumes with the next
event. A broken event (unreachable, not JSON, not convertible) is a counted failure naming it;
the others are stored, and it is tried again next run. MISP applies an event's TLP tag to
everything in it, so the converted report's TLP marking is put on its contents that carry none.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from exchange.errors import InvalidJsonError
from exchange.feed.service import safe_url
from exchange.intel.strictjson import loads_strict
from feeds.base import Batch, FeedError, FetchContext
from feeds.conditional import conditional_get
from feeds.http import HttpError
from policies.tlp import level_of_marking

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """A MISP feed takes no options."""
    if options:
        raise ValueError(f"a misp feed takes no options (given: {', '.join(sorted(options))})")
    return options


def _base(url: str) -> str:
    base = url.removesuffix("manifest.json")
    return base if base.endswith("/") else base + "/"


def _json(ctx: FetchContext, url: str, what: str) -> Any:
    response = ctx.http.get(url)
    try:
        return loads_strict(ctx.http.read_all(response))
    except InvalidJsonError as exc:
        raise ValueError(f"{what} is not JSON: {exc.message}") from None


def convert(event: Any) -> list[dict[str, Any]]:
    """STIX 2.1 objects for one MISP event (`{"Event": {...}}`), with the event's TLP on its contents."""
    from misp_stix_converter import MISPtoSTIX21Parser

    if not isinstance(event, dict) or not isinstance(event.get("Event"), dict):
        raise ValueError('not a MISP event (no "Event" object)')
    parser = MISPtoSTIX21Parser()
    parser.parse_misp_event(event)
    objects: list[dict[str, Any]] = orjson.loads(parser.bundle.serialize())["objects"]
    by_id = {o["id"]: o for o in objects}
    for container in objects:
        if container["type"] not in ("report", "grouping"):
            continue
        tlp = [m for m in container.get("object_marking_refs", []) if level_of_marking(m)]
        if not tlp:
            continue
        for ref in container.get("object_refs", []):
            inner = by_id.get(ref)
            if inner is not None and not any(
                level_of_marking(m) for m in inner.get("object_marking_refs", [])
            ):
                inner["object_marking_refs"] = [*inner.get("object_marking_refs", []), *tlp]
    return objects


def batches(ctx: FetchContext) -> Iterator[Batch]:
    """One batch per new or changed event; the cursor remembers each stored event's timestamp."""
    check_options(ctx.spec.options)
    base = _base(ctx.spec.url)
    shown = safe_url(base)
    response, validators = conditional_get(ctx.http, base + "manifest.json", ctx.cursor)
    if response is None:
        yield Batch(cursor=dict(ctx.cursor))
        return
    try:
        manifest = loads_strict(ctx.http.read_all(response))
    except InvalidJsonError as exc:
        raise FeedError(f"{shown}manifest.json is not JSON: {exc.message}") from None
    if not isinstance(manifest, dict):
        raise FeedError(f"{shown}manifest.json is not a MISP feed manifest (an object of event UUIDs)")
    done: dict[str, str] = dict(ctx.cursor.get("events", {}))
    due = sorted(
        (
            (str(meta.get("timestamp", "")) if isinstance(meta, dict) else "", uuid)
            for uuid, meta in manifest.items()
            if isinstance(uuid, str)
        ),
        key=lambda item: (item[0], item[1]),
    )
    failed = False
    for stamp, uuid in due:
        if done.get(uuid) == stamp:
            continue
        if not _UUID.fullmatch(uuid):
            yield Batch(failures=[{"id": f"event {uuid[:60]}", "message": "not an event UUID"}])
            failed = True
            continue
        try:
            objects = convert(_json(ctx, f"{base}{uuid}.json", f"event {uuid}"))
        except HttpError as exc:
            if exc.status is None:
                raise FeedError(str(exc)) from None  # the server went away: stop, resume next run
            yield Batch(failures=[{"id": f"event {uuid}", "message": str(exc)}])
            failed = True
            continue
        except Exception as exc:  # misp-stix raises many kinds on odd events: report, go on
            yield Batch(
                failures=[
                    {
                        "id": f"event {uuid}",
                        "message": f"cannot convert: {str(exc)[:300] or type(exc).__name__}",
                    }
                ]
            )
            failed = True
            continue
        done[uuid] = stamp
        yield Batch(objects=objects, fetched=len(objects), cursor={"events": dict(done)})
    # The manifest's validators are kept only when every event made it, so failures are retried.
    yield Batch(cursor={"events": done, **({} if failed else validators)})
