"""Gmail delivery of one claimed outbox email (booking notices to patients, notices to staff).

The outbox row holds the rendered email (`messaging/email_wording.EmailContent` as JSON); tracking is added
here, once the row's id is known. What can go wrong, and what happens then:
- Google not configured (no OAuth client): sandboxed, as SMS is without credentials: recorded, nothing sent;
- no connected account, or Google refused its token: pending, retried with backoff until someone connects
  the account (or the message's deadline passes): delayed, never dropped;
- Google or the network down (timeouts, 429, 5xx): pending, retried later with the same outbox row;
- Google refuses the message itself (4xx): failed, with Google's reason.

Gmail allows a user about 2.5 sends a second (250 quota units/s, 100 per send), so at most
`GMAIL_MAX_IN_FLIGHT` sends run at once across every process (`gmail_slot`), separate from MobileMessage's
five slots: a burst of email never holds up SMS, nor the other way round.
"""

from __future__ import annotations

import asyncio
import logging

from messaging.email_wording import EmailContent, add_tracking
from messaging.outbox import ClaimedMessage, Outcome
from messaging.provider_slots import ProviderSlots, SlotTimeoutError
from models import MessageStatus, get_settings
from providers import gmail
from providers.google_api import (
    GoogleNotConnected,
    GooglePermanentError,
    GoogleTemporaryError,
    active_connection,
    build_service,
)

PROVIDER = "gmail"
GMAIL_MAX_IN_FLIGHT = 2

logger = logging.getLogger(__name__)


def gmail_slot() -> ProviderSlots:
    return ProviderSlots(PROVIDER, GMAIL_MAX_IN_FLIGHT)


def compose(claimed: ClaimedMessage, sender_address: str) -> gmail.OutgoingEmail:
    """The email as it goes out: the stored rendering plus tracking, from the clinic's connected account."""
    settings = get_settings()
    content = EmailContent.from_json(claimed.body)
    html = add_tracking(content.html, claimed.id, settings.public_base_url) if content.track else content.html
    reply_to = gmail.Mailbox(settings.clinic_email, settings.clinic_name) if settings.clinic_email else None
    return gmail.OutgoingEmail(
        sender=gmail.Mailbox(sender_address, settings.clinic_name),
        to=gmail.Mailbox(claimed.recipient, content.to_name),
        subject=content.subject,
        text=content.text,
        html=html,
        key=claimed.idempotency_key,
        reply_to=reply_to,
    )


def _send_blocking(claimed: ClaimedMessage) -> str:
    """Build and send in a worker thread (the Google client is synchronous).

    Each send builds its own client, unlike the calendar catch-up's shared `BatchService`: the sweep's
    email batch reaches this one message at a time from two workers running at once (`flows/tasks/send.py`)
    and httplib2 is not thread-safe, so sharing would need a client per worker, which the one-message
    sender interface cannot carry; a cache outliving the call would keep credentials past a disconnect and
    sockets past Google closing them. A build is about a millisecond; Gmail's quota allows ~2.5 sends a
    second."""
    connection = active_connection()
    if connection is None:
        raise GoogleNotConnected("no Google account is connected; run `avatar-crm google connect`")
    try:
        message = gmail.build_message(compose(claimed, connection.account_email))
    except ValueError as exc:  # not a stored email, or not an address: sending again cannot help
        raise GooglePermanentError(f"cannot build the email: {exc}") from exc
    result = gmail.send(build_service("gmail"), message)
    return str(result.get("id", ""))


async def deliver_email(claimed: ClaimedMessage) -> Outcome:
    settings = get_settings()
    if not settings.google_configured:
        return Outcome(
            claimed.id,
            MessageStatus.SANDBOXED,
            "sandbox mode (Google not configured): nothing left the machine",
            provider="sandbox",
        )
    try:
        async with gmail_slot().hold():
            gmail_id = await asyncio.to_thread(_send_blocking, claimed)
    except (GoogleNotConnected, GoogleTemporaryError, SlotTimeoutError) as exc:
        return Outcome(claimed.id, MessageStatus.PENDING, f"{type(exc).__name__}: {exc}"[:300], PROVIDER)
    except GooglePermanentError as exc:
        return Outcome(claimed.id, MessageStatus.FAILED, str(exc)[:300], PROVIDER)
    return Outcome(claimed.id, MessageStatus.SENT, None, PROVIDER, gmail_id or None)
