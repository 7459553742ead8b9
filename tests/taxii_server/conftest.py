from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

TAXII = "application/taxii+json;version=2.1"


@pytest.fixture
def http(live_server, admin) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """Plain HTTP as the admin, with the TAXII Accept header."""
    with httpx.Client(auth=admin, headers={"Accept": TAXII}, timeout=30) as client:
        yield client


@pytest.fixture
def coll(live_server):  # type: ignore[no-untyped-def]
    """A fresh, empty collection for one test."""
    return live_server.collection()


def post(http: httpx.Client, url: str, body: dict | bytes, **headers: str) -> httpx.Response:  # type: ignore[type-arg]
    import orjson

    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return http.post(url + "objects/", content=data, headers={"Content-Type": TAXII, **headers})
