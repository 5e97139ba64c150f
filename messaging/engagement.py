"""Email engagement (a patient opened an email or followed a link in it), recorded the same way by all.

Two things see engagement: our own open pixel and click redirect (`webhook_gateway/tracking.py`, for email
sent through Gmail) and SendGrid's open and click events (`messaging/email_events.py`, for campaign email).
Ops read the message history without caring which, and the A/B statistics (`campaigns/bulk_outbox.py`
`counts_by_variant`) count `opened_at` and `clicked_at`, so both record through `record_engagement`:

- the first open stamps `opened_at` and writes the one "opened" event; a click implies an open (images are
  often blocked, so a click may be the only sign the email was read);
- each distinct URL clicked writes one "clicked" event (detail: the URL); the first click stamps `clicked_at`;
- a repeat (another device, a second click on the same link, SendGrid's duplicates) changes nothing.

Times are when the patient engaged, not when we heard of it. SendGrid delivers events late and out of order,
so a report of an earlier open or click moves the stamp back, and the matching event with it (one row per
fact, saying when it first happened) instead of adding a second row. The pixel and tracked links are timed
as they are requested, so for them that only happens between requests racing each other.

This module imports nothing but `models`: the gateway uses it, and has no business importing flow machinery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlmodel import Session, select

from models import OutboundMessage, OutboundMessageEvent
from models.types import utcnow

Engagement = Literal["open", "click"]

OPENED = "opened"
CLICKED = "clicked"
# The detail of the "opened" event: what showed the email was opened.
BY_PIXEL = "tracking pixel"  # ours, or SendGrid's: both are a 1x1 image in the email
BY_CLICK = "implied by a click"


def record_engagement(
    session: Session, message_id: int, kind: Engagement, at: datetime, url: str | None = None
) -> tuple[str, ...] | None:
    """Record one open or click (`url`: the link followed) of an outbound email that happened `at`; the caller
    commits. Returns the history written: "opened" / "clicked" for a new event, "opened earlier" / "clicked
    earlier" for one moved back; () for a repeat; None when there is no such message.

    The message row is read `FOR UPDATE` (on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises
    writers), so a pixel request and a click arriving together, or two SendGrid batches in flight, cannot both
    find the email unopened and write an "opened" event each. The session is flushed first so that the
    reload neither loses nor overwrites the caller's own pending changes to the message.
    """
    session.flush()
    message = session.get(OutboundMessage, message_id, with_for_update=True, populate_existing=True)
    if message is None:
        return None
    changes: list[str] = []

    if message.opened_at is None or at < message.opened_at:
        first, message.opened_at = message.opened_at is None, at
        how = BY_PIXEL if kind == "open" else BY_CLICK
        if first:
            session.add(OutboundMessageEvent(message_id=message_id, status=OPENED, detail=how, at=at))
        # Found, not assumed: an email opened before this history was kept has a stamp and no event. And an
        # open learned of late may precede the click that implied one, so what showed it changes too.
        elif (opened := _event(session, message_id, OPENED)) is not None:
            opened.at, opened.detail = at, how
            session.add(opened)
        changes.append(OPENED if first else f"{OPENED} earlier")

    if kind == "click":
        earlier = message.clicked_at is not None and at < message.clicked_at
        if message.clicked_at is None or earlier:
            message.clicked_at = at
        clicked = _event(session, message_id, CLICKED, url)
        if clicked is None:
            session.add(OutboundMessageEvent(message_id=message_id, status=CLICKED, detail=url, at=at))
            changes.append(CLICKED)
        elif earlier or at < clicked.at:
            clicked.at = min(at, clicked.at)
            session.add(clicked)
            changes.append(f"{CLICKED} earlier")

    if changes:
        message.updated_at = utcnow()
        session.add(message)
    return tuple(changes)


def _event(
    session: Session, message_id: int, status: str, detail: str | None = None
) -> OutboundMessageEvent | None:
    """The message's one `status` event (for "clicked": the one for the URL in `detail`)."""
    query = select(OutboundMessageEvent).where(
        OutboundMessageEvent.message_id == message_id, OutboundMessageEvent.status == status
    )
    if status == CLICKED:
        query = query.where(
            OutboundMessageEvent.detail == detail  # type: ignore[arg-type]
            if detail is not None
            else OutboundMessageEvent.detail.is_(None)  # type: ignore[union-attr]
        )
    return session.exec(query.order_by(OutboundMessageEvent.id)).first()  # type: ignore[arg-type]
