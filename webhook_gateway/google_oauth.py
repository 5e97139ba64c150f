"""`GET /auth/google/start` and `GET /auth/google/callback`: a person connects the clinic's Google account.

The browser gets a random, opaque session cookie (HttpOnly, SameSite=Lax so it comes back on Google's
top-level redirect, Secure when the gateway is served over https); the OAuth `state` is bound to it, so a
callback carried into another browser (login CSRF) is refused; the session id is always new (a cookie the
browser brings is never adopted). Start requires the one-time signed ticket from `avatar-crm google
connect`. Every problem answers a short plain page with 400 (403 without a valid, unused ticket, 503 when
Google is not configured); none is a 500.
"""

from __future__ import annotations

import html
import logging
import secrets
from typing import Annotated

from litestar import Controller, MediaType, Request, Response, get
from litestar.datastructures import Cookie
from litestar.params import QueryParameter
from litestar.response import Redirect

from messaging.staff_notices import queue_staff_notice
from models import get_settings
from providers.google_oauth import (
    STATE_TTL,
    GoogleNotConfigured,
    OAuthError,
    TicketUsed,
    begin_authorization,
    complete_authorization,
    ticket_id,
)

logger = logging.getLogger(__name__)

SESSION_COOKIE = "avatar_crm_google_session"
COOKIE_PATH = "/auth/google"

FRESH_LINK = (
    "Connecting Google needs a fresh link. On the server, run `avatar-crm google connect` "
    "and open the link it prints (it works once, within 15 minutes)."
)

Query = Annotated[str | None, QueryParameter(required=False)]
StateQuery = Annotated[str | None, QueryParameter(name="state", required=False)]  # `state` is reserved


class GoogleOAuthController(Controller):
    path = "/auth/google"
    tags = ["google"]

    @get(
        "/start",
        sync_to_thread=True,
        summary="Start connecting the clinic's Google account (redirects to Google's consent screen)",
        description="Needs `ticket` from `avatar-crm google connect`. Sets a short-lived session cookie.",
    )
    def start(self, ticket: Query = None) -> Response[str] | Redirect:
        started_by = ticket_id(ticket)
        if started_by is None:
            return _page(403, "Link expired or invalid", FRESH_LINK)
        # Always a new session: one the browser brought could have been planted by someone else (fixation).
        session_id = secrets.token_urlsafe(32)
        try:
            url = begin_authorization(session_id, started_by)
        except GoogleNotConfigured as exc:
            return _page(503, "Google is not configured", str(exc))
        except TicketUsed:
            return _page(403, "Link already used", "Each connect link works once. " + FRESH_LINK)
        redirect = Redirect(url, status_code=302)
        redirect.cookies.append(
            Cookie(
                key=SESSION_COOKIE,
                value=session_id,
                path=COOKIE_PATH,
                max_age=int(STATE_TTL.total_seconds()),
                httponly=True,
                samesite="lax",
                secure=get_settings().public_base_url.lower().startswith("https://"),
            )
        )
        return redirect

    @get(
        "/callback",
        sync_to_thread=True,
        summary="Google's redirect back after consent: stores the connection",
        description="Checks `state` against this browser's session, exchanges `code` with the PKCE verifier.",
    )
    def callback(
        self,
        request: Request,
        oauth_state: StateQuery = None,
        code: Query = None,
        error: Query = None,
    ) -> Response[str]:
        try:
            connected = complete_authorization(
                request.cookies.get(SESSION_COOKIE), oauth_state, code, error, notify_staff=queue_staff_notice
            )
        except GoogleNotConfigured as exc:
            return _page(503, "Google is not configured", str(exc))
        except OAuthError as exc:
            logger.warning("Google connection refused: %s", exc)
            return _page(400, "Google was not connected", str(exc))
        body = f"The clinic's Google account {connected.account_email} is connected."
        if connected.missing_scopes:
            body += (
                " Some permissions were not granted, so some features will not work: "
                + ", ".join(connected.missing_scopes)
                + ". Connect again and allow them all."
            )
        response = _page(200, "Google connected", body + " You can close this window.")
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response


def _page(status: int, title: str, message: str) -> Response[str]:
    content = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return Response(
        content,
        status_code=status,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
