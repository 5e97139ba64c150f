"""Email engagement: `GET /t/o/{token}` (the open pixel) and `GET /t/c/{token}` (a tracked link).

Tokens are signed by the sender (`providers/tracking_tokens.py`) and name the outbox message and, for a click,
the exact URL that was in the email. So:
- a click with a genuine token is answered 302 to that URL and nowhere else; a forged, altered or truncated
  token is a 404, never a redirect (the route cannot be turned into an open redirect for phishing);
- the pixel is always the same 1x1 GIF with `Cache-Control: no-store`, valid token or not, so probing it
  reveals nothing.

The first open and the first click on each link are recorded as `OutboundMessageEvent` rows ("opened",
"clicked" with the URL), and `OutboundMessage.opened_at` / `clicked_at` are stamped once (a click implies an
open: images are often blocked). Recording failures are logged and never spoil the patient's click.
"""

from __future__ import annotations

import base64
import logging

from anyio import to_thread
from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from litestar.params import FromPath
from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from models import OutboundMessage, OutboundMessageEvent
from models.types import utcnow
from providers.tracking_tokens import TrackingClaim, verify

logger = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1 transparent GIF
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


def record(engine: Engine, claim: TrackingClaim) -> str:
    """Stamp the message and add an event the first time; returns what was recorded (for logs and tests)."""
    now = utcnow()
    table = OutboundMessage.__table__  # type: ignore[attr-defined]
    with Session(engine) as session:
        if session.get(OutboundMessage, claim.message_id) is None:
            return "unknown message"
        first_open = session.execute(
            update(table)
            .where(table.c.id == claim.message_id, table.c.opened_at.is_(None))
            .values(opened_at=now)
        ).rowcount  # type: ignore[attr-defined]
        recorded = []
        if first_open:
            detail = "tracking pixel" if claim.kind == "open" else "implied by a click"
            session.add(
                OutboundMessageEvent(message_id=claim.message_id, status="opened", detail=detail, at=now)
            )
            recorded.append("opened")
        if claim.kind == "click":
            session.execute(
                update(table)
                .where(table.c.id == claim.message_id, table.c.clicked_at.is_(None))
                .values(clicked_at=now)
            )
            seen = session.exec(
                select(OutboundMessageEvent.id).where(
                    OutboundMessageEvent.message_id == claim.message_id,
                    OutboundMessageEvent.status == "clicked",
                    OutboundMessageEvent.detail == claim.url,
                )
            ).first()
            if seen is None:
                session.add(
                    OutboundMessageEvent(
                        message_id=claim.message_id, status="clicked", detail=claim.url, at=now
                    )
                )
                recorded.append("clicked")
        session.commit()
        return "+".join(recorded) or "already recorded"


async def _record_quietly(state: State, claim: TrackingClaim) -> None:
    try:
        await to_thread.run_sync(record, state.engine, claim)
    except SQLAlchemyError as exc:
        logger.error("engagement for message %s not recorded: %s", claim.message_id, type(exc).__name__)


def _secret(state: State) -> bytes:
    return state.settings.require_session_secret()


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
