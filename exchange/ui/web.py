"""The pages' plumbing: templates, the signed-in caller, forms with their CSRF token, error pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from exchange.config import Settings
from exchange.context import Ctx, context_of
from exchange.database.core import session_scope
from exchange.limits.middleware import CSP
from exchange.ui import i18n
from exchange.ui import service as sessions
from exchange.ui.service import Signed

HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_FORM_BYTES = 1024 * 1024

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["when"] = i18n.when
_env.globals["LANGUAGES"] = i18n.LANGUAGES
_env.globals["LANGUAGE_NAMES"] = i18n.NAMES


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""


class PageError(Exception):
    """A page that cannot be shown to this caller (403) or does not exist (404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def language(request: Request) -> str:
    lang = getattr(request.state, "lang", None)
    if lang is None:
        lang = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
        request.state.lang = lang
    return lang


def gettext_for(request: Request) -> Any:
    return i18n.translations(language(request)).gettext


def tr(request: Request, message: str) -> str:
    """`message` in the caller's language (extracted by `pybabel extract -k tr:2`)."""
    text: str = gettext_for(request)(message)
    return text


def secure_cookies(settings: Settings) -> bool:
    return bool(settings.public_url and settings.public_url.lower().startswith("https://"))


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A page in the caller's language, with the signed-in user's CSRF token for its forms."""
    lang = language(request)
    trans = i18n.translations(lang)
    signed: Signed | None = getattr(request.state, "signed", None)
    body = _env.get_template(template).render(
        request=request,
        lang=lang,
        _=trans.gettext,
        ngettext=trans.ngettext,
        user=signed.principal if signed else None,
        csrf=signed.csrf if signed else "",
        path=request.url.path,
        here=_here(request),
        **context,
    )
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Vary": "Cookie, Accept-Language"}
    return HTMLResponse(body, status_code=status, headers=headers)


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{request.url.path}{query}"


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_next(value: str | None) -> str:
    """Only a path of the pages themselves: never another site (an open redirect)."""
    if not value or not value.startswith("/ui/") or value.startswith("//") or "\\" in value:
        return "/ui/"
    if any(ord(ch) < 32 for ch in value):
        return "/ui/"
    return value


def _lifetimes(settings: Settings) -> tuple[timedelta, timedelta]:
    return timedelta(minutes=settings.ui_idle_minutes), timedelta(hours=settings.ui_session_hours)


def find_signed(request: Request) -> Signed | None:
    """The live session of this request's cookie, or None (and none is created)."""
    ctx = context_of(request.app)
    raw = request.cookies.get(sessions.COOKIE)
    token = sessions.unsign_cookie(ctx.settings.resolved_secret(), raw) if raw else None
    if token is None:
        return None
    idle, lifetime = _lifetimes(ctx.settings)
    with session_scope(ctx.sessions) as db:
        signed, due = sessions.find(db, token, idle=idle, lifetime=lifetime)
    if signed is not None and due:
        with session_scope(ctx.sessions, write=True) as db:
            sessions.touch(db, signed.session_id)
    return signed


def signed_in(request: Request) -> Signed:
    """The signed-in administrator or analyst; otherwise the browser goes to sign in."""
    signed = find_signed(request)
    if signed is None:
        raise SignInRequired()
    limits = context_of(request.app).limits
    if limits is not None:
        # The signed-in credential's rate, as on REST and TAXII: a page is one more request.
        limits.admit(signed.principal, "ui")
    request.state.signed = signed
    return signed


def admin_only(request: Request, signed: Annotated[Signed, Depends(signed_in)]) -> Signed:
    """Administrators only: an analyst gets a 403 page that says so."""
    if signed.principal.role != "admin":
        raise PageError(403, tr(request, "This page is for administrators only."))
    return signed


async def read_form(request: Request, signed: Annotated[Signed, Depends(signed_in)]) -> dict[str, str]:
    """A posted form (urlencoded), refused unless it carries this session's own CSRF token."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise PageError(403, tr(request, "Send the form from its page."))
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise PageError(413, tr(request, "The form is too large."))
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        raise PageError(415, tr(request, "Send the form from its page."))
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, tr(request, "The form could not be read.")) from None
    form: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for key, value in pairs:
        lists.setdefault(key, []).append(value)
        form[key] = value
    if not sessions.csrf_ok(signed, form.get("csrf")):
        raise PageError(
            403,
            tr(
                request,
                "This form has expired or was not sent from this session. Reload the page and try again.",
            ),
        )
    request.state.form_lists = lists
    return form


def form_list(request: Request, name: str) -> list[str]:
    """Every value of a repeated form field (checkboxes)."""
    return list(getattr(request.state, "form_lists", {}).get(name, []))


def page_db(request: Request, ctx: Ctx, _signed: Annotated[Signed, Depends(signed_in)]) -> Iterator[Session]:
    """One transaction per page; forms (POST) take the write lock up front."""
    with session_scope(ctx.sessions, write=request.method != "GET") as db:
        yield db


Staff = Annotated[Signed, Depends(signed_in)]
Admin = Annotated[Signed, Depends(admin_only)]
Form = Annotated[dict[str, str], Depends(read_form)]
PageDb = Annotated[Session, Depends(page_db, scope="function")]


def sign_in_redirect(request: Request) -> Response:
    return redirect(f"/ui/login?next={quote(safe_next(_here(request)), safe='/')}")


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    request.state.signed = getattr(request.state, "signed", None)
    return render(request, "error.html", status=status, status_code=status, message=message)
