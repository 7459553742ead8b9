"""/ui/: the pages for analysts and administrators, over the same services as the REST API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import orjson
import yaml
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from exchange.agreement import service as agreement_service
from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.auth.deps import count_login_failure
from exchange.auth.models import Credential
from exchange.context import Ctx, KeyRingDep, context_of
from exchange.database.core import session_scope
from exchange.database.types import utcnow
from exchange.errors import BadRequestError, ExchangeError, RateLimitedError
from exchange.feed import service as feed_service
from exchange.feed.schemas import KINDS, FeedCreate, FeedUpdate
from exchange.incident import service as incident_service
from exchange.incident.observables import detect
from exchange.incident.schemas import IncidentIn
from exchange.intel.models import Collection, ObjectVersion
from exchange.partner import service as partner_service
from exchange.report import service as report_service
from exchange.sharing import preview as preview_service
from exchange.ui import i18n
from exchange.ui import service as sessions
from exchange.ui.chart import bars
from exchange.ui.web import (
    STATIC,
    Admin,
    Form,
    PageDb,
    PageError,
    SignInRequired,
    Staff,
    error_page,
    find_signed,
    form_list,
    gettext_for,
    redirect,
    render,
    safe_next,
    secure_cookies,
    sign_in_redirect,
    tr,
)
from policies.schemas import AgreementError, load_agreement_yaml, type_warnings
from policies.tlp import LEVELS

router = APIRouter(prefix="/ui", include_in_schema=False)
T = TypeVar("T")


def install(app: FastAPI) -> None:
    """Mount the pages, their static files and their error pages on `app`."""
    settings = context_of(app).settings
    app.state.ui_throttle = sessions.SignInThrottle(
        settings.ui_login_delay_seconds, settings.ui_login_max_delay_seconds
    )
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return redirect("/ui/")

    @app.exception_handler(SignInRequired)
    def _sign_in(request: Request, _exc: SignInRequired) -> Response:
        return sign_in_redirect(request)

    @app.exception_handler(PageError)
    def _page_error(request: Request, exc: PageError) -> Response:
        return error_page(request, exc.status, exc.message)


def _attempt(db: Session, action: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a change in a savepoint: (result, None), or (None, the refusal) with nothing kept."""
    try:
        with db.begin_nested():
            return action(), None
    except AgreementError as exc:
        return None, str(exc)
    except ExchangeError as exc:
        return None, exc.message
    except ValidationError as exc:
        return None, "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


