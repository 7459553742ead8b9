"""Hostile input found by sending it (issue 10): a clear error resource, never a 500 or a stall."""

from __future__ import annotations

import base64
import contextlib
import socket
import time
import uuid

import httpx
import orjson
import pytest

from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, is_error_resource, post, problem

pytestmark = pytest.mark.live


def ids(n: int) -> str:
    return ",".join(f"indicator--{uuid.UUID(int=i)}" for i in range(n))


# --- list parameters are bounded ------------------------------------------------------------


LISTS = [
    ("match[id]", ids, 1_001),
    ("match[type]", lambda n: ",".join(f"x-custom-type-{i:05d}" for i in range(n)), 2_000),
    ("match[version]", lambda n: ",".join(f"2020-01-01T00:00:00.{i:06d}Z" for i in range(n)), 1_500),
]


@pytest.mark.parametrize(("key", "make", "n"), LISTS)
def test_long_match_lists_are_400_naming_the_limit(live_server, http, coll, key, make, n):
    url = live_server.collection_url(coll) + "objects/"
    error = is_error_resource(http.get(url, params={key: make(n)}), 400)
    assert key in error["description"] and "at most 1000" in error["description"], error


@pytest.mark.parametrize("n", [5_000, 40_000])
@pytest.mark.parametrize(("key", "make", "_"), LISTS)
def test_match_lists_past_the_url_limit_are_414_error_resources(live_server, coll, key, make, n, _):
    from urllib.parse import quote

    target = f"/taxii2/{live_server.settings.api_root}/collections/{coll.id}/objects/?{quote(key)}={make(n)}"
    status, headers, body = _raw_get(_port(live_server), target)
    assert status == 414 and headers["content-type"].startswith("application/taxii+json"), body[:200]
    assert orjson.loads(body)["http_status"] == "414"


def test_a_match_list_at_the_limit_is_answered(live_server, http, coll):
    from taxii_server.filters import MAX_LIST_VALUES

    url = live_server.collection_url(coll) + "objects/"
    response = http.get(url, params={"match[id]": ids(MAX_LIST_VALUES)})
    assert response.status_code == 200, response.text[:300]


