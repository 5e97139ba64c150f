"""Staff notifications: what a person at the clinic must act on (a patient asking to cancel or move).

They go through the outbox like any message, so a notification is queued in the same transaction as the
change that calls for it and is never lost or doubled. They are always delivered to the Prefect UI as a
markdown artifact (key `staff-notifications`), where ops already look, and also by email to
STAFF_NOTIFICATION_EMAIL when that is set and Google is connected (delivery: `flows/tasks/staff.py`).
"""

from __future__ import annotations

from sqlmodel import Session

from messaging.email_wording import ClinicIdentity, render_staff_email
from messaging.outbox import queue_message
from models import Channel, MessageKind, OutboundMessage, Purpose, Settings, get_settings


def staff_notices(
    settings: Settings,
    key: str,
    body: str,
    *,
    contact_id: int | None = None,
    booking_id: int | None = None,
    email_to: str | None = None,
) -> list[OutboundMessage]:
    """The outbox rows that tell staff `body`: the Prefect notice, and the email when an address is set
    (`email_to`, by default STAFF_NOTIFICATION_EMAIL; ops alerts pass `settings.alert_email`).

    The caller queues them in the transaction that makes the change they speak of. `body` is markdown that
    names records, never a patient.
    """
    address = (settings.staff_notification_email if email_to is None else email_to).strip()
    notices = [
        OutboundMessage(
            idempotency_key=key,
            channel=Channel.OPS,
            purpose=Purpose.TRANSACTIONAL,
            kind=MessageKind.STAFF_NOTIFICATION,
            contact_id=contact_id,
            booking_id=booking_id,
            recipient="staff",
            body=body,
        )
    ]
    if address:
        email_key = f"{key}:email"
        email = render_staff_email(body, ClinicIdentity.from_settings(settings), reference=email_key)
        notices.append(
            OutboundMessage(
                idempotency_key=email_key,
                channel=Channel.EMAIL,
                purpose=Purpose.TRANSACTIONAL,
                kind=MessageKind.STAFF_NOTIFICATION,
                contact_id=contact_id,
                booking_id=booking_id,
                recipient=address,
                body=email.to_json(),
            )
        )
    return notices


def queue_staff_notice(session: Session, key: str, body: str) -> None:
    """Queue `staff_notices` in the caller's transaction (for callers outside a flow, e.g. the gateway)."""
    for notice in staff_notices(get_settings(), key, body):
        queue_message(session, notice)
