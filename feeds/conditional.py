"""Conditional GET: the ETag / Last-Modified a complete run saw make the next run of an
unchanged feed cost one small 304."""

from __future__ import annotations

from typing import Any

import requests

from feeds.http import HttpClient


def conditional_headers(cursor: dict[str, Any]) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from what the last complete run saw."""
    headers = {}
    if cursor.get("etag"):
        headers["If-None-Match"] = cursor["etag"]
    if cursor.get("last_modified"):
        headers["If-Modified-Since"] = cursor["last_modified"]
    return headers


def response_validators(response: requests.Response) -> dict[str, str]:
    """The ETag and Last-Modified to send next time (empty when the server gives neither)."""
    found = {}
    if response.headers.get("ETag"):
        found["etag"] = response.headers["ETag"]
    if response.headers.get("Last-Modified"):
        found["last_modified"] = response.headers["Last-Modified"]
    return found


def conditional_get(
    http: HttpClient, url: str, cursor: dict[str, Any]
) -> tuple[requests.Response | None, dict[str, str]]:
    """(None, {}) when the server says nothing changed; else the streaming response and its validators."""
    response = http.get(url, headers=conditional_headers(cursor), ok=(200, 304))
    if response.status_code == 304:
        response.close()
        return None, {}
    return response, response_validators(response)
