from __future__ import annotations

import httpx

TAXII = "application/taxii+json;version=2.1"


def post(http: httpx.Client, url: str, body: dict | bytes, **headers: str) -> httpx.Response:  # type: ignore[type-arg]
    import orjson

    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return http.post(url + "objects/", content=data, headers={"Content-Type": TAXII, **headers})