# -- sign-in -------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    if find_signed(request) is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, ctx: Ctx) -> Response:
    """Sign in with an administrator's or analyst's key; a failure is audited and answered slowly."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        # Another site's page posting a key here (login CSRF): browsers say so; refuse it.
        raise PageError(403, tr(request, "Send the form from its page."))
    raw = await request.body()
    fields = dict(_parse(raw))
    key, next_url = fields.get("key", ""), safe_next(fields.get("next"))
    throttle: sessions.SignInThrottle = request.app.state.ui_throttle
    address = request.client.host if request.client else None
    if key.strip() and ctx.limits is not None:
        # The address's failed logins, counted with REST's and TAXII's: a flood is refused
        # before its slow hash, and audited once a minute rather than once an attempt.
        try:
            await run_in_threadpool(ctx.limits.before_login, address, key.strip(), "ui")
        except RateLimitedError as exc:
            page = render(request, "login.html", status=429, next=next_url, error=exc.message)
            page.headers["Retry-After"] = str(exc.retry_after_seconds)
            return page

    def attempt() -> tuple[Any, str] | None:
        with session_scope(ctx.sessions, write=True) as db:
            sessions.purge(
                db,
                idle=timedelta(minutes=ctx.settings.ui_idle_minutes),
                lifetime=timedelta(hours=ctx.settings.ui_session_hours),
            )
            return sessions.sign_in(db, key, cache=ctx.key_cache)

    signed = await run_in_threadpool(attempt) if key.strip() else None
    if signed is None:
        if key.strip():
            await run_in_threadpool(count_login_failure, ctx.limits, ctx.sessions, address, key.strip(), "ui")
        await asyncio.sleep(throttle.failed(address or "?"))
        message = tr(
            request,
            "That key was not accepted. Use an administrator's or analyst's key; partner keys cannot sign in here.",
        )
        return render(request, "login.html", status=401, next=next_url, error=message)
    _principal, token = signed
    response = redirect(next_url)
    response.set_cookie(
        sessions.COOKIE,
        sessions.sign_cookie(ctx.settings.resolved_secret(), token),
        max_age=int(ctx.settings.ui_session_hours * 3600),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(ctx.settings),
    )
    return response


def _parse(raw: bytes) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    if len(raw) > 64 * 1024:
        return []
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return []


@router.post("/logout")
def logout(request: Request, ctx: Ctx, _form: Form) -> Response:
    raw = request.cookies.get(sessions.COOKIE, "")
    token = sessions.unsign_cookie(ctx.settings.resolved_secret(), raw)
    if token:
        with session_scope(ctx.sessions, write=True) as db:
            sessions.sign_out(db, token)
    response = redirect("/ui/login")
    response.delete_cookie(sessions.COOKIE, path="/ui")
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, ctx: Ctx, next: str | None = None) -> Response:
    """Remember a language for this browser (a preference, not a change of any data)."""
    if lang not in i18n.LANGUAGES:
        raise PageError(404, tr(request, "No such language."))
    response = redirect(safe_next(next))
    response.set_cookie(
        i18n.COOKIE,
        lang,
        max_age=365 * 24 * 3600,
        path="/",
        samesite="lax",
        secure=secure_cookies(ctx.settings),
    )
    return response


# -- dashboard -----------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, signed: Staff, db: PageDb) -> Response:
    figures = report_service.dashboard(db, now=utcnow())
    chart = bars(
        [(d.day, d.versions) for d in figures.added_per_day],
        title=tr(request, "Objects added per day"),
    )
    return render(request, "dashboard.html", report=figures, chart=chart)


# -- partners and credentials --------------------------------------------------------------------


@router.get("/partners", response_class=HTMLResponse)
def partners(request: Request, signed: Admin, db: PageDb) -> Response:
    return render(request, "partners.html", partners=partner_service.list_(db), error=None, values={})


@router.post("/partners", response_class=HTMLResponse)
def add_partner(request: Request, signed: Admin, form: Form, db: PageDb) -> Response:
    values = {k: form.get(k, "").strip() for k in ("slug", "name", "country", "contact", "identity_id")}
    created, error = _attempt(
        db,
        lambda: partner_service.create(
            db,
            slug=values["slug"],
            name=values["name"],
            country=values["country"],
            contact=values["contact"],
            identity_id=values["identity_id"] or None,
            actor=signed.principal.credential_id,
        ),
    )
    if created is None:
        return render(
            request,
            "partners.html",
            status=400,
            partners=partner_service.list_(db),
            error=error,
            values=values,
        )
    partner, credential, key = created
    return _partner_page(request, db, partner.slug, new_key=(credential.id, key))


@router.get("/partners/{slug}", response_class=HTMLResponse)
def partner(request: Request, slug: str, signed: Admin, db: PageDb) -> Response:
    return _partner_page(request, db, slug)


def _partner_page(
    request: Request,
    db: Session,
    slug: str,
    *,
    new_key: tuple[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    found = partner_service.get_by_slug(db, slug, missing_ok=True)
    if found is None:
        raise PageError(404, tr(request, "No such partner."))
    return render(
        request,
        "partner.html",
        status=status,
        partner=found,
        credentials=partner_service.credentials(db, found),
        keys=orjson.loads(found.public_keys),
        new_key=new_key,
        error=error,
        now=utcnow(),
    )


@router.post("/partners/{slug}/status", response_class=HTMLResponse)
def partner_status(request: Request, slug: str, signed: Admin, form: Form, db: PageDb) -> Response:
    _, error = _attempt(
        db,
        lambda: partner_service.set_status(
            db, slug, form.get("status", ""), actor=signed.principal.credential_id
        ),
    )
    if error:
        return _partner_page(request, db, slug, error=error, status=400)
    return redirect(f"/ui/partners/{slug}")


@router.post("/partners/{slug}/credentials", response_class=HTMLResponse)
def issue_key(request: Request, slug: str, signed: Admin, form: Form, db: PageDb) -> Response:
    found = partner_service.get_by_slug(db, slug, missing_ok=True)
    if found is None:
        raise PageError(404, tr(request, "No such partner."))
    created, error = _attempt(
        db,
        lambda: partner_service.create_credential(
            db,
            partner=found,
            actor=signed.principal.credential_id,
            name=form.get("name", "").strip() or None,
        ),
    )
    if created is None:
        return _partner_page(request, db, slug, error=error, status=400)
    credential, key = created
    return _partner_page(request, db, slug, new_key=(credential.id, key))


@router.post("/credentials/{credential_id}/revoke", response_class=HTMLResponse)
def revoke_key(
    request: Request, credential_id: str, signed: Admin, form: Form, ctx: Ctx, db: PageDb
) -> Response:
    slug = form.get("partner", "")
    owner = partner_service.get_by_slug(db, slug, missing_ok=True)
    credential = db.get(Credential, credential_id) if owner else None
    if owner is None or credential is None or credential.partner_pk != owner.pk:
        raise PageError(404, tr(request, "No such credential for this partner."))
    auth_service.revoke(db, credential_id, actor=signed.principal.credential_id, cache=ctx.key_cache)
    return redirect(f"/ui/partners/{slug}")


@router.post("/partners/{slug}/keys", response_class=HTMLResponse)
def register_signing_key(request: Request, slug: str, signed: Admin, form: Form, db: PageDb) -> Response:
    text = form.get("jwk", "").strip()
    try:
        jwk = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _partner_page(
            request,
            db,
            slug,
            error=tr(request, "The key must be a JSON Web Key (JSON)."),
            status=400,
        )
    _, error = _attempt(
        db, lambda: partner_service.add_public_key(db, slug, jwk, actor=signed.principal.credential_id)
    )
    if error:
        return _partner_page(request, db, slug, error=error, status=400)
    return redirect(f"/ui/partners/{slug}")


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, signed: Admin, db: PageDb) -> Response:
    return _users_page(request, db)


def _users_page(
    request: Request,
    db: Session,
    *,
    new_key: tuple[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    staff = [c for c in auth_service.list_(db) if c.role in ("admin", "analyst")]
    return render(
        request, "users.html", status=status, users=staff, new_key=new_key, error=error, now=utcnow()
    )


@router.post("/users", response_class=HTMLResponse)
def add_user(request: Request, signed: Admin, form: Form, db: PageDb) -> Response:
    """An administrator's or analyst's credential; its key is shown on this answer only."""
    name, role = form.get("name", "").strip(), form.get("role", "")

    def create() -> tuple[Credential, str]:
        if role not in ("admin", "analyst"):
            raise BadRequestError(tr(request, "Choose the administrator or analyst role."))
        credential, key = auth_service.create_credential(db, name=name, role=role)
        audit.record(
            db,
            actor=signed.principal.credential_id,
            action="user.create",
            target=credential.id,
            details={"name": name, "role": role},
        )
        return credential, key

    created, error = _attempt(db, create)
    if created is None:
        return _users_page(request, db, error=error, status=400)
    return _users_page(request, db, new_key=(created[0].id, created[1]))


@router.post("/users/{credential_id}/revoke", response_class=HTMLResponse)
def revoke_user(
    request: Request, credential_id: str, signed: Admin, form: Form, ctx: Ctx, db: PageDb
) -> Response:
    credential = db.get(Credential, credential_id)
    if credential is None or credential.role not in ("admin", "analyst"):
        raise PageError(404, tr(request, "No such user."))
    auth_service.revoke(db, credential_id, actor=signed.principal.credential_id, cache=ctx.key_cache)
    return redirect("/ui/users")


# -- agreements ----------------------------------------------------------------------------------


@router.get("/agreements", response_class=HTMLResponse)
def agreements(request: Request, signed: Admin, db: PageDb) -> Response:
    rows = []
    for p in partner_service.list_(db):
        doc = agreement_service.current_doc_for(db, p.pk)
        rows.append({"partner": p, "doc": doc})
    return render(request, "agreements.html", rows=rows)


_SPLIT = re.compile(r"[\s,]+")


def _words(text: str) -> list[str]:
    return [w for w in _SPLIT.split(text.strip()) if w]


def _form_int(value: str) -> int | str:
    """A field's ASCII digits as a number, else the text for the schema to refuse by field
    ("²".isdigit() is true, and int("²") raises)."""
    return int(value) if value.isascii() and value.isdigit() else value


def document_from_form(request: Request, form: dict[str, str], slug: str) -> dict[str, Any]:
    """The agreement document the editor's fields describe (validation is the service's)."""
    doc: dict[str, Any] = {
        "partner": slug,
        "title": form.get("title", ""),
        "valid_from": form.get("valid_from", "").strip(),
        "valid_until": form.get("valid_until", "").strip(),
        "status": form.get("status", "draft"),
    }
    read_collections = form_list(request, "read_collections")
    if read_collections or form.get("read_max_tlp"):
        read: dict[str, Any] = {"collections": read_collections, "max_tlp": form.get("read_max_tlp", "")}
        if form.get("read_types", "").strip():
            read["types"] = _words(form["read_types"])
        if form.get("read_min_confidence", "").strip():
            value = form["read_min_confidence"].strip()
            read["min_confidence"] = _form_int(value)
        if form.get("read_embargo", "").strip():
            read["embargo"] = form["read_embargo"].strip()
        if form.get("read_redact", "").strip():
            read["redact"] = _words(form["read_redact"])
        if form.get("read_anonymize_source"):
            read["anonymize_source"] = True
        doc["read"] = read
    write_collections = form_list(request, "write_collections")
    relay_to = form.get("write_relay_to", "").strip()
    if write_collections or form.get("write_types", "").strip() or relay_to:
        write: dict[str, Any] = {"collections": write_collections}
        if form.get("write_types", "").strip():
            write["types"] = _words(form["write_types"])
        if form.get("write_require_signature"):
            write["require_signature"] = True
        if relay_to:
            write["relay_to"] = relay_to if relay_to in ("none", "all") else _words(relay_to)
        if form.get("write_anonymize_on_relay"):
            write["anonymize_on_relay"] = True
        doc["write"] = write
    per_minute, burst = (
        form.get("rate_limit_per_minute", "").strip(),
        form.get("rate_limit_burst", "").strip(),
    )
    if per_minute or burst:
        rate: dict[str, Any] = {"per_minute": _form_int(per_minute)}
        if burst:
            rate["burst"] = _form_int(burst)
        doc["rate_limit"] = rate
    if form.get("push_url", "").strip() or form.get("push_every", "").strip():
        push: dict[str, Any] = {
            "url": form.get("push_url", "").strip(),
            "every": form.get("push_every", "").strip(),
        }
        if form.get("push_collection", "").strip():
            push["collection"] = form["push_collection"].strip()
        doc["push"] = push
    return doc


def field_errors(problems: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Problems keyed by the editor's field names ("read.collections[0]" -> "read_collections")."""
    out: dict[str, list[str]] = {}
    for path, reason in problems:
        name = re.sub(r"\[\d+\]", "", path).replace(".", "_") or "general"
        if name in ("read", "write", "push", "rate_limit"):
            name = f"{name}_section"
        out.setdefault(name, []).append(reason)
    return out


