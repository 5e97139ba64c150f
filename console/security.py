"""Sessions, the role guard and the audit of access decisions for the console.

Sessions are server-side (Litestar's ServerSideSessionConfig over a FileStore in the data directory, so a
restart keeps people signed in): the cookie holds only a random id, HttpOnly, SameSite=Lax, Secure when
PUBLIC_BASE_URL is https, scoped to /console. Idle and absolute timeouts are checked here on every request;
the id is replaced at sign-in (`renew_session`), so an id planted before sign-in is worth nothing after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.session import SessionMiddleware
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.stores.file import FileStore
from sqlmodel import select

from console.roles import PUBLIC, allowed
from models import Settings, StaffMember, session_scope
from models.access_audit import Actor, record

logger = logging.getLogger(__name__)

SESSION_COOKIE = "avatar_crm_console"
SESSION_STORE = "console_sessions"
SIGNIN_STORE = "console_signin"
_RENEW = "console_renew_session"
_NEW_ID = "console_new_session_id"


class SignInRequired(NotAuthorizedException):
    """No session, or it timed out: GET pages redirect to the sign-in page, others answer 401."""


class _RenewingBackend(ServerSideSessionBackend):
    """Litestar's server-side backend, except that a request marked by `renew_session` gets a new id."""

    def get_session_id(self, connection: ASGIConnection) -> str:
        if connection.state.get(_RENEW):
            if not connection.state.get(_NEW_ID):
                connection.state[_NEW_ID] = self.generate_session_id()
            return str(connection.state[_NEW_ID])
        return super().get_session_id(connection)


def session_middleware(settings: Settings) -> DefineMiddleware:
    """Litestar's session middleware with the renewing backend, for the console's router only."""
    return DefineMiddleware(SessionMiddleware, backend=_RenewingBackend(config=session_config(settings)))


def session_config(settings: Settings) -> ServerSideSessionConfig:
    return ServerSideSessionConfig(
        key=SESSION_COOKIE,
        store=SESSION_STORE,
        path="/console",
        httponly=True,
        secure=settings.public_base_url.lower().startswith("https://"),
        samesite="lax",
        max_age=settings.console_session_absolute_seconds,
        renew_on_access=True,
    )


def session_store(settings: Settings) -> FileStore:
    """Durable across restarts, private to the gateway's user like the rest of the data directory: the folder
    is made 0700 before the first session is written (the session files themselves follow the umask, and
    nobody else can reach them through the folder)."""
    folder = Path(settings.crm_data_dir) / "console-sessions"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return FileStore(folder, create_directories=True)


async def renew_session(connection: ASGIConnection, data: dict[str, Any]) -> None:
    """Start a signed-in session under a new id and drop the one the browser brought."""
    old = connection.cookies.get(SESSION_COOKIE)
    if old and old != "null":
        await connection.app.stores.get(SESSION_STORE).delete(old)
    connection.state[_RENEW] = True
    connection.set_session(data)
    # Sessions that timed out are never asked for again: sweep their files now and then (at each sign-in).
    await connection.app.stores.get(SESSION_STORE).delete_expired()


def client_address(connection: ASGIConnection) -> str | None:
    return connection.client.host if connection.client else None


def audit(who: Actor, *, action: str, outcome: str, **detail: Any) -> None:
    """One access-audit row for a sign-in, sign-out or a refusal (its own transaction)."""
    with session_scope() as session:
        record(session, who, action=action, outcome=outcome, **detail)


def active_role(email: str) -> str | None:
    """The role of an active staff member, None for anyone else (removed staff included)."""
    with session_scope() as session:
        member = session.exec(
            select(StaffMember).where(StaffMember.email == email, StaffMember.removed_at.is_(None))  # type: ignore[union-attr]
        ).first()
        return member.role if member else None


async def signed_in(connection: ASGIConnection, settings: Settings) -> Actor | None:
    """The person this session belongs to, if it is still valid; a timed-out session is ended here."""
    data = connection.session if connection.scope.get("session") is not None else {}
    email = data.get("email") if isinstance(data, dict) else None
    if not email:
        return None
    now = time.time()
    idle = now - float(data.get("last_seen", 0))
    age = now - float(data.get("signed_in_at", 0))
    if idle > settings.console_session_idle_seconds or age > settings.console_session_absolute_seconds:
        connection.clear_session()
        return None
    role = await asyncio.to_thread(active_role, email)
    if role is None:  # removed from the staff list since signing in: out at once
        connection.clear_session()
        return None
    connection.set_session({**data, "role": role, "last_seen": now})
    return Actor(email=email, role=role, client_address=client_address(connection))


async def role_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """The one place console access is decided (see console.roles)."""
    settings: Settings = connection.app.state.console_settings
    roles = allowed(connection.scope["method"], connection.scope["path_template"])
    if roles == PUBLIC:
        return
    actor = await signed_in(connection, settings)
    if actor is None:
        raise SignInRequired("sign in first")
    connection.state["actor"] = actor
    if roles is None or actor.role not in roles:
        await asyncio.to_thread(
            audit,
            actor,
            action="console.denied",
            outcome="denied",
            path=connection.scope["path"],
            method=connection.scope["method"],
        )
        raise PermissionDeniedException("your role does not allow this page")


def current_actor(connection: ASGIConnection) -> Actor:
    actor = connection.state.get("actor")
    if not isinstance(actor, Actor):
        raise SignInRequired("sign in first")
    return actor
