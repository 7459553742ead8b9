"""Limits on a real server, tried the ways a partner or a stranger would get around them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from exchange.audit import service as audit
from exchange.audit.models import AuditEvent
from exchange.context import context_of
from tests.limits.conftest import Limited
from tests.support.taxii import TAXII

pytestmark = pytest.mark.live
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _window() -> int:
    return int(time.time() // 60)


def _events(server: Limited, action: str, target: str) -> list[AuditEvent]:
    with server.session() as db:
        return [e for e in audit.list_(db, limit=500, action=action) if e.target == target]


def taxii_429(response: httpx.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/taxii+json")
    assert response.json()["http_status"] == "429"
    assert int(response.headers["retry-after"]) >= 1


def problem_429(response: httpx.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 429
    assert int(response.headers["retry-after"]) >= 1


def _basic(user: str, key: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(user, key)


# -- rate limits ------------------------------------------------------------------------------


def test_one_bucket_per_credential_whatever_the_endpoint_or_scheme(strict: Limited) -> None:
    slug, (cred, key), _ = strict.partner(rate_limit={"per_minute": 1, "burst": 4})
    first = _window()
    taxii = f"{strict.api_root}collections/"
    with httpx.Client(headers={"Accept": TAXII}, timeout=30) as client:
        # Four requests over four routes and three ways of presenting the key: the burst.
        assert client.get(taxii, auth=_basic(cred, key)).status_code == 200
        assert client.get(taxii, auth=_basic(slug, key)).status_code == 200
        assert (
            client.get(f"{strict.url}/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 403
        )
        assert client.get(f"{strict.url}/api/v1/partners", auth=_basic(cred, key)).status_code == 403
        # The fifth is refused wherever it goes.
        taxii_429(client.get(taxii, auth=_basic(cred, key)))
        taxii_429(client.get(f"{strict.api_root}", auth=_basic(slug, key)))
        taxii_429(client.post(f"{strict.api_root}collections/x/objects/", auth=_basic(cred, key)))
        problem_429(client.get(f"{strict.url}/api/v1/partners", headers={"Authorization": f"Bearer {key}"}))
        problem_429(client.get(f"{strict.url}/metrics", headers={"Authorization": f"Bearer {key}"}))
        for _ in range(20):
            taxii_429(client.get(taxii, auth=_basic(cred, key)))
        # Per credential, as documented: the partner's second system has its own bucket.
        other = strict.second_credential(slug)
        assert client.get(taxii, auth=_basic(*other)).status_code == 200
    # Twenty-five refusals, one audit row (two if the test straddled a minute).
    rows = _events(strict, "rate_limit.exceeded", cred)
    assert 1 <= len(rows) <= _window() - first + 1, [r.details for r in rows]
    assert rows[-1].actor == cred and f'"partner":"{slug}"' in rows[-1].details
    assert key.partition(".")[2][:12] not in " ".join(r.details for r in rows)


def test_the_default_applies_without_a_rate_limit_in_the_agreement(strict: Limited) -> None:
    _, (cred, key), coll = strict.partner()
    url = strict.collection_url(coll) + "objects/"
    with httpx.Client(auth=_basic(cred, key), headers={"Accept": TAXII}, timeout=30) as client:
        assert [client.get(url).status_code for _ in range(3)] == [200, 200, 200]  # burst 3
        refused = client.get(url)
        taxii_429(refused)
        assert int(refused.headers["retry-after"]) > 30  # one a minute comes back


def test_an_agreement_change_raises_or_lowers_the_limit(strict: Limited) -> None:
    slug, (cred, key), coll = strict.partner(rate_limit={"per_minute": 1, "burst": 1})
    url = strict.collection_url(coll) + "objects/"
    with httpx.Client(auth=_basic(cred, key), headers={"Accept": TAXII}, timeout=30) as client:
        assert client.get(url).status_code == 200
        taxii_429(client.get(url))
        from exchange.agreement import service as agreement_service

        with strict.session() as db:
            doc = agreement_service.current_document(db, slug)
            agreement_service.apply(db, {**doc, "rate_limit": {"per_minute": 6000, "burst": 50}}, actor="t")
        assert strict.app is not None
        limits = context_of(strict.app).limits
        assert limits is not None
        limits.rates.forget_policies()  # what POLICY_SECONDS does on its own
        assert client.get(url).status_code == 200


def test_staff_are_not_limited_by_default(strict: Limited) -> None:
    admin = strict.credential("admin")
    with httpx.Client(auth=admin, headers={"Accept": TAXII}, timeout=30) as client:
        codes = {client.get(f"{strict.api_root}collections/").status_code for _ in range(15)}
        codes |= {client.get(f"{strict.url}/metrics").status_code for _ in range(5)}
    assert codes == {200}


def test_refusals_are_counted_in_metrics(strict: Limited) -> None:
    slug, (cred, key), _ = strict.partner(rate_limit={"per_minute": 1, "burst": 1})
    with httpx.Client(auth=_basic(cred, key), headers={"Accept": TAXII}, timeout=30) as client:
        client.get(f"{strict.api_root}collections/")
        for _ in range(3):
            taxii_429(client.get(f"{strict.api_root}collections/"))
    text = httpx.get(f"{strict.url}/metrics", auth=strict.credential("admin"), timeout=30).text
    assert f'exchange_rate_limited_total{{caller="{slug}",channel="taxii"}} 3' in text


# -- failed logins ----------------------------------------------------------------------------


def test_a_login_flood_is_throttled_counted_and_audited_once(proxied: Limited) -> None:
    flooder, bystander = f"198.51.100.{uuid.uuid4().int % 250 + 1}", "203.0.113.77"
    admin = proxied.credential("admin")
    first = _window()
    taxii = f"{proxied.api_root}collections/"
    with proxied.session() as db:
        before = db.scalars(audit.select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first() or 0
    with httpx.Client(headers={"Accept": TAXII}, timeout=30) as client:

        def get(url: str, who: str, **kw: Any) -> httpx.Response:
            return client.get(url, headers={"X-Forwarded-For": who, "Accept": TAXII}, **kw)

        # A client that verified its key from that address a moment ago.
        assert get(taxii, flooder, auth=admin).status_code == 200
        for _ in range(3):  # up to the threshold: 401, one audit row each
            assert get(taxii, flooder, auth=("cred-nobody", "cred-nobody.wrong")).status_code == 401
        for _ in range(15):
            taxii_429(get(taxii, flooder, auth=("cred-nobody", "cred-nobody.wrong")))
            problem_429(get(f"{proxied.url}/api/v1/partners", flooder, auth=("x", "y")))
        # Refused before the slow hash even with a real key it has not shown here lately ...
        fresh = proxied.credential("analyst")
        taxii_429(get(taxii, flooder, auth=fresh))
        # ... while the known client behind the same address, and everyone elsewhere, go on.
        assert get(taxii, flooder, auth=admin).status_code == 200
        assert get(taxii, bystander, auth=fresh).status_code == 200
        assert get(taxii, bystander, auth=("cred-nobody", "cred-nobody.wrong")).status_code == 401
    with proxied.session() as db:
        new = list(db.scalars(audit.select(AuditEvent).where(AuditEvent.seq > before)))
    failures = [e for e in new if e.action == "login.failure"]
    floods = [e for e in new if e.action == "login.throttled"]
    assert len(failures) == 4, "the flood was written to the trail row by row"  # 3 + the bystander's
    assert 1 <= len(floods) <= _window() - first + 1
    assert floods[0].target == flooder and '"failures":3' in floods[0].details
    text = httpx.get(f"{proxied.url}/metrics", auth=admin, timeout=30).text
    counted = {
        line.split("}")[0] + "}": float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("exchange_login_throttled_total{")
    }
    assert counted['exchange_login_throttled_total{channel="taxii"}'] >= 16
    assert counted['exchange_login_throttled_total{channel="rest"}'] >= 15


def test_x_forwarded_for_is_not_believed_from_an_untrusted_peer(untrusting: Limited) -> None:
    taxii = f"{untrusting.api_root}collections/"
    codes = []
    with httpx.Client(headers={"Accept": TAXII}, timeout=30) as client:
        for n in range(8):  # a new "address" each time, all from 127.0.0.1
            codes.append(
                client.get(
                    taxii, headers={"X-Forwarded-For": f"192.0.2.{n}"}, auth=("cred-x", "cred-x.bad")
                ).status_code
            )
    assert codes == [401, 401, 401] + [429] * 5
    rows = _events(untrusting, "login.throttled", "127.0.0.1")
    assert rows, "the flood was not recorded against the real peer"


def test_ipv6_neighbours_share_one_count(proxied: Limited) -> None:
    prefix = f"2001:db8:{uuid.uuid4().int % 65000:x}:1"
    taxii = f"{proxied.api_root}collections/"
    codes = []
    with httpx.Client(headers={"Accept": TAXII}, timeout=30) as client:
        for n in range(5):
            codes.append(
                client.get(
                    taxii, headers={"X-Forwarded-For": f"{prefix}::{n + 1:x}"}, auth=("cred-x", "cred-x.bad")
                ).status_code
            )
    assert codes == [401, 401, 401, 429, 429]


# -- body caps --------------------------------------------------------------------------------


def _body_routes(server: Limited) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    routes = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("post", "put", "patch") and "requestBody" in op:
                concrete = path.replace("{", "").replace("}", "")
                routes.append((method.upper(), concrete))
    assert len(routes) >= 5
    return routes


def test_every_rest_body_is_capped_declared_or_chunked(strict: Limited) -> None:
    admin = strict.credential("admin")
    big = b"{" + b" " * (65 * 1024) + b"}"

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(66):
            yield b" " * 1024

    with httpx.Client(auth=admin, timeout=30) as client:
        for method, path in _body_routes(strict):
            declared = client.request(method, strict.url + path, content=big)
            assert declared.status_code == 413, (method, path, declared.status_code)
            assert declared.headers["content-type"] == "application/problem+json"
            chunked = client.request(method, strict.url + path, content=chunks())
            assert chunked.status_code == 413, (method, path, chunked.status_code, chunked.text[:200])
            assert chunked.json()["status"] == 413
        # Anonymous callers cannot make us read a large body either.
        assert httpx.post(f"{strict.url}/api/v1/bundles", content=big, timeout=30).status_code == 413
        # Under the cap the route answers as it always did.
        small = client.post(f"{strict.url}/api/v1/bundles", json={"type": "bundle"})
        assert small.status_code not in (413, 500)
        # TAXII keeps its own cap, in its own shape.
        taxii = client.post(
            f"{strict.api_root}collections/x/objects/",
            content=chunks(),
            headers={"Content-Type": TAXII, "Accept": TAXII},
        )
        assert taxii.status_code in (404, 413) and taxii.headers["content-type"].startswith(
            "application/taxii+json"
        )


# -- headers ----------------------------------------------------------------------------------


def test_security_headers_on_every_kind_of_response(strict: Limited, proxied: Limited) -> None:
    admin = strict.credential("admin")
    responses = [
        httpx.get(f"{strict.url}/healthz"),
        httpx.get(f"{strict.url}/.well-known/jwks.json"),
        httpx.get(f"{strict.url}/api/v1/openapi.json"),
        httpx.get(f"{strict.url}/api/v1/partners", auth=admin),
        httpx.get(f"{strict.url}/api/v1/partners"),  # 401
        httpx.get(f"{strict.url}/nowhere"),  # 404
        httpx.post(f"{strict.url}/api/v1/bundles", content=b" " * 70_000),  # 413
        httpx.get(f"{strict.api_root}collections/", auth=admin, headers={"Accept": TAXII}),
        httpx.get(f"{strict.api_root}collections/", headers={"Accept": TAXII}),  # TAXII 401
        httpx.get(f"{strict.url}/ui/"),
    ]
    for response in responses:
        for name, value in SECURITY.items():
            assert response.headers.get(name) == value, (response.url, name)
        assert response.headers["strict-transport-security"] == "max-age=31536000", response.url
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    plain = httpx.get(f"{proxied.url}/healthz")
    assert "strict-transport-security" not in plain.headers  # not https: no HSTS
    assert plain.headers["x-frame-options"] == "DENY"


def test_the_docs_page_runs_no_inline_script_under_the_strict_policy(strict: Limited) -> None:
    import re

    page = httpx.get(f"{strict.url}/api/v1/docs", timeout=30)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    inline = re.findall(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page.content, re.DOTALL)
    assert inline == [], "the docs page carries inline script"
    assert b"<style" not in page.content and b" style=" not in page.content
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp


# -- the pages ----------------------------------------------------------------------------------


def _clear_of_a_window_edge() -> None:
    """Counts are per minute: start a counted sequence well inside one."""
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)


def test_failed_sign_ins_on_the_pages_count_with_rest_and_taxii_and_are_refused_once_over(
    proxied: Limited,
) -> None:
    """The sign-in page is one more door for a key-guessing flood: its failures count toward
    the address's threshold with REST's and TAXII's, and over it the page refuses before the hash
    (429, Retry-After), writing one throttled row for the window instead of a row per guess."""
    _clear_of_a_window_edge()
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    forwarded = {"X-Forwarded-For": address}
    with proxied.session() as db:
        before = db.scalars(audit.select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first() or 0
    with httpx.Client(base_url=proxied.url, timeout=30, follow_redirects=False) as client:
        for _ in range(2):
            assert client.get("/api/v1/partners", headers=forwarded, auth=("x", "y")).status_code == 401
        page = client.post("/ui/login", data={"key": "cred-nobody.guess", "next": "/ui/"}, headers=forwarded)
        assert page.status_code == 401
        problem_429(client.get("/api/v1/partners", headers=forwarded, auth=("x", "y")))
        taxii_429(
            client.get(
                f"{proxied.api_root}collections/", headers=forwarded | {"Accept": TAXII}, auth=("x", "y")
            )
        )
        analyst = proxied.credential("analyst")
        for key in ("cred-nobody.guess", analyst[1]):  # a real key not shown here lately, too
            refused = client.post("/ui/login", data={"key": key, "next": "/ui/"}, headers=forwarded)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert refused.headers["content-type"].startswith("text/html")
            assert "set-cookie" not in refused.headers
    with proxied.session() as db:
        new = list(db.scalars(audit.select(AuditEvent).where(AuditEvent.seq > before)))
    failures = [e for e in new if e.action == "login.failure"]
    assert len(failures) == 3 and sum('"channel":"ui"' in e.details for e in failures) == 1
    assert [e.target for e in new if e.action == "login.throttled"] == [address]


def test_pages_draw_from_the_signed_in_credentials_rate(staff_limited: Limited) -> None:
    """A signed-in page is a request like any other: it takes from the credential's bucket, which
    REST and TAXII share, and over it the page answers 429 with Retry-After."""
    _clear_of_a_window_edge()
    analyst = staff_limited.credential("analyst")
    with httpx.Client(base_url=staff_limited.url, timeout=30, follow_redirects=False) as browser:
        signed = browser.post("/ui/login", data={"key": analyst[1], "next": "/ui/"})
        assert signed.status_code == 303, signed.text[:200]
        codes = [browser.get("/ui/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429], codes
        refused = browser.get("/ui/")
        assert int(refused.headers["retry-after"]) >= 1 and refused.headers["content-type"].startswith(
            "text/html"
        )
    rest = httpx.get(f"{staff_limited.url}/api/v1/partners", auth=analyst, timeout=30)
    problem_429(rest)