def _editor(
    request: Request,
    db: Session,
    slug: str,
    *,
    doc: dict[str, Any] | None,
    yaml_text: str | None = None,
    errors: dict[str, list[str]] | None = None,
    preview: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    saved: Any = None,
    status: int = 200,
) -> Response:
    found = partner_service.get_by_slug(db, slug, missing_ok=True)
    if found is None:
        raise PageError(404, tr(request, "No such partner."))
    try:
        versions = agreement_service.history(db, slug)
    except ExchangeError:
        versions = []
    if doc is None:
        doc = orjson.loads(versions[-1].document) if versions else _blank(slug)
    return render(
        request,
        "agreement.html",
        status=status,
        partner=found,
        doc=doc,
        yaml_text=yaml_text if yaml_text is not None else _yaml(doc),
        errors=errors or {},
        preview=preview,
        warnings=warnings or [],
        saved=saved,
        versions=versions,
        collections=sorted(agreement_service.known_collections(db)),
        levels=LEVELS,
    )


def _blank(slug: str) -> dict[str, Any]:
    today = utcnow().date()
    return {
        "partner": slug,
        "title": "",
        "valid_from": today.isoformat(),
        "valid_until": (today + timedelta(days=365 * 5)).isoformat(),
        "status": "draft",
    }


