"""The admin's pages: the staff list and roles, the clinic's Google Workspace connection, and the status of
every key and secret (never a value).

Each page calls the domain function the CLI calls for the same job (`access.staff` for `avatar-crm staff`,
`providers.google_oauth` for `avatar-crm google`, `access.key_status` beside `avatar-crm keys status`), so the
console and the shell cannot disagree about what a change does. Every change is an access-audit row with the
admin, their role, their address and the reason they typed; a refused change (the last admin, an address
that is not one) changes nothing and says why on the page.

Forms post with the CSRF token and, on success, redirect back to the page (post/redirect/get); what was
done is shown once from the session, so a reload repeats nothing.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.params import QueryParameter
from litestar.response import Redirect, Template
from sqlmodel import Session

from access import key_status
from access import staff as staff_list
from console import security
from console.pages import page
from models import Settings, StaffRole, get_settings, session_scope
from models.access_audit import Actor, record
from providers import google_oauth

STAFF_PAGE = "/console/admin/staff"
GOOGLE_PAGE = "/console/admin/google"
REASON_MAX = 500
_FLASH = "admin_flash"
CountQuery = Annotated[bool, QueryParameter(required=False)]


class FormError(ValueError):
    """What is wrong with the form, to show above it (nothing was changed)."""


def _field(form: dict[str, str], name: str) -> str:
    return str(form.get(name, "")).strip()


def _reason(form: dict[str, str]) -> str:
    reason = _field(form, "reason")
    if not reason:
        raise FormError("Say why: the reason goes in the access audit with the change.")
    return reason[:REASON_MAX]


def _role(form: dict[str, str]) -> StaffRole:
    try:
        return StaffRole(_field(form, "role"))
    except ValueError:
        raise FormError(f"Choose a role: {', '.join(r.value for r in StaffRole)}.") from None


async def _form(request: Request) -> dict[str, str]:
    return {key: str(value) for key, value in (await request.form()).items() if key != "_csrf_token"}


def _done(request: Request, message: str, to: str) -> Redirect:
    """Back to the page, which shows `message` once."""
    request.set_session({**request.session, _FLASH: message})
    return Redirect(to, status_code=303)


def _take_flash(request: Request) -> str | None:
    data = request.session
    if not isinstance(data, dict) or _FLASH not in data:
        return None
    kept = dict(data)
    message = kept.pop(_FLASH)
    request.set_session(kept)
    return str(message)


# --- the index ---------------------------------------------------------------------------------------------


@get("/admin")
async def admin_home() -> Redirect:
    """The navigation's "Admin" entry: the staff list is the admin page used most."""
    return Redirect(STAFF_PAGE, status_code=303)


# --- staff and roles ---------------------------------------------------------------------------------------


def _staff_page(
    request: Request, status_code: int = 200, error: str | None = None, typed: dict[str, str] | None = None
) -> Template:
    """The list; after a refused add, the add form again with what was typed (`typed`)."""
    with session_scope() as session:
        members = [
            {
                "id": m.id,
                "email": m.email,
                "role": m.role,
                "active": m.removed_at is None,
                "added_at": m.added_at,
                "added_by": m.added_by,
                "removed_at": m.removed_at,
            }
            for m in staff_list.everyone(session)
        ]
    return page(
        request,
        "admin_staff.html",
        status_code=status_code,
        members=members,
        roles=[role.value for role in StaffRole],
        me=security.current_actor(request).email,
        error=error,
        flash=None if error else _take_flash(request),
        typed=typed or {},
        zone=request.app.state.console_settings.clinic_timezone,
    )


@get("/admin/staff", sync_to_thread=True)
def staff_page(request: Request) -> Template:
    """Everyone on the staff list (removed members too, marked), with forms to add, change and remove."""
    return _staff_page(request)


async def _staff_change(request: Request, change: Any, keep_typed: bool = False) -> Redirect | Template:
    """Run one staff change for the signed-in admin; a refusal shows the page again with the reason."""
    actor = security.current_actor(request)
    form = await _form(request)

    def apply() -> staff_list.Change:
        with session_scope() as session:
            return change(session, form, actor)

    try:
        done = await asyncio.to_thread(apply)
    except (FormError, staff_list.StaffError) as exc:
        return await asyncio.to_thread(_staff_page, request, 400, str(exc), form if keep_typed else None)
    said = {
        "added": f"{done.email} added as {done.role.value}.",
        "role changed": f"{done.email} is now {done.role.value}.",
        "removed": f"{done.email} removed: their console sessions end at their next click.",
        "unchanged": f"{done.email} is already {done.role.value}: nothing changed.",
    }[done.what]
    return _done(request, said, STAFF_PAGE)


