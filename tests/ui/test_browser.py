"""The pages in a real browser (Debian's headless chromium through Playwright) against a live
uvicorn: the journey an administrator and an analyst make, screenshots of every page, and no
request that leaves 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from taxii2client.v21 import Collection as TaxiiCollection

from exchange.intel import service as intel_service
from exchange.main import create_app
from feeds.launcher import Launcher
from tests.support.pages import Exchange
from tests.support.taxii import free_port, start_uvicorn

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
    ),
]


@pytest.fixture(scope="module")
def server(exchange: Exchange) -> Iterator[str]:
    port = free_port()
    uvicorn_server, thread = start_uvicorn(create_app(exchange.settings, feeds=Launcher), port)
    yield f"http://127.0.0.1:{port}"
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


class Watch:
    """Every request the page makes, and every console complaint (CSP violations among them)."""

    def __init__(self, page, base: str) -> None:  # type: ignore[no-untyped-def]
        self.base = base
        self.requests: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.console.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.console.append(str(e)))

    def assert_local(self) -> None:
        outside = [
            u
            for u in self.requests
            if urlsplit(u).scheme not in ("data", "about", "blob") and urlsplit(u).hostname != "127.0.0.1"
        ]
        assert not outside, f"requests left 127.0.0.1: {outside[:5]}"
        assert self.requests, "the listener saw no request at all"
        blocked = [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]
        assert not blocked, blocked


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_administrators_and_analysts_day(server: str, browser, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    watch = Watch(page, server)

    # Not signed in: sent to sign in; a partner's key is refused there.
    page.goto(f"{server}/ui/")
    assert urlsplit(page.url).path == "/ui/login"
    shot(page, "01-sign-in")
    page.fill("#key", exchange.partner_key)
    page.click("button[type=submit]")
    assert "partner keys cannot sign in" in page.inner_text("#login-error")
    page.fill("#key", exchange.admin_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/ui/")
    assert page.inner_text("h1") == "Dashboard"
    assert page.locator("#reciprocity").count() == 1
    shot(page, "02-dashboard")

    # A new partner; its first key is shown once, with a copy button.
    page.click("nav >> text=Partners")
    page.fill("#slug", "cert-lk")
    page.fill("#name", "Sri Lanka CERT")
    page.fill("#country", "LK")
    page.click("text=Add partner")
    partner_key = page.inner_text("#new-key").strip()
    assert partner_key.startswith("cred-")
    assert page.locator("button.copy").is_visible()
    shot(page, "03-partner-created")

    # An agreement with a mistake: the error shows beside the field, nothing is stored.
    page.click("text=Edit agreement")
    page.fill("#title", "Bangladesh-Sri Lanka MoU")
    page.fill("#valid_from", "2026-01-01")
    page.fill("#valid_until", "2025-01-01")
    page.check("input[name=read_collections][value=incidents]")
    page.select_option("#read_max_tlp", "green")
    page.fill(
        "#read_types", "incident, report, indicator, relationship, identity, marking-definition, malwre"
    )
    page.select_option("#status", "active")
    page.click("button[value=preview]")
    error = page.locator("#err-valid_until")
    assert "before valid_from" in error.inner_text()
    assert page.get_attribute("#valid_until", "aria-invalid") == "true"
    assert page.locator("#save").count() == 0
    shot(page, "04-agreement-error")

    # Fixed: the preview with what it would show and why objects are withheld, the typo warned.
    page.fill("#valid_until", "2030-12-31")
    page.click("button[value=preview]")
    preview = page.locator("#preview")
    assert preview.is_visible()
    assert "would see" in preview.inner_text()
    reasons = page.inner_text("#reasons")  # the demo's amber objects and its malware are withheld
    assert "TLP above" in reasons and "type not granted" in reasons
    assert "become visible" in page.inner_text("#change")
    assert "'malwre' is not a type STIX 2.1 defines; did you mean 'malware'?" in page.inner_text("main")
    assert "valid_until" in page.input_value("#yaml")
    shot(page, "05-agreement-preview")
    page.click("#save")
    assert "Saved as version 1." in page.inner_text("#saved")

    # A second version (amber instead of green) and the diff between the two.
    page.select_option("#read_max_tlp", "amber")
    page.click("button[value=preview]")
    page.click("#save")
    assert "Saved as version 2." in page.inner_text("#saved")
    page.click("text=Version history")
    diff = page.inner_text("#diff")
    assert "read.max_tlp" in diff and "green" in diff and "amber" in diff
    assert "+  max_tlp: amber" in page.inner_text("#unified")
    shot(page, "06-agreement-diff")

    # Publishing: the detected type of each observable line before sending.
    page.click("nav >> text=Publish")
    page.fill("#title", "Phishing of bank customers")
    page.fill("#description", "Credential phishing by SMS")
    page.select_option("#tlp", "green")
    page.fill(
        "#observables", "45.13.22.99\nlogin-bank-secure.top\nhttp://login-bank-secure.top/a\nnot a value"
    )
    page.wait_for_selector("#detected-table")  # drawn while typing
    page.click("button[value=check]")
    detected = page.inner_text("#detected-table")
    assert "ipv4-addr" in detected and "domain-name" in detected and "url" in detected
    assert "not recognised" in detected
    shot(page, "07-publish-check")
    page.fill("#observables", "45.13.22.99\nlogin-bank-secure.top")
    page.click("button[value=publish]")
    page.wait_for_url(re.compile(r".*/ui/incidents/incident--.*"))
    incident_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    assert "Published" in page.inner_text("main")
    shot(page, "08-incident")

    # The partner pulls it with a TAXII client.
    with exchange.session() as db:
        root = intel_service.get_api_root(db, exchange.settings.api_root)
        coll = intel_service.get_collection(db, api_root_pk=root.pk, ref="incidents")
        coll_url = f"{server}/taxii2/{exchange.settings.api_root}/collections/{coll.id}/"
    taxii = TaxiiCollection(coll_url, user=partner_key.partition(".")[0], password=partner_key)
    served = {o["id"] for o in taxii.get_objects()["objects"]}
    assert incident_id in served

    # Revoke, after a confirmation; then who has not yet received the revocation.
    page.reload()
    assert "cert-lk" in page.inner_text("#recipients")
    # Times in UTC, with the reader's local time beside them (drawn by the page's script).
    assert "UTC" in page.locator("#recipients time").first.inner_text()
    assert page.locator("#recipients time + span.local").count() >= 1
    page.click("#revoke")  # the box is not ticked: the browser refuses to send
    assert "/revoke" not in page.url
    page.check("#confirm-revoke")
    page.click("#revoke")
    page.wait_for_url(re.compile(r".*revoked=1"))
    assert "cert-lk" in page.inner_text("#not-yet")
    shot(page, "09-incident-revoked")
    taxii.get_objects()  # the partner's next pull brings the revocation
    page.reload()
    assert page.locator("#not-yet-none").is_visible()

    # Bangla: the switch is remembered across pages.
    with page.expect_navigation():
        page.click("header >> text=বাংলা")
    assert page.inner_text("nav").count("ড্যাশবোর্ড") == 1
    assert page.get_attribute("html", "lang") == "bn"
    shot(page, "10-incident-bn")
    # A feed (pointing at this exchange itself: nothing leaves 127.0.0.1), then its page.
    page.goto(f"{server}/ui/feeds")
    page.fill("#name", "local-bundle")
    page.select_option("#kind", "stix-bundle")
    page.fill("#url", f"{server}/healthz")
    page.fill("#every", "6h")
    page.click("form.grid button[type=submit]")
    page.wait_for_url(f"{server}/ui/feeds/local-bundle")
    assert page.get_attribute("html", "lang") == "bn"
    page.click("form[action$='/run'] button")  # run now: /healthz is no STIX bundle, so it fails
    page.wait_for_url(re.compile(r".*started=\d+"))
    for _ in range(40):
        if page.locator("td:has-text('ব্যর্থ')").count():
            break
        page.wait_for_timeout(250)
        page.reload()
    assert page.locator("td:has-text('ব্যর্থ')").count() >= 1  # the run's status, in Bangla
    shot(page, "11-feed-bn")
    for name, path in [
        ("12-dashboard-bn", "/ui/"),
        ("12-agreements-bn", "/ui/agreements"),
        ("12-incidents-bn", "/ui/incidents"),
        ("12-lookup-bn", "/ui/lookup?value=45.13.22.99"),
        ("13-feeds-bn", "/ui/feeds"),
        ("14-audit-bn", "/ui/audit?verify=1"),
        ("15-keys-bn", "/ui/keys"),
        ("16-partners-bn", "/ui/partners"),
    ]:
        page.goto(f"{server}{path}")
        assert page.get_attribute("html", "lang") == "bn"
        shot(page, name)
    assert "সিগনেচার" in page.inner_text("nav") or "স্বাক্ষর" in page.inner_text("nav")
    watch.assert_local()

    # Phone width: the pages still fit (no sideways scrolling of the page itself).
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=context.storage_state())
    small = phone.new_page()
    phone_watch = Watch(small, server)
    small.goto(f"{server}/ui/publish")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    shot(small, "17-publish-phone")
    small.goto(f"{server}/api/v1/docs")
    small.wait_for_selector("button.authorize", timeout=15000)
    assert small.locator("button.authorize").count() == 1
    shot(small, "18-api-docs")
    phone_watch.assert_local()
    phone.close()
    context.close()


def test_the_keyboard_reaches_sign_in(server: str, browser, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/ui/login")
    page.keyboard.type(exchange.analyst_key)  # the key field has the focus
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server}/ui/")
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.className") == "skip"
    # An analyst sees no administrator's links, and is told so on an administrator's page.
    assert page.locator("nav >> text=Agreements").count() == 0
    answer = page.goto(f"{server}/ui/agreements/cert-in")
    assert answer is not None and answer.status == 403
    assert "administrators only" in page.inner_text("main")
    shot(page, "19-analyst-forbidden")
    context.close()