def _yaml(doc: dict[str, Any]) -> str:
    text: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    return text


@router.get("/agreements/{slug}", response_class=HTMLResponse)
def agreement_editor(request: Request, slug: str, signed: Admin, db: PageDb) -> Response:
    return _editor(request, db, slug, doc=None)


@router.post("/agreements/{slug}", response_class=HTMLResponse)
def agreement_submit(request: Request, slug: str, signed: Admin, form: Form, db: PageDb) -> Response:
    """Preview (from the fields or the YAML) or save; nothing is stored without `action=save`."""
    action = form.get("action", "preview")
    yaml_text = None
    if action.endswith("_yaml"):
        yaml_text = form.get("yaml", "")
        try:
            data = load_agreement_yaml(yaml_text, source=None)
        except AgreementError as exc:
            return _editor(
                request,
                db,
                slug,
                doc=None,
                yaml_text=yaml_text,
                errors=field_errors(exc.problems),
                status=422,
            )
        if not isinstance(data, dict):
            data = {"partner": slug}
        if data.get("partner") != slug:
            errors = {"partner": [tr(request, "This editor is for partner %s.") % slug]}
            return _editor(request, db, slug, doc=None, yaml_text=yaml_text, errors=errors, status=422)
        document = data
    else:
        document = document_from_form(request, form, slug)
    try:
        doc = agreement_service.validate(db, document)
    except AgreementError as exc:
        return _editor(
            request,
            db,
            slug,
            doc=document,
            yaml_text=yaml_text,
            errors=field_errors(exc.problems),
            status=422,
        )
    clean = doc.to_document()
    if action.startswith("save"):
        applied = agreement_service.apply(db, clean, actor=signed.principal.credential_id, source="web page")
        return _editor(request, db, slug, doc=clean, warnings=applied.warnings, saved=applied)
    preview = preview_service.preview(db, doc, now=utcnow())
    return _editor(request, db, slug, doc=clean, preview=preview, warnings=type_warnings(doc))


