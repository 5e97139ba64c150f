"""Email engagement: `GET /t/o/{token}` (the open pixel) and `GET /t/c/{token}` (a tracked link).

Tokens are signed by the sender (`providers/tracking_tokens.py`) and name the outbox message and, for a click,
the exact URL that was in the email. So:
- a click with a genuine token is answered 302 to that URL and nowhere else; a forged, altered or truncated
  token is a 404, never a redirect (the route cannot be turned into an open redirect for phishing);
- the pixel is always the same 1x1 GIF with `Cache-Control: no-store`, valid token or not, so probing it
  reveals nothing.

Opens and clicks are recorded exactly as SendGrid's are for campaign email (`messaging/engagement.py`: one
"opened" event, one "clicked" event per link, `opened_at` / `clicked_at` the first of each; a click implies
an open). Recording failures are logged and never spoil the patient's click.
"""

from __future__ import annotations

import base64
import logging

from anyio import to_thread
from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from litestar.params import FromPath
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from messaging.engagement import record_engagement
from models.types import utcnow
from providers.tracking_tokens import TrackingClaim, verify

logger = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1 transparent GIF
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


def record(engine: Engine, claim: TrackingClaim) -> str:
    """Record a genuine open or click; returns what was recorded (for logs and tests)."""
    with Session(engine) as session:
        changes = record_engagement(session, claim.message_id, claim.kind, utcnow(), claim.url)
        session.commit()
    if changes is None:
        return "unknown message"
    return "+".join(changes) or "already recorded"


async def _record_quietly(state: State, claim: TrackingClaim) -> None:
    try:
        await to_thread.run_sync(record, state.engine, claim)
    except SQLAlchemyError as exc:
        logger.error("engagement for message %s not recorded: %s", claim.message_id, type(exc).__name__)


def _secret(state: State) -> list[bytes]:
    return state.settings.session_secrets()  # links in emails sent before a SESSION_SECRET change, in grace


class TrackingController(Controller):
    path = "/t"
    tags = ["email tracking"]

    @get(
        "/o/{token:str}",
        summary="Email open pixel",
        description="A 1x1 GIF for every request; a genuine token records the message's first open.",
        media_type="image/gif",
    )
    async def open_pixel(self, state: State, token: FromPath[str]) -> Response[bytes]:
        claim = verify(token, "open", secret=_secret(state))
        if claim is not None:
            await _record_quietly(state, claim)
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    @get(
        "/c/{token:str}",
        summary="Tracked link in an email",
        description="302 to the URL the signed token names; 404 for any token that is not genuine.",
        status_code=302,
    )
    async def click(self, state: State, token: FromPath[str]) -> Response[str]:
        claim = verify(token, "click", secret=_secret(state))
        if claim is None or claim.url is None:
            return Response(
                "This link is not valid.", status_code=404, media_type=MediaType.TEXT, headers=NO_STORE
            )
        await _record_quietly(state, claim)
        return Response(
            "",
            status_code=302,
            media_type=MediaType.TEXT,
            headers={"Location": claim.url, "Referrer-Policy": "no-referrer", **NO_STORE},
        )