def _raw_get(port: int, target: str, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One GET over a plain socket (httpx refuses some of what we send)."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _port(live_server) -> int:  # type: ignore[no-untyped-def]
    return int(live_server.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("size", [30_000, 60_000])
def test_a_long_collection_path_is_a_404_error_resource(live_server, admin, size):
    url = f"{live_server.api_root}collections/{'a' * size}/objects/"
    with httpx.Client(auth=admin, headers={"Accept": TAXII}, timeout=30) as client:
        is_error_resource(client.get(url), 404)


@pytest.mark.parametrize(
    ("path", "size"),
    [("/taxii2/", 70_000), ("/taxii2/root/collections/", 100_000), ("/api/v1/partners", 70_000)],
)
def test_a_url_over_64_kb_gets_an_error_resource(live_server, path, size):
    status, headers, body = _raw_get(_port(live_server), path + "a" * size)
    assert status == 414, body[:200]
    if path.startswith("/taxii2"):
        assert headers["content-type"].startswith("application/taxii+json"), body[:200]
        assert orjson.loads(body)["http_status"] == str(status)
    else:
        assert headers["content-type"].startswith("application/problem+json"), body[:200]
        assert orjson.loads(body)["status"] == status


# --- NUL bytes and other bytes a client can send are data ------------------------------------


def _basic(user: str, password: str = "x") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_nul_in_a_basic_user_name_is_401_on_taxii(live_server):
    response = httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": TAXII, **_basic("ab\x00cd")})
    is_error_resource(response, 401)


def test_a_nul_in_a_basic_user_name_is_401_on_rest(live_server):
    response = httpx.get(f"{live_server.url}/api/v1/partners", headers=_basic("ab\x00cd"))
    problem(response, 401)


def test_a_nul_in_an_object_id_collection_or_status_id_is_404(live_server, http, coll):
    url = live_server.collection_url(coll)
    is_error_resource(http.get(url + "objects/indicator--%00/"), 404)
    is_error_resource(http.get(url + "objects/indicator--%00/versions/"), 404)
    is_error_resource(http.get(f"{live_server.api_root}collections/a%00b/"), 404)
    is_error_resource(http.get(f"{live_server.api_root}collections/a%00b/objects/"), 404)
    is_error_resource(http.get(f"{live_server.api_root}status/a%00b/"), 404)
    is_error_resource(http.get(f"{live_server.url}/taxii2/ro%00ot/"), 404)


def test_a_nul_in_a_query_value_is_400(live_server, http, coll):
    url = live_server.collection_url(coll) + "objects/"
    is_error_resource(http.get(url, params={"match[id]": "indicator--\x00"}), 400)
    is_error_resource(http.get(url, params={"next": "a\x00b"}), 400)


def test_a_nul_in_any_string_of_an_object_is_stored_verbatim_or_refused(live_server, http, coll):
    url = live_server.collection_url(coll)
    objs = [
        indicator(1, name="nul \x00 inside"),
        indicator(2, x_note="\x00"),
        indicator(3, x_k={"a\x00b": "v"}),
        indicator(4),
    ]
    response = post(http, url, envelope(objs))
    assert response.status_code == 202, response.text[:500]
    status = response.json()
    assert status["total_count"] == 4
    assert {s["id"] for s in status.get("successes", [])} >= {objs[3]["id"]}
    served = {o["id"]: o for o in http.get(url + "objects/").json()["objects"]}
    for obj in objs:
        if obj["id"] in {s["id"] for s in status.get("successes", [])}:
            assert served[obj["id"]] == obj  # kept byte for byte, NUL included


# --- one bad object is a per-object failure, its neighbours are kept -------------------------


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"modified": "2026-01-01T00:00:00." + "1" * 30 + "Z"}, "modified"),
        ({"pattern": "[" * 3_000 + "ipv4-addr:value = '1.2.3.4'" + "]" * 3_000}, "pattern"),
        ({"pattern": "(" * 3_000 + "[ipv4-addr:value = '1.2.3.4']" + ")" * 3_000}, "pattern"),
        ({"pattern": "(" * 20_000 + "[ipv4-addr:value = '1.2.3.4']" + ")" * 20_000}, "pattern"),
        ({"pattern": " OR ".join(["[ipv4-addr:value = '1.2.3.4']"] * 3_000)}, "pattern"),
        ({"pattern": "[" + " OR ".join(["ipv4-addr:value = '1.2.3.4'"] * 3_000) + "]"}, "pattern"),
    ],
    ids=["modified-30-digits", "3000-brackets", "3000-parens", "20000-parens", "3000-ors", "3000-inner-ors"],
)
def test_a_hostile_object_fails_alone(live_server, http, coll, bad, says):
    url = live_server.collection_url(coll)
    good = [indicator(i) for i in range(5)]
    hostile = indicator(99, **bad)
    response = post(http, url, envelope([good[0], hostile, *good[1:]]))
    assert response.status_code == 202, response.text[:500]
    status = response.json()
    assert status["success_count"] == 5 and status["failure_count"] == 1, status
    failure = status["failures"][0]
    assert failure["id"] == hostile["id"] and says in failure["message"], failure
    stored = {o["id"] for o in http.get(url + "objects/").json()["objects"]}
    assert stored == {g["id"] for g in good}


def test_a_valid_timestamp_with_nine_fraction_digits_is_kept(live_server, http, coll):
    url = live_server.collection_url(coll)
    obj = indicator(1, modified="2026-01-01T00:00:00.123456789Z")
    status = post(http, url, envelope([obj])).json()
    assert status["success_count"] == 1, status


def test_a_path_no_route_matches_is_a_404_in_the_interfaces_shape(live_server, http):
    # Found by the fuzzer: a newline in a /taxii2 path misses the mount and got FastAPI's own 404.
    is_error_resource(http.get(f"{live_server.api_root}collections/%0A0/"), 404)
    is_error_resource(http.get(f"{live_server.url}/taxii2%0A/"), 404)
    problem(http.get(f"{live_server.url}/api/v1/no-such-thing"), 404)
    response = http.delete(f"{live_server.url}/api/v1/audit")
    problem(response, 405)
    assert "GET" in response.headers["Allow"]


def _tiny(n: int) -> list[dict]:  # type: ignore[type-arg]
    return [
        {
            "type": "ipv4-addr",
            "spec_version": "2.1",
            "id": f"ipv4-addr--{uuid.uuid4()}",
            "value": f"10.9.{i // 256}.{i % 256}",
        }
        for i in range(n)
    ]


