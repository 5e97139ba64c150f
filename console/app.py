"""The console's router, templates, stores and middleware, handed to the gateway (`webhook_gateway.app`).

Everything console-specific (the session and CSRF middleware, the sign-in rate limit, the role guard) is set
on the `/console` router, so the provider webhook routes are untouched by construction: no CSRF on a webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.params import Body, FromPath, QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Stream, Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_403_FORBIDDEN
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.template.config import TemplateConfig

from access import audit_view
from bookings.schedule import local_days
from console import security
from console.admin import (
    admin_home,
    google_connect,
    google_disconnect,
    google_page,
    keys_page,
    staff_add,
    staff_page,
    staff_remove,
    staff_role,
)
from console.campaigns import (
    campaign_detail,
    campaign_launch,
    campaign_list,
    campaign_new,
    campaign_preview,
)
from console.ops import (
    ops_consent,
    ops_consent_lift,
    ops_consent_lookup,
    ops_consent_marketing,
    ops_consent_suppress,
    ops_events,
    ops_kpis,
    ops_replay,
    ops_runs,
)
from console.pages import NO_STORE, page
from console.roles import nav_for
from messaging import staff_tasks
from models import Settings, session_scope
from models.access_audit import Actor
from models.types import utcnow
from providers import google_oidc

HERE = Path(__file__).resolve().parent
Query = Annotated[str | None, QueryParameter(required=False)]
FromQuery = Annotated[str | None, QueryParameter(name="from", required=False)]
ToQuery = Annotated[str | None, QueryParameter(name="to", required=False)]
BeforeQuery = Annotated[int | None, QueryParameter(required=False, gt=0)]  # a keyset page mark
StateQuery = Annotated[str | None, QueryParameter(name="state", required=False)]  # `state` is reserved
_NO_STORE = NO_STORE
_page = page


class SignInController(Controller):
    """The sign-in pages (public) and sign-out."""

    path = "/"

    @get("/auth/start")
    async def start(self, request: Request) -> Response[Any] | Template:
        settings: Settings = request.app.state.console_settings
        challenge = google_oidc.Challenge.new()
        try:
            url = await asyncio.to_thread(google_oidc.authorization_url, settings, challenge)
        except google_oidc.OIDCError as exc:
            return _page(request, "login.html", status_code=503, error=str(exc))
        # The session holds this sign-in's secrets until the callback; it gets a new id when sign-in succeeds.
        current = dict(request.session) if isinstance(request.session, dict) else {}
        request.set_session({**current, "oidc": {**vars(challenge), "at": time.time()}})
        return Redirect(url, status_code=302, headers=_NO_STORE)

    @get("/auth/callback")
    async def callback(
        self, request: Request, oauth_state: StateQuery = None, code: Query = None, error: Query = None
    ) -> Response[Any] | Template:
        settings: Settings = request.app.state.console_settings
        kept = dict(request.session) if isinstance(request.session, dict) else {}
        pending = kept.pop(
            "oidc", None
        )  # one use, whatever happens next; a signed-in session stays as it was
        if kept:
            request.set_session(kept)
        else:
            request.clear_session()

        async def refuse(reason: str, actor: str = "unknown", role: str = "none") -> Template:
            await asyncio.to_thread(
                security.audit,
                Actor(actor, role, security.client_address(request)),
                action="console.sign_in",
                outcome="denied",
                reason=reason,
            )
            return _page(request, "login.html", status_code=HTTP_403_FORBIDDEN, error=reason)

        if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > 600:
            return await refuse("the sign-in took too long or was not started here; start again")
        if not oauth_state or not secrets.compare_digest(oauth_state, str(pending.get("state", ""))):
            return await refuse("the sign-in answer does not belong to this browser (state)")
        if error or not code:
            return await refuse(f"Google did not sign you in ({error or 'no code'})")
        challenge = google_oidc.Challenge(pending["state"], pending["nonce"], pending["code_verifier"])
        try:
            identity = await asyncio.to_thread(google_oidc.complete, settings, challenge, code)
        except google_oidc.OIDCError as exc:
            return await refuse(str(exc))
        if not identity.email_verified:
            return await refuse("Google has not verified this email address", identity.email)
        if identity.hosted_domain is None or identity.hosted_domain not in settings.console_domains:
            return await refuse(
                "this Google account is not one of the clinic's Workspace accounts", identity.email
            )
        role = await asyncio.to_thread(security.active_role, identity.email)
        if role is None:
            return await refuse("this account is not on the clinic's staff list", identity.email)
        now = time.time()
        await security.renew_session(
            request, {"email": identity.email, "role": role, "signed_in_at": now, "last_seen": now}
        )
        await asyncio.to_thread(
            security.audit,
            Actor(identity.email, role, security.client_address(request)),
            action="console.sign_in",
            outcome="allowed",
        )
        return Redirect("/console", status_code=303, headers=_NO_STORE)

    @post("/logout", status_code=303)
    async def logout(self, request: Request) -> Redirect:
        actor = security.current_actor(request)
        request.clear_session()
        await asyncio.to_thread(
            security.audit,
            actor,
            action="console.sign_out",
            outcome="allowed",
        )
        return Redirect("/console/login?reason=signed-out", status_code=303)


@get("/login")
async def login(request: Request, reason: Query = None) -> Template:
    return _page(request, "login.html", reason=reason)


@get("/")
async def home(request: Request) -> Redirect | Template:
    actor = security.current_actor(request)
    nav = nav_for(actor.role)
    if nav:
        return Redirect(nav[0][1], status_code=303)
    return _page(request, "home.html")


@get("/bookings", sync_to_thread=True)
def bookings(request: Request) -> Template:
    settings: Settings = request.app.state.console_settings
    today = utcnow().astimezone(ZoneInfo(settings.clinic_timezone)).date()
    with session_scope() as session:
        days = local_days(session, today, 2, settings.clinic_timezone)
    return _page(request, "bookings.html", days=days, today=today)


@get("/tasks", sync_to_thread=True)
def tasks(request: Request, after: BeforeQuery = None) -> Template:
    """The open tasks, oldest first, a page at a time (keyset: `after=<task id>`)."""
    with session_scope() as session:
        rows, total, next_after = staff_tasks.open_tasks(session, after)
    return _page(
        request,
        "tasks.html",
        tasks=rows,
        total=total,
        next_after=next_after,
        paged=after is not None,
        zone=request.app.state.console_settings.clinic_timezone,
    )


@get("/tasks/{task_id:int}", sync_to_thread=True)
def task(request: Request, task_id: FromPath[int]) -> Template:
    actor = security.current_actor(request)
    with session_scope() as session:
        try:
            row = staff_tasks.get_task(session, task_id)
        except staff_tasks.TaskError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        reply = staff_tasks.read_reply(session, task_id, actor)  # audited when there is one
    zone = request.app.state.console_settings.clinic_timezone
    return _page(request, "task.html", task=row, reply=reply, zone=zone)


@post("/tasks/{task_id:int}/reveal-phone", sync_to_thread=True)
def reveal_phone(request: Request, task_id: FromPath[int]) -> Template:
    actor = security.current_actor(request)
    with session_scope() as session:
        try:
            phone = staff_tasks.reveal_phone(session, task_id, actor)
        except staff_tasks.TaskError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
    return _page(request, "_phone.html", phone=phone)


@dataclass
class DoneForm:
    note: str = ""


@post("/tasks/{task_id:int}/done", sync_to_thread=True, status_code=303)
def done(
    request: Request,
    task_id: FromPath[int],
    data: Annotated[DoneForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect | Template:
    actor = security.current_actor(request)
    try:
        with session_scope() as session:
            staff_tasks.mark_done(session, task_id, data.note, actor)
    except staff_tasks.TaskError as exc:
        with session_scope() as session:
            row = staff_tasks.get_task(session, task_id)
        zone = request.app.state.console_settings.clinic_timezone
        return _page(request, "task.html", status_code=400, task=row, reply=None, zone=zone, error=str(exc))
    return Redirect("/console/tasks", status_code=303)


def _audit_filter(
    actor: str | None,
    action: str | None,
    subject: str | None,
    outcome: str | None,
    since: str | None,
    until: str | None,
) -> audit_view.AuditFilter:
    """The GET form's fields (an empty field does not filter); a malformed date is the admin's to fix: 400."""
    try:
        return audit_view.AuditFilter(
            actor=(actor or "").strip() or None,
            action=(action or "").strip() or None,
            subject=(subject or "").strip() or None,
            outcome=(outcome or "").strip() or None,
            date_from=date.fromisoformat(since) if since else None,
            date_to=date.fromisoformat(until) if until else None,
        )
    except ValueError as exc:
        raise HTTPException(status_code=400, detail="dates are YYYY-MM-DD") from exc


@get("/audit", sync_to_thread=True)
def audit_log(
    request: Request,
    actor: Query = None,
    action: Query = None,
    subject: Query = None,
    outcome: Query = None,
    since: FromQuery = None,
    until: ToQuery = None,
    before: BeforeQuery = None,
) -> Template:
    """The access audit, filtered, newest first, 100 rows a page (keyset: `before=<id>`)."""
    filters = _audit_filter(actor, action, subject, outcome, since, until)
    with session_scope() as session:
        found = audit_view.page(session, filters, before)
    query = {**filters.as_form(), "before": found.next_before} if found.next_before else None
    return _page(
        request,
        "audit.html",
        rows=found.rows,
        filters=filters,
        older=urlencode(query) if query else None,
        export=urlencode(filters.as_form()),
        paged=before is not None,
    )


@get("/audit.csv")
async def audit_export(
    request: Request,
    actor: Query = None,
    action: Query = None,
    subject: Query = None,
    outcome: Query = None,
    since: FromQuery = None,
    until: ToQuery = None,
) -> Stream:
    """Every matching row as CSV, streamed in batches; the export itself is an audit row, written first."""
    who = security.current_actor(request)
    filters = _audit_filter(actor, action, subject, outcome, since, until)

    def note() -> int:
        with session_scope() as session:
            return audit_view.record_export(session, filters, actor=who)

    exported_as = await asyncio.to_thread(note)
    name = f"access-audit-{utcnow():%Y%m%dT%H%M%SZ}.csv"
    return Stream(
        audit_view.export_csv(filters, before=exported_as),
        media_type="text/csv; charset=utf-8",
        headers={**_NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )


def _sign_in_first(request: Request, exc: NotAuthorizedException) -> Response[Any]:
    if request.method == "GET" and not request.headers.get("hx-request"):
        return Redirect(f"/console/login?reason=sign-in&next={quote(request.url.path)}", status_code=303)
    return Response({"detail": "sign in first"}, status_code=401, headers={"HX-Redirect": "/console/login"})


def _forbidden(request: Request, exc: HTTPException) -> Response[Any]:
    return Template(
        template_name="error.html",
        context={
            "title": "Not allowed",
            "message": str(exc.detail),
            "actor": request.state.get("actor"),
            "nav": nav_for(request.state["actor"].role) if request.state.get("actor") else [],
            "path": "",
        },
        status_code=exc.status_code,
        headers=_NO_STORE,
    )  # type: ignore[return-value]


def _localtime(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M")


def _filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["localtime"] = _localtime


@dataclass(frozen=True)
class ConsoleParts:
    router: Router
    template_config: TemplateConfig[JinjaTemplateEngine]
    stores: dict[str, Store]


def console(settings: Settings) -> ConsoleParts:
    """The console as the gateway mounts it."""
    middleware: list[Any] = [security.session_middleware(settings)]
    csrf = CSRFConfig(
        # Derived from the session secret: stable across restarts (an open form still submits after one).
        secret=hmac.new(settings.require_session_secret(), b"console csrf", hashlib.sha256).hexdigest(),
        cookie_name="avatar_crm_console_csrf",
        cookie_path="/console",
        cookie_secure=settings.public_base_url.lower().startswith("https://"),
        cookie_httponly=False,  # the page reads it into HTMX's header; the session cookie stays HttpOnly
        cookie_samesite="lax",
    )
    middleware.append(DefineMiddleware(CSRFMiddleware, config=csrf))
    stores: dict[str, Store] = {security.SESSION_STORE: security.session_store(settings)}
    sign_in: list[Any] = []
    if settings.console_signin_per_minute > 0:
        limit = RateLimitConfig(
            rate_limit=("minute", settings.console_signin_per_minute), store=security.SIGNIN_STORE
        )
        sign_in.append(limit.middleware)
        stores[security.SIGNIN_STORE] = MemoryStore()
    auth = Router(path="/", route_handlers=[SignInController], middleware=sign_in)
    static = create_static_files_router(path="/static", directories=[HERE / "static"], name="console-static")
    router = Router(
        path="/console",
        route_handlers=[
            auth,
            login,
            home,
            bookings,
            tasks,
            task,
            reveal_phone,
            done,
            audit_log,
            campaign_list,
            campaign_new,
            campaign_preview,
            campaign_launch,
            campaign_detail,
            ops_events,
            ops_replay,
            ops_runs,
            ops_consent,
            ops_consent_lookup,
            ops_consent_suppress,
            ops_consent_lift,
            ops_consent_marketing,
            ops_kpis,
            audit_export,
            admin_home,
            staff_page,
            staff_add,
            staff_role,
            staff_remove,
            google_page,
            google_connect,
            google_disconnect,
            keys_page,
            static,
        ],
        middleware=middleware,
        guards=[security.role_guard],
        exception_handlers={
            NotAuthorizedException: _sign_in_first,
            HTTP_403_FORBIDDEN: _forbidden,
            404: _forbidden,
        },
        include_in_schema=False,
    )
    templates = TemplateConfig(
        directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_filters
    )
    return ConsoleParts(router, templates, stores)