@post("/admin/staff/add", status_code=303)
async def staff_add(request: Request) -> Redirect | Template:
    def change(session: Session, form: dict[str, str], actor: Actor) -> staff_list.Change:
        role, reason = _role(form), _reason(form)
        return staff_list.add(session, _field(form, "email"), role, actor=actor, reason=reason)

    return await _staff_change(request, change, keep_typed=True)


@post("/admin/staff/role", status_code=303)
async def staff_role(request: Request) -> Redirect | Template:
    def change(session: Session, form: dict[str, str], actor: Actor) -> staff_list.Change:
        role, reason = _role(form), _reason(form)
        return staff_list.change_role(session, _field(form, "email"), role, actor=actor, reason=reason)

    return await _staff_change(request, change)


@post("/admin/staff/remove", status_code=303)
async def staff_remove(request: Request) -> Redirect | Template:
    def change(session: Session, form: dict[str, str], actor: Actor) -> staff_list.Change:
        return staff_list.remove(session, _field(form, "email"), actor=actor, reason=_reason(form))

    return await _staff_change(request, change)


# --- the Google Workspace connection -----------------------------------------------------------------------


def _google_page(
    request: Request, status_code: int = 200, error: str | None = None, form: dict[str, str] | None = None
) -> Template:
    return page(
        request,
        "admin_google.html",
        status_code=status_code,
        status=google_oauth.connection_status(),
        redirect_uri=get_settings().google_oauth_redirect_uri,
        error=error,
        flash=None if error else _take_flash(request),
        form=form or {},
    )


@get("/admin/google", sync_to_thread=True)
def google_page(request: Request) -> Template:
    """The connection's state, account, scopes and times, as `avatar-crm google status` reports them."""
    return _google_page(request)


@post("/admin/google/connect", status_code=303)
async def google_connect(request: Request) -> Redirect | Template:
    """Start the gateway's own connect flow (`/auth/google/start`) with a fresh one-time link, the link
    `avatar-crm google connect` prints; Google's consent screen follows and the gateway stores the account."""
    actor = security.current_actor(request)
    form = await _form(request)
    if not get_settings().google_configured:
        error = "Google is not configured: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET first."
        return await asyncio.to_thread(_google_page, request, 409, error, form)

    def start() -> str:
        link = google_oauth.connect_url()
        with session_scope() as session:
            record(
                session,
                actor,
                action="google.connect_started",
                reason=_field(form, "reason")[:REASON_MAX] or None,
            )
        return link

    return Redirect(await asyncio.to_thread(start), status_code=303)


@post("/admin/google/disconnect", status_code=303)
async def google_disconnect(request: Request) -> Redirect | Template:
    """Revoke the token at Google and stop using the account: `avatar-crm google disconnect`'s function,
    with the admin's audit row written in the transaction that marks the connection revoked."""
    actor = security.current_actor(request)
    form = await _form(request)
    try:
        reason = _reason(form)
    except FormError as exc:
        return await asyncio.to_thread(_google_page, request, 400, str(exc), form)

    def audit(session: Session, revoked: google_oauth.Revoked) -> None:
        record(
            session,
            actor,
            action="google.disconnected",
            subject=f"google_connection:{revoked.connection_id}",
            reason=reason,
            revoked_at_google=revoked.revoked_at_google,
        )

    revoked = await asyncio.to_thread(google_oauth.revoke, audit)
    if revoked is None:
        return _done(request, "No Google account is connected: nothing to disconnect.", GOOGLE_PAGE)
    said = f"{revoked.account_email} disconnected ({revoked.detail})."
    if not revoked.revoked_at_google:
        said += " The CRM no longer uses it; disconnect again to revoke it at Google."
    return _done(request, said, GOOGLE_PAGE)


# --- keys and secrets --------------------------------------------------------------------------------------


@get("/admin/keys", sync_to_thread=True)
def keys_page(request: Request, count: CountQuery = False) -> Template:
    """The key ring and each secret's status and source; `?count=true` also counts the values each key
    seals (it reads every encrypted column, so only when asked)."""
    settings: Settings = request.app.state.console_settings
    return page(
        request,
        "admin_keys.html",
        ring=key_status.key_ring(settings, count=count),
        secrets=key_status.secrets(settings),
        blocks=key_status.blocks_read(),
        counted=count,
        zone=settings.clinic_timezone,
    )