def test_an_envelope_of_more_objects_than_one_transaction_should_hold_is_413(live_server, http, admin, coll):
    limit = live_server.settings.max_envelope_objects
    url = live_server.collection_url(coll)
    error = is_error_resource(post(http, url, envelope(_tiny(limit + 1))), 413)
    assert f"at most {limit}" in error["description"]
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": _tiny(limit + 1)}
    response = httpx.post(
        f"{live_server.url}/api/v1/bundles",
        params={"collection": coll.alias},
        content=orjson.dumps(bundle),
        headers={"Authorization": f"Bearer {admin[1]}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert f"at most {limit}" in problem(response, 413)["detail"]
    assert http.get(url + "objects/").json().get("objects") is None


# --- the server's own refusals: bounded headers, the exchange's shapes, security headers ------


def _raw(port: int, request: bytes, *, finish: bool = True) -> tuple[int, dict[str, str], bytes]:
    """Send `request` bytes over a plain socket and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # the server may answer and close before taking it all
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _secured(headers: dict[str, str]) -> None:
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert (
        headers["referrer-policy"] == "no-referrer"
        and "frame-ancestors 'none'" in headers["content-security-policy"]
    )


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/taxii2/root/collections/", "application/taxii+json"),
        ("/api/v1/partners", "application/problem+json"),
    ],
)
def test_headers_past_the_limit_are_431_in_the_paths_shape_without_waiting_for_their_end(
    live_server, path, media
):
    from exchange.httpserver import MAX_HEADER_BYTES

    port = _port(live_server)
    pad = b"X-Pad: " + b"a" * (MAX_HEADER_BYTES + 10_000) + b"\r\n"
    for finish in (b"\r\n", b""):  # a complete request, and one whose headers never end
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + pad + finish
        status, headers, body = _raw(port, request)
        assert status == 431 and headers["content-type"].startswith(media), body[:200]
        _secured(headers)
        assert "431" in body.decode()
    # Large headers within the limit are still read: the request reaches authentication.
    ok = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: {'a' * 20_000}\r\n\r\n"
    assert _raw(port, ok.encode())[0] == 401


@pytest.mark.parametrize(
    ("request_bytes", "media"),
    [
        (b"FOO /taxii2/root/ HTTP/1.1\r\nHost: x\r\n\r\n", "application/taxii+json"),
        (b"GET /taxii2/root/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", "application/taxii+json"),
        (
            b"GET /api/v1/partners HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "application/problem+json",
        ),
    ],
)
def test_requests_the_parser_refuses_are_400_in_the_paths_shape_with_security_headers(
    live_server, request_bytes, media
):
    status, headers, body = _raw(_port(live_server), request_bytes)
    assert status == 400 and headers["content-type"].startswith(media), body[:200]
    _secured(headers)


def test_a_refused_pipelined_request_is_answered_after_the_response_before_it(live_server, admin):
    """Two requests on one connection, the second with headers past the limit: the first gets
    its whole answer, then the second its 431, never bytes of one inside the other."""
    from exchange.httpserver import MAX_HEADER_BYTES

    token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    first = (
        f"GET /taxii2/root/collections/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
        f"Accept: {TAXII}\r\n\r\n"
    ).encode()
    # Past the limit by more than a read: the read in which the first request ends is not counted.
    second = b"GET /taxii2/root/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * (MAX_HEADER_BYTES + 400_000)
    with socket.create_connection(("127.0.0.1", _port(live_server)), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(first + second)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    answers = _answers(data)
    assert [(status, media) for status, media, _ in answers] == [
        (200, "application/taxii+json"),
        (431, "application/taxii+json"),
    ], answers
    assert b"collections" in answers[0][2] and orjson.loads(answers[1][2])["http_status"] == "431"


def _answers(data: bytes) -> list[tuple[int, str, bytes]]:
    """The HTTP responses in `data`, one after another: (status, media type, body)."""
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        answers.append((int(lines[0].split()[1]), headers["content-type"].split(";")[0], rest[:length]))
        data = rest[length:]
    return answers


def _exchange(port: int, *parts: bytes, pause: float = 0.2) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(pause)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


def test_a_body_that_breaks_mid_way_is_answered_at_once_and_its_connection_closed(live_server):
    """The request being read is the one refused: it is answered now (not after a response that
    can never come), and the connection is closed, not left open."""
    started = time.monotonic()
    data = _exchange(
        _port(live_server),
        b"POST /api/v1/partners HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"zz\r\n",
    )
    assert [(status, media) for status, media, _ in _answers(data)] == [(400, "application/problem+json")]
    assert time.monotonic() - started < 5


def test_a_refusal_behind_two_pipelined_requests_lets_both_be_answered_whole(live_server, admin):
    token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    data = _exchange(
        _port(live_server),
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        + (
            f"GET /taxii2/root/collections/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
            f"Accept: {TAXII}\r\n\r\n"
        ).encode()
        + b"GET /taxii2/root/ HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
    )
    answers = _answers(data)
    assert [(status, media) for status, media, _ in answers] == [
        (200, "application/json"),
        (200, "application/taxii+json"),
        (400, "application/taxii+json"),
    ], answers
    assert b"collections" in answers[1][2]
