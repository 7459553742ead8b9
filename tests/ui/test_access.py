"""Who may open which page, and the ways round it: partner keys, forms without their CSRF token or
with another session's, expired and signed-out sessions, forged cookies, open redirects."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.database.types import utcnow
from exchange.partner import service as partner_service
from exchange.ui import service as sessions
from exchange.ui.models import UiSession
from tests.support.pages import Exchange, client, csrf_of, sign_in

ADMIN_PAGES = [
    "/ui/partners",
    "/ui/partners/cert-in",
    "/ui/agreements",
    "/ui/agreements/cert-in",
    "/ui/agreements/cert-in/history",
    "/ui/audit",
    "/ui/keys",
    "/ui/users",
]
STAFF_PAGES = ["/ui/", "/ui/publish", "/ui/incidents", "/ui/lookup?value=45.13.22.7", "/ui/feeds"]


def test_root_and_pages_send_a_stranger_to_sign_in(app) -> None:  # type: ignore[no-untyped-def]
    browser = client(app)
    assert browser.get("/").headers["location"] == "/ui/"
    for page in [*STAFF_PAGES, *ADMIN_PAGES]:
        answer = browser.get(page)
        assert answer.status_code == 303, page
        assert answer.headers["location"].startswith("/ui/login?next=/ui/"), page


def test_an_analyst_cannot_reach_agreement_key_or_feed_editing_pages(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    analyst = sign_in(app, exchange.analyst_key)
    page = analyst.get("/ui/publish")
    assert page.status_code == 200
    csrf = csrf_of(page.text)
    for path in ADMIN_PAGES:
        answer = analyst.get(path)
        assert answer.status_code == 403, path
        assert "administrators only" in answer.text and "<html" in answer.text
    with exchange.session() as db:
        before = len(partner_service.list_(db))
        credentials = len(auth_service.list_(db, role="partner"))
    posts = {
        "/ui/partners": {"slug": "sneaky", "name": "S", "country": "IN"},
        "/ui/partners/cert-in/credentials": {"name": "mine"},
        "/ui/partners/cert-in/status": {"status": "suspended"},
        "/ui/agreements/cert-in": {"action": "save", "title": "x"},
        "/ui/feeds": {
            "name": "f",
            "kind": "csv",
            "url": "https://x.example/f.csv",
            "collection": "indicators",
        },
        "/ui/feeds/anything": {"url": "https://x.example/"},
        "/ui/feeds/anything/run": {},
        "/ui/keys/rotate": {"confirm": "yes"},
        "/ui/users": {"name": "me too", "role": "admin"},
    }
    for path, fields in posts.items():
        answer = analyst.post(path, data={"csrf": csrf, **fields})
        assert answer.status_code == 403, path
    with exchange.session() as db:
        assert len(partner_service.list_(db)) == before
        assert len(auth_service.list_(db, role="partner")) == credentials
        assert partner_service.get_by_slug(db, "cert-in").status == "active"
    # The analyst's own pages work (and the feed list shows no editing form).
    for path in STAFF_PAGES:
        assert analyst.get(path).status_code == 200, path
    assert 'action="/ui/feeds"' not in analyst.get("/ui/feeds").text


def test_a_partner_key_cannot_sign_in_and_the_failure_is_audited_slowly(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    browser = client(app)
    started = time.monotonic()
    answer = browser.post("/ui/login", data={"key": exchange.partner_key, "next": "/ui/"})
    took = time.monotonic() - started
    assert answer.status_code == 401
    assert sessions.COOKIE not in answer.headers.get("set-cookie", "")
    assert took >= exchange.settings.ui_login_delay_seconds
    # A second failure from the same address waits longer (doubling, to the ceiling).
    started = time.monotonic()
    browser.post("/ui/login", data={"key": "cred-nothing.guess", "next": "/ui/"})
    assert time.monotonic() - started >= exchange.settings.ui_login_delay_seconds * 2
    with exchange.session() as db:
        trail = [e for e in audit.list_(db, limit=20, action="login.failure") if '"ui"' in e.details]
    assert len(trail) >= 2
    secret = exchange.partner_key.partition(".")[2]
    assert all(secret not in f"{e.actor} {e.target} {e.details}" for e in trail)
    assert trail[-1].actor == exchange.partner_key.partition(".")[0] or any(
        e.actor == exchange.partner_key.partition(".")[0] for e in trail
    )
    assert browser.get("/ui/").status_code == 303


def test_a_form_without_its_csrf_token_or_with_another_sessions_is_refused(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    mine = sign_in(app, exchange.admin_key)
    theirs = sign_in(app, exchange.admin_key)
    their_csrf = csrf_of(theirs.get("/ui/partners").text)
    my_csrf = csrf_of(mine.get("/ui/partners").text)
    assert my_csrf != their_csrf
    fields = {"slug": "cert-forged", "name": "Forged", "country": "IN"}
    for data in (
        fields,
        {**fields, "csrf": their_csrf},
        {**fields, "csrf": ""},
        {**fields, "csrf": my_csrf + "x"},
    ):
        answer = mine.post("/ui/partners", data=data)
        assert answer.status_code == 403
        assert "Reload the page" in answer.text
    # A JSON body (no form at all) is refused too.
    assert mine.post("/ui/partners", json={**fields, "csrf": my_csrf}).status_code in (403, 415)
    with exchange.session() as db:
        assert partner_service.get_by_slug(db, "cert-forged", missing_ok=True) is None
    # With its own token the same form works.
    assert mine.post("/ui/partners", data={**fields, "csrf": my_csrf}).status_code == 200
    with exchange.session() as db:
        assert partner_service.get_by_slug(db, "cert-forged", missing_ok=True) is not None


def _age(exchange: Exchange, **columns) -> None:  # type: ignore[no-untyped-def]
    with exchange.session() as db:
        db.execute(update(UiSession).values(**columns))


def test_idle_and_absolute_expiry_and_sign_out_end_the_session(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    idle = timedelta(minutes=exchange.settings.ui_idle_minutes)
    lifetime = timedelta(hours=exchange.settings.ui_session_hours)

    browser = sign_in(app, exchange.admin_key)
    assert browser.get("/ui/").status_code == 200
    _age(exchange, last_seen_at=utcnow() - idle - timedelta(seconds=5))
    answer = browser.get("/ui/keys")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login?next=/ui/keys"

    browser = sign_in(app, exchange.admin_key)
    _age(exchange, created_at=utcnow() - lifetime - timedelta(seconds=5), last_seen_at=utcnow())
    assert browser.get("/ui/").status_code == 303  # in use all along, but too old

    browser = sign_in(app, exchange.admin_key)
    cookie = browser.cookies.get(sessions.COOKIE)
    page = browser.get("/ui/")
    assert browser.post("/ui/logout", data={"csrf": csrf_of(page.text)}).headers["location"] == "/ui/login"
    replay = client(app)
    replay.cookies.set(sessions.COOKIE, cookie, domain="127.0.0.1", path="/ui")
    assert replay.get("/ui/").status_code == 303  # the old cookie opens nothing any more


def test_a_revoked_credential_ends_its_sessions(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    with exchange.session() as db:
        credential, key = auth_service.create_credential(db, name="leaver", role="analyst")
    browser = sign_in(app, key)
    assert browser.get("/ui/").status_code == 200
    with exchange.session() as db:
        auth_service.revoke(db, credential.id, actor="test")
    assert browser.get("/ui/").status_code == 303


def test_forged_cookies_and_open_redirects_are_refused(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    browser = sign_in(app, exchange.admin_key)
    token = browser.cookies.get(sessions.COOKIE).rpartition(".")[0]
    forged = client(app)
    for value in (token, f"{token}.{'0' * 64}", "x" * 300, f"other.{token.rpartition('.')[2]}"):
        forged.cookies.set(sessions.COOKIE, value, domain="127.0.0.1", path="/ui")
        assert forged.get("/ui/").status_code == 303
    # The session table holds digests only: its id is no cookie.
    with exchange.session() as db:
        ids = list(db.scalars(select(UiSession.id)))
    assert token not in ids
    forged.cookies.set(
        sessions.COOKIE,
        sessions.sign_cookie(exchange.settings.resolved_secret(), ids[0]),
        domain="127.0.0.1",
        path="/ui",
    )
    assert forged.get("/ui/").status_code == 303
    for target in (
        "//evil.example/",
        "https://evil.example/",
        "/ui/\\evil",
        "/api/v1/partners",
        "/ui/\r\nX: y",
    ):
        answer = client(app).post("/ui/login", data={"key": exchange.admin_key, "next": target})
        assert answer.headers["location"] == "/ui/", target
        lang = client(app).get("/ui/lang/bn", params={"next": target})
        assert lang.headers["location"] == "/ui/", target


def test_cookie_flags_and_secure_behind_https(app, exchange: Exchange, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    answer = client(app).post("/ui/login", data={"key": exchange.admin_key, "next": "/ui/"})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie
    from exchange.main import create_app

    https_app = create_app(
        exchange.settings.model_copy(update={"public_url": "https://exchange.cert.example"})
    )
    cookie = client(https_app).post("/ui/login", data={"key": exchange.admin_key}).headers["set-cookie"]
    assert "Secure" in cookie


def test_pages_carry_a_strict_csp_and_no_inline_code(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    admin = sign_in(app, exchange.admin_key)
    for path in [*STAFF_PAGES, *ADMIN_PAGES, "/ui/login"]:
        answer = (client(app) if path == "/ui/login" else admin).get(path)
        assert answer.status_code == 200, path
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        html = answer.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", html), path
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path


@pytest.mark.parametrize("lang", ["en", "bn"])
def test_every_page_answers_in_both_languages(app, exchange: Exchange, lang: str) -> None:  # type: ignore[no-untyped-def]
    admin = sign_in(app, exchange.admin_key)
    admin.cookies.set("exchange_lang", lang, domain="127.0.0.1", path="/")
    for path in [*STAFF_PAGES, *ADMIN_PAGES, "/ui/audit?verify=1", "/ui/nowhere"]:
        answer = admin.get(path)
        assert answer.status_code == (404 if path == "/ui/nowhere" else 200), path
        assert f'<html lang="{lang}">' in answer.text
    if lang == "bn":
        assert "ড্যাশবোর্ড" in admin.get("/ui/").text


def test_the_browsers_language_is_the_default_and_the_switch_is_remembered(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    browser = client(app)
    page = browser.get("/ui/login", headers={"Accept-Language": "bn-BD,bn;q=0.9,en;q=0.5"})
    assert '<html lang="bn">' in page.text and "সাইন ইন" in page.text
    assert '<html lang="en">' in browser.get("/ui/login", headers={"Accept-Language": "fr, en;q=0.1"}).text
    switched = browser.get("/ui/lang/en?next=/ui/login")
    assert "exchange_lang=en" in switched.headers["set-cookie"]
    page = browser.get("/ui/login", headers={"Accept-Language": "bn"})
    assert '<html lang="en">' in page.text  # the choice wins over the browser
    assert browser.get("/ui/lang/xx").status_code == 404


def test_the_catalogue_translates_every_message(app) -> None:  # type: ignore[no-untyped-def]
    """Every message in the templates and page code has a Bangla translation (none left English)."""
    from pathlib import Path

    from babel.messages.extract import extract_from_dir

    from exchange.ui import i18n

    root = Path(i18n.__file__).parent
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "tr": (2,)}
    found = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(root), method_map=method_map, keywords=keywords
        )
    }
    bn = i18n.translations("bn")
    missing = sorted(m for m in found if bn.gettext(m) == m and m not in ("API", "TLP", "URL", "tlp"))
    assert len(found) > 200
    assert not missing, f"untranslated in bn: {missing[:10]}"


def test_the_api_docs_are_served_by_the_exchange_with_the_bearer_scheme(app) -> None:  # type: ignore[no-untyped-def]
    browser = client(app)
    docs = browser.get("/api/v1/docs")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets)
    for asset in assets:
        assert browser.get(asset).status_code == 200, asset
    schema = browser.get("/api/v1/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert {"bearer": []} in schema["security"]
    assert not any(p.startswith("/ui") for p in schema["paths"])


def test_a_sign_in_or_form_posted_from_another_site_is_refused(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    cross = {"Sec-Fetch-Site": "cross-site"}
    answer = client(app).post("/ui/login", data={"key": exchange.admin_key}, headers=cross)
    assert answer.status_code == 403 and sessions.COOKIE not in answer.headers.get("set-cookie", "")
    admin = sign_in(app, exchange.admin_key)
    csrf = csrf_of(admin.get("/ui/partners").text)
    refused = admin.post(
        "/ui/partners", data={"csrf": csrf, "slug": "cert-xs", "name": "X", "country": "IN"}, headers=cross
    )
    assert refused.status_code == 403
    with exchange.session() as db:
        assert partner_service.get_by_slug(db, "cert-xs", missing_ok=True) is None


def test_expired_sessions_are_purged_and_the_audit_filters_by_actor(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    sign_in(app, exchange.analyst_key)
    _age(exchange, last_seen_at=utcnow() - timedelta(days=2))
    admin = sign_in(app, exchange.admin_key)  # a sign-in sweeps the expired ones
    with exchange.session() as db:
        rows = list(db.scalars(select(UiSession)))
    assert len(rows) == 1
    analyst_id = exchange.analyst_key.partition(".")[0]
    page = admin.get("/ui/audit", params={"actor": analyst_id, "action": "ui.sign_in"})
    assert page.status_code == 200 and page.text.count(f"<code>{analyst_id}</code>") >= 1
    assert f"<code>{exchange.admin_key.partition('.')[0]}</code>" not in page.text


@pytest.mark.postgres
def test_sessions_on_postgresql(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """The session table on PostgreSQL: sign in, a form, idle expiry, sign-out."""
    from exchange.main import create_app
    from feeds.launcher import Launcher
    from tests.support.databases import throwaway_postgres
    from tests.support.pages import make_exchange

    with throwaway_postgres("ui") as url:
        exchange = make_exchange(tmp_path_factory, database_url=url)
        try:
            app = create_app(exchange.settings, feeds=Launcher)
            admin = sign_in(app, exchange.admin_key)
            csrf = csrf_of(admin.get("/ui/partners").text)
            created = admin.post(
                "/ui/partners", data={"csrf": csrf, "slug": "cert-pg", "name": "PG", "country": "IN"}
            )
            assert created.status_code == 200 and 'id="new-key"' in created.text
            assert (
                admin.post(
                    "/ui/partners", data={"slug": "cert-pg2", "name": "PG", "country": "IN"}
                ).status_code
                == 403
            )
            _age(exchange, last_seen_at=utcnow() - timedelta(hours=1))
            assert admin.get("/ui/").status_code == 303
            again = sign_in(app, exchange.admin_key)
            assert again.post("/ui/logout", data={"csrf": csrf_of(again.get("/ui/").text)}).status_code == 303
            assert again.get("/ui/").status_code == 303
        finally:
            exchange.engine.dispose()