@router.get("/agreements/{slug}/history", response_class=HTMLResponse)
def agreement_history(
    request: Request,
    slug: str,
    signed: Admin,
    db: PageDb,
    from_: int | None = Query(None, alias="from"),
    to: int | None = Query(None),
) -> Response:
    try:
        versions = agreement_service.history(db, slug)
    except ExchangeError as exc:
        raise PageError(404, exc.message) from None
    numbers = [v.version for v in versions]
    to = to if to in numbers else numbers[-1]
    from_ = from_ if from_ in numbers else max(1, to - 1)
    compared = agreement_service.version_diff(db, slug, from_, to)
    return render(
        request,
        "history.html",
        slug=slug,
        versions=versions,
        changes=compared.changes,
        unified=compared.unified,
        from_version=from_,
        to_version=to,
    )


# -- publishing ----------------------------------------------------------------------------------


def observables_from(text: str) -> list[dict[str, Any]]:
    """One observable a line, each with the type the exchange detects (None: not recognised)."""
    rows = []
    for line in text.splitlines()[:1000]:
        value = line.strip()
        if not value:
            continue
        found = detect(value)
        rows.append(
            {"line": value, "type": found.type if found else None, "value": found.value if found else None}
        )
    return rows


def _publish_form(
    request: Request,
    db: Session,
    *,
    values: dict[str, str],
    rows: list[dict[str, Any]] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    collections = list(db.scalars(select(Collection.alias).order_by(Collection.alias)))
    return render(
        request,
        "publish.html",
        status=status,
        values=values,
        rows=rows,
        error=error,
        levels=list(LEVELS),
        collections=collections,
        partners=partner_service.list_(db),
        audience=form_list(request, "audience"),
    )


@router.get("/publish", response_class=HTMLResponse)
def publish_page(request: Request, signed: Staff, db: PageDb) -> Response:
    return _publish_form(request, db, values={"tlp": "amber", "collection": "incidents"})


@router.get("/publish/detect")
def detect_types(signed: Staff, lines: str = Query("", max_length=200_000)) -> dict[str, Any]:
    """The types the exchange would give each line (the form shows them while typing)."""
    return {"observables": observables_from(lines)}


@router.post("/publish", response_class=HTMLResponse)
def publish(request: Request, signed: Staff, form: Form, db: PageDb, ctx: Ctx) -> Response:
    fields = (
        "title",
        "description",
        "incident_types",
        "severity",
        "tlp",
        "confidence",
        "collection",
        "observables",
        "first_seen",
        "last_seen",
    )
    values = {k: form.get(k, "") for k in fields}
    rows = observables_from(values["observables"])
    _ = gettext_for(request)
    unknown = [r["line"] for r in rows if r["type"] is None]
    if form.get("action") != "publish" or unknown:
        error = (
            (_("Not recognised (remove or fix these lines): %s") % ", ".join(unknown)) if unknown else None
        )
        return _publish_form(
            request, db, values=values, rows=rows, error=error, status=422 if unknown else 200
        )
    try:
        body = IncidentIn.model_validate(
            {
                "title": values["title"],
                "description": values["description"],
                "incident_types": _words(values["incident_types"]),
                "severity": values["severity"] or None,
                "tlp": values["tlp"],
                "confidence": values["confidence"].strip() or None,
                "collection": values["collection"] or "incidents",
                "audience": form_list(request, "audience"),
                "first_seen": values["first_seen"].strip() or None,
                "last_seen": values["last_seen"].strip() or None,
                "observables": [{"type": r["type"], "value": r["value"]} for r in rows],
            }
        )
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _publish_form(request, db, values=values, rows=rows, error=message, status=422)
    published, error = _attempt(
        db,
        lambda: incident_service.publish_incident(
            db, body, actor=signed.principal.credential_id, settings=ctx.settings
        ),
    )
    if published is None:
        return _publish_form(request, db, values=values, rows=rows, error=error, status=422)
    return redirect(f"/ui/incidents/{published.incident}?published=1")


@router.get("/incidents", response_class=HTMLResponse)
def incidents(request: Request, signed: Staff, db: PageDb) -> Response:
    rows = db.execute(
        select(Collection.alias, ObjectVersion.stix_id, ObjectVersion.body, ObjectVersion.revoked)
        .join(Collection, Collection.pk == ObjectVersion.collection_pk)
        .where(ObjectVersion.type == "incident", ObjectVersion.is_latest.is_(True))
        .order_by(ObjectVersion.date_added_us.desc())
        .limit(200)
    ).all()
    items = [{"collection": r.alias, "object": orjson.loads(r.body), "revoked": r.revoked} for r in rows]
    return render(request, "incidents.html", items=items)


def _incident_view(db: Session, stix_id: str) -> dict[str, Any] | None:
    """The incident's latest version, and its delivery: objects, receipts, sightings, revocations."""
    row = db.execute(
        select(Collection.alias, ObjectVersion.body, ObjectVersion.revoked)
        .join(Collection, Collection.pk == ObjectVersion.collection_pk)
        .where(
            ObjectVersion.stix_id == stix_id,
            ObjectVersion.type == "incident",
            ObjectVersion.is_latest.is_(True),
        )
    ).first()
    if row is None:
        return None
    delivery = report_service.incident_delivery(db, stix_id)
    ids = sorted({o.stix_id for o in delivery.objects})
    names = {
        r.stix_id: _label(orjson.loads(r.body))
        for r in db.execute(
            select(ObjectVersion.stix_id, ObjectVersion.body).where(
                ObjectVersion.stix_id.in_(ids), ObjectVersion.is_latest.is_(True)
            )
        )
    }
    received_by: dict[str, set[str]] = {}
    for receipt in delivery.receipts:
        received_by.setdefault(receipt.partner, set()).add(receipt.stix_id)
    incident_obj = next((o for o in delivery.objects if o.stix_id == stix_id), None)
    return {
        "incident": orjson.loads(row.body),
        "collection": row.alias,
        "tlp": incident_obj.tlp if incident_obj else None,
        "revoked": bool(row.revoked),
        "delivery": delivery,
        "names": names,
        "not_received": sorted({m["partner"] for m in delivery.revocations_not_received}),
    }


def _label(body: dict[str, Any]) -> str:
    for key in ("name", "pattern", "relationship_type"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return ""


@router.get("/incidents/{stix_id}", response_class=HTMLResponse)
def incident(request: Request, stix_id: str, signed: Staff, db: PageDb) -> Response:
    view = _incident_view(db, stix_id)
    if view is None:
        raise PageError(404, tr(request, "No such incident."))
    return render(
        request,
        "incident.html",
        view=view,
        published=request.query_params.get("published") == "1",
        revoked_now=request.query_params.get("revoked") == "1",
        confirm=request.query_params.get("confirm") == "1",
    )


@router.post("/incidents/{stix_id}/revoke", response_class=HTMLResponse)
def revoke_incident(
    request: Request, stix_id: str, signed: Staff, form: Form, db: PageDb, ctx: Ctx
) -> Response:
    """Revoke the incident and its report (a confirmation first); partners get it on their next pull."""
    if form.get("confirm") != "yes":
        return redirect(f"/ui/incidents/{stix_id}?confirm=1")
    view = _incident_view(db, stix_id)
    if view is None:
        raise PageError(404, tr(request, "No such incident."))
    # The incident's report is revoked with it (the service keeps the two in step).
    _, error = _attempt(
        db,
        lambda: incident_service.revoke(
            db, stix_id, actor=signed.principal.credential_id, settings=ctx.settings
        ),
    )
    if error:
        raise PageError(409, error)
    return redirect(f"/ui/incidents/{stix_id}?revoked=1")


# -- look-up -------------------------------------------------------------------------------------


@router.get("/lookup", response_class=HTMLResponse)
def lookup(request: Request, signed: Staff, db: PageDb, value: str = Query("", max_length=2000)) -> Response:
    result, error = None, None
    if value.strip():
        result, error = _attempt(db, lambda: incident_service.lookup(db, value))
    return render(request, "lookup.html", value=value, result=result, error=error)


# -- feeds ---------------------------------------------------------------------------------------


@router.get("/feeds", response_class=HTMLResponse)
def feeds(request: Request, signed: Staff, db: PageDb) -> Response:
    rows = [feed_service.read(db, f) for f in feed_service.list_(db)]
    return render(
        request,
        "feeds.html",
        feeds=rows,
        kinds=sorted(KINDS),
        values={},
        error=None,
        collections=_aliases(db),
        levels=LEVELS,
    )


def _aliases(db: Session) -> list[str]:
    return list(db.scalars(select(Collection.alias).order_by(Collection.alias)))


def _launcher(request: Request, ctx: Ctx) -> Any:
    if ctx.feeds is None:
        raise PageError(503, tr(request, "Feeds cannot be changed or run in this process."))
    return ctx.feeds


def _feed_fields(form: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("url", "collection", "every", "cron", "tlp"):
        if form.get(name, "").strip():
            out[name] = form[name].strip()
    if form.get("confidence", "").strip():
        out["confidence"] = form["confidence"].strip()
    return out


@router.post("/feeds", response_class=HTMLResponse)
def add_feed(request: Request, signed: Admin, form: Form, db: PageDb, ctx: Ctx) -> Response:
    launcher = _launcher(request, ctx)
    values = {
        k: form.get(k, "")
        for k in ("name", "kind", "url", "collection", "every", "cron", "tlp", "confidence")
    }

    def create() -> Any:
        body = FeedCreate.model_validate(
            {
                "name": values["name"].strip(),
                "kind": values["kind"],
                "enabled": bool(form.get("enabled")),
                **_feed_fields(form),
            }
        )
        return feed_service.create(
            db, body, actor=signed.principal.credential_id, check_options=launcher.check_options
        )

    created, error = _attempt(db, create)
    if created is None:
        rows = [feed_service.read(db, f) for f in feed_service.list_(db)]
        return render(
            request,
            "feeds.html",
            status=422,
            feeds=rows,
            kinds=sorted(KINDS),
            values=values,
            error=error,
            collections=_aliases(db),
            levels=LEVELS,
        )
    return redirect(f"/ui/feeds/{created.name}")


@router.get("/feeds/{name}", response_class=HTMLResponse)
def feed(request: Request, name: str, signed: Staff, db: PageDb) -> Response:
    return _feed_page(request, db, name)


def _feed_page(
    request: Request, db: Session, name: str, *, error: str | None = None, status: int = 200
) -> Response:
    try:
        found = feed_service.get_by_name(db, name)
    except ExchangeError:
        raise PageError(404, tr(request, "No such feed.")) from None
    runs = [feed_service.run_read(r) for r in feed_service.runs(db, found, limit=20)]
    return render(
        request,
        "feed.html",
        status=status,
        feed=feed_service.read(db, found),
        runs=runs,
        error=error,
        collections=_aliases(db),
        levels=LEVELS,
        started=request.query_params.get("started"),
    )


@router.post("/feeds/{name}", response_class=HTMLResponse)
def edit_feed(request: Request, name: str, signed: Admin, form: Form, db: PageDb, ctx: Ctx) -> Response:
    launcher = _launcher(request, ctx)

    def update() -> Any:
        body = FeedUpdate(enabled=bool(form.get("enabled")), **_feed_fields(form))
        return feed_service.update_(
            db, name, body, actor=signed.principal.credential_id, check_options=launcher.check_options
        )

    _, error = _attempt(db, update)
    if error:
        return _feed_page(request, db, name, error=error, status=422)
    return redirect(f"/ui/feeds/{name}")


@router.post("/feeds/{name}/run", response_class=HTMLResponse)
def run_feed(request: Request, name: str, signed: Admin, form: Form, ctx: Ctx) -> Response:
    launcher = _launcher(request, ctx)
    try:
        run_id = launcher.start_feed(name, actor=signed.principal.credential_id)
    except ExchangeError as exc:
        raise PageError(exc.status, exc.message) from None
    return redirect(f"/ui/feeds/{name}?started={run_id}")


# -- audit ---------------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_log(
    request: Request,
    signed: Admin,
    db: PageDb,
    action: str | None = Query(None, max_length=100),
    actor: str | None = Query(None, max_length=100),
    before: int | None = Query(None, ge=1, le=2**63 - 1),
    verify: str | None = None,
) -> Response:
    events = audit.list_(db, limit=100, action=action or None, before=before, actor=actor or None)
    report = audit.verify(db) if verify else None
    rows = [
        {
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "details": e.details,
        }
        for e in events
    ]
    return render(
        request,
        "audit.html",
        events=rows,
        action=action or "",
        actor=actor or "",
        report=report,
        older=rows[-1]["seq"] if len(rows) == 100 else None,
    )


# -- signing keys --------------------------------------------------------------------------------


@router.get("/keys", response_class=HTMLResponse)
def signing_keys(request: Request, signed: Admin, keyring: KeyRingDep) -> Response:
    return render(
        request, "keys.html", keys=keyring.keys(), rotated=request.query_params.get("rotated") == "1"
    )


@router.post("/keys/rotate", response_class=HTMLResponse)
def rotate_keys(request: Request, signed: Admin, form: Form, keyring: KeyRingDep, db: PageDb) -> Response:
    if form.get("confirm") != "yes":
        raise PageError(400, tr(request, "Tick the box to confirm the rotation."))
    old, current, upcoming = keyring.rotate()
    audit.record(
        db,
        actor=signed.principal.credential_id,
        action="signing.key.rotate",
        target=current,
        details={"retired": old, "current": current, "next": upcoming},
    )
    return redirect("/ui/keys?rotated=1")
