"""Put events into the webhook inbox directly and apply them as their flows would (database-level tests)."""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import datetime

from bookings.intake import apply_event
from models import WebhookEvent, session_scope
from providers import wix
from providers.wix_simulator import WixKeys, booking_payload, sign_wix_jwt, wix_event


def store_event(source: str, body: bytes, event_type: str) -> int:
    """A verified event as the gateway stores it (a Wix booking's id and revision beside it); returns the
    inbox id. A body that is no Wix event (a dispatcher test's placeholder) is stored as it is."""
    subject = revision = None
    if source == "wix":
        with suppress(wix.WixPayloadError):
            event = wix.decode_stored(body, event_type)
            subject, revision = (event.booking.booking_id, event.booking.revision) if event else (None, None)
    with session_scope() as session:
        row = WebhookEvent(
            source=source,
            dedupe_key=str(uuid.uuid4()),
            event_type=event_type,
            body=body,
            subject=subject,
            revision=revision,
        )
        session.add(row)
        session.flush()
        return row.id  # type: ignore[return-value]


def apply_wix(
    keys: WixKeys, event_type: str, booking_id: str, revision: int, start: datetime, **fields: object
) -> int:
    """Store a signed Wix booking event and apply it, as booking intake does; returns the inbox id."""
    booking = booking_payload(booking_id=booking_id, revision=revision, start=start, **fields)  # type: ignore[arg-type]
    event_id = store_event("wix", sign_wix_jwt(keys, wix_event(event_type, booking), event_type), event_type)
    apply_event(event_id)
    return event_id
