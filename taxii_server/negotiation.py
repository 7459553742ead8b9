"""Request guards medallion 3.0.0 gets wrong: Accept, Content-Type and body size.

medallion answers 406 to a bare `application/taxii+json`, rejects parameters such as
`charset=utf-8`, and cannot bound a chunked body. We check here, before any view runs, and
hand medallion the canonical header values it expects.
"""

from __future__ import annotations

import io
import re

from flask import Flask, Response, current_app, request

from exchange.errors import BadRequestError, PayloadTooLargeError
from taxii_server import auth, context
from taxii_server.errors import error_response
from taxii_server.filters import check_paging

TAXII_MEDIA = "application/taxii+json;version=2.1"
_TAXII = "application/taxii+json"


def _media_ranges(header: str) -> list[tuple[str, dict[str, str]]]:
    ranges = []
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        params = {}
        for param in parts[1:]:
            name, _, value = param.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        ranges.append((parts[0].lower(), params))
    return ranges


# RFC 9110 section 12.4.2: 0 to 1 with at most three decimals. float() also read "nan", "inf",
# "1e-3" and "+.5" (and "nan" compared as acceptable).
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def _q(params: dict[str, str]) -> float:
    """The range's weight; one that is not an RFC 9110 qvalue makes the range unacceptable."""
    text = params.get("q", "1")
    return float(text) if _QVALUE.fullmatch(text) else 0.0


def accept_ok(header: str | None) -> tuple[bool, str]:
    """Whether a TAXII 2.1 response satisfies this Accept header, and why not."""
    if header is None or not header.strip():
        return True, ""
    offered_versions = []
    for media, params in _media_ranges(header):
        if _q(params) <= 0:
            continue
        if media in ("*/*", "application/*"):
            return True, ""
        if media == _TAXII:
            version = params.get("version")
            if version in (None, "2.1"):
                return True, ""
            offered_versions.append(version)
    if offered_versions:
        return False, f"TAXII version {', '.join(offered_versions)} is not supported; this server speaks 2.1"
    return False, f"this server answers only {TAXII_MEDIA}; the Accept header asked for {header!r}"


def content_type_ok(header: str | None) -> tuple[bool, str]:
    """Whether a POST body's Content-Type is TAXII 2.1 JSON (charset utf-8 tolerated)."""
    ranges = _media_ranges(header or "")
    if len(ranges) != 1 or ranges[0][0] != _TAXII:
        return False, f"Content-Type must be {TAXII_MEDIA}, not {header!r}"
    params = ranges[0][1]
    if params.get("version") not in (None, "2.1"):
        return False, f"TAXII version {params['version']} is not supported; this server speaks 2.1"
    if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return False, "the body must be UTF-8"
    return True, ""


def _read_bounded(limit: int) -> bytes:
    declared = request.headers.get("Content-Length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequestError("Content-Length is not a number") from None
        if size > limit:
            raise PayloadTooLargeError(f"the body has {size} bytes; this API root takes at most {limit}")
    stream = request.environ["wsgi.input"]
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(65536, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"the body is over {limit} bytes, the most this API root takes")
    return b"".join(chunks)


def install(app: Flask, *, max_content_length_for) -> None:  # type: ignore[no-untyped-def]
    """Install the guards; `max_content_length_for(api_root_name)` gives the body limit."""

    @app.before_request
    def _guard() -> Response | None:
        # Authentication comes first: an anonymous caller learns nothing from content checks
        # and cannot make us read a body.
        if auth.authenticate_request() is None:
            return auth.unauthorized()
        if "\x00" in request.path:
            # No API root, collection, object or status has a NUL in its name (PostgreSQL text
            # cannot even hold one), so the resource does not exist.
            return error_response(404, "Not found", "no resource has a NUL character in its name")
        if request.method == "HEAD":
            # medallion's views only answer GET; serve HEAD as GET without the body.
            context.current().head = True
            request.environ["REQUEST_METHOD"] = "GET"
            request.method = "GET"
        ok, why = accept_ok(request.headers.get("Accept"))
        if not ok:
            return error_response(406, "Not acceptable", why)
        if request.method == "GET":
            check_paging(request.args)
        request.environ["HTTP_ACCEPT"] = TAXII_MEDIA
        if request.method == "POST":
            ok, why = content_type_ok(request.headers.get("Content-Type"))
            if not ok:
                return error_response(415, "Unsupported media type", why)
            root = (request.path.strip("/").split("/") or [""])[0]
            limit = max_content_length_for(root) or current_app.config["EXCHANGE_MAX_BODY"]
            body = _read_bounded(limit)
            if not body:
                raise BadRequestError("the request body is empty; send a TAXII envelope")
            request.environ["wsgi.input"] = io.BytesIO(body)
            request.environ["CONTENT_LENGTH"] = str(len(body))
            # The body is buffered now; a leftover chunked marker would make Werkzeug
            # ignore CONTENT_LENGTH and read nothing.
            request.environ.pop("HTTP_TRANSFER_ENCODING", None)
            request.environ["CONTENT_TYPE"] = TAXII_MEDIA
        return None

    @app.after_request
    def _strip_head_body(response: Response) -> Response:
        if context.current().head:
            length = response.calculate_content_length()
            response.set_data(b"")
            if length is not None:
                response.headers["Content-Length"] = str(length)
        return response
