"""Outbox operations: queue a message once, claim it for sending, record what the provider said.

A message moves pending → sending → sent | sandboxed | blocked | failed | dropped, and every move is kept in
`OutboundMessageEvent`. A send that hits a provider outage goes back to pending with a later `send_after`,
so the outage delays it; the unique idempotency key (also sent to the provider) means it is never doubled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, update
from sqlmodel import Session, select

from messaging import process_identity
from messaging.consent import OPT_OUT_SCOPES, ConsentSource, may_send, withdraw
from messaging.reminder_policy import ReminderPolicy
from messaging.staff_tasks import open_for_failed_message
from models import (
    Booking,
    BookingStatus,
    Channel,
    ConsentOrigin,
    Contact,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    WebhookEvent,
    get_settings,
    session_scope,
)
from models.types import utcnow
from providers.retry import Backoff

logger = logging.getLogger(__name__)

# A claim is held for CLAIM_LEASE and renewed every quarter of it while the send is in flight; claims made
# before claims carried a lease are taken back after STALE_SENDING_AFTER.
CLAIM_LEASE = timedelta(minutes=2)
STALE_SENDING_AFTER = timedelta(minutes=10)
MAX_RETRY_DELAY = timedelta(minutes=15)
# After a provider outage: 30 s doubling per attempt, at most MAX_RETRY_DELAY, half jitter.
OUTAGE_BACKOFF = Backoff(30.0, MAX_RETRY_DELAY.total_seconds(), jitter="half", max_doublings=10)
# Notices about a booking change: each speaks of one revision, so a newer one makes it obsolete. (Reminders
# speak of an appointment time and are re-checked against that; replies to a patient, of what they said.)
BOOKING_NOTICES = frozenset(
    {
        MessageKind.CONFIRMATION,
        MessageKind.REQUEST_RECEIVED,
        MessageKind.RESCHEDULE,
        MessageKind.CANCELLATION,
        MessageKind.DECLINED,
    }
)
# A reminder whose booking has a newer event waiting to be applied asks again this much later.
AWAIT_NEWER_EVENT = timedelta(minutes=1)
_UNAPPLIED = [InboxStatus.RECEIVED, InboxStatus.DISPATCHED]


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    created: bool


def queue_message(session: Session, message: OutboundMessage) -> QueuedMessage:
    """Insert unless a message with the same idempotency key exists (a replayed event, a retried flow)."""
    existing = session.exec(
        select(OutboundMessage).where(OutboundMessage.idempotency_key == message.idempotency_key)
    ).first()
    if existing is not None:
        return QueuedMessage(existing.id, created=False)  # type: ignore[arg-type]
    session.add(message)
    session.flush()
    session.add(OutboundMessageEvent(message_id=message.id, status=MessageStatus.PENDING, detail="queued"))
    return QueuedMessage(message.id, created=True)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    idempotency_key: str
    channel: str
    recipient: str
    body: str


def claim(message_id: int, now: datetime | None = None) -> ClaimedMessage | str:
    """Take a due message for sending, or return the status that says why not (already sent, not due, …).

    The row is locked first (on PostgreSQL; SQLite transactions here are already serial), so two senders
    racing for the same message cannot both see it pending.
    """
    now = now or utcnow()
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id, with_for_update=True)
        if message is None:
            return "missing"
        if message.status != MessageStatus.PENDING:
            return message.status
        if message.send_after > now:
            return "not due"
        waiting = unapplied_revisions(session, [message.booking_id] if message.booking_id else [])
        return _claim_checked(session, message, now, ReminderPolicy.from_settings(get_settings()), waiting)


def claim_due(
    now: datetime, *, channels: list[str], limit: int = 1000
) -> tuple[list[ClaimedMessage], dict[int, str]]:
    """Claim up to `limit` due messages in one transaction; returns them and why the others were not.

    On PostgreSQL the rows are selected `FOR UPDATE SKIP LOCKED`, so concurrent sweeps split the work instead
    of waiting for (or doubling) each other; on SQLite the transaction holds the database's write lock.
    """
    policy = ReminderPolicy.from_settings(get_settings())
    with session_scope() as session:
        query = (
            select(OutboundMessage)
            .where(OutboundMessage.status == MessageStatus.PENDING, OutboundMessage.send_after <= now)
            .order_by(OutboundMessage.send_after)  # type: ignore[arg-type]
            .limit(limit)
        )
        query = query.where(OutboundMessage.channel.in_(channels))  # type: ignore[attr-defined]
        # Campaign messages are claimed in bulk by the campaign flow, never one by one by the sweep.
        query = query.where(OutboundMessage.campaign_id.is_(None))  # type: ignore[union-attr]
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed: list[ClaimedMessage] = []
        refused: dict[int, str] = {}
        due = session.exec(query).all()
        booking_ids = {m.booking_id for m in due if m.booking_id}
        waiting = unapplied_revisions(session, booking_ids)  # before the bookings: see `unapplied_revisions`
        # Load their bookings in one query; the re-checks below then find them in the session.
        session.exec(select(Booking).where(Booking.id.in_(booking_ids))).all()  # type: ignore[union-attr]
        for message in due:
            result = _claim_checked(session, message, now, policy, waiting)
            if isinstance(result, str):
                refused[message.id] = str(result)  # type: ignore[index]  # "dropped", not the enum
            else:
                claimed.append(result)
        return claimed, refused


# Inbox sources that bring Wix booking revisions: webhooks, and what `wix-reconcile` found they missed.
BOOKING_SOURCES = ("wix", "wix-reconcile")


def unapplied_revisions(session: Session, booking_ids: Iterable[int]) -> dict[int, int]:
    """Per booking, the newest revision a stored event brings that is not applied yet (bookings with none are
    left out). Wix events name their booking and revision in the inbox row; simple-format ones carry none.

    Asked before the bookings are read: an intake committing in between then shows up here as still waiting
    or there as applied, never as neither (each statement sees what was committed when it began)."""
    ids = list(booking_ids)
    if not ids:
        return {}
    rows = session.exec(
        select(Booking.id, func.max(WebhookEvent.revision))
        .join(
            WebhookEvent,
            and_(
                WebhookEvent.source.in_(BOOKING_SOURCES),  # type: ignore[attr-defined]
                WebhookEvent.subject == Booking.wix_booking_id,
            ),
        )
        .where(
            Booking.id.in_(ids),  # type: ignore[union-attr]
            WebhookEvent.status.in_(_UNAPPLIED),  # type: ignore[attr-defined]
            WebhookEvent.revision > Booking.revision,  # type: ignore[operator]
        )
        .group_by(Booking.id)
    ).all()
    return {booking_id: revision for booking_id, revision in rows}


def _claim_checked(
    session: Session,
    message: OutboundMessage,
    now: datetime,
    policy: ReminderPolicy,
    waiting: Mapping[int, int],
) -> ClaimedMessage | str:
    """Re-check a pending message against what is true *now* (`waiting`: `unapplied_revisions` of its
    booking); claim it if it may still be sent."""
    refusal = _superseded(session, message, now, waiting) or _refusal(session, message, now, policy)
    if refusal is not None:
        return refusal
    message.attempts += 1
    message.claimed_by = process_identity.current()
    message.lease_until = utcnow() + CLAIM_LEASE  # the wall clock, whatever `now` a sweep runs as of
    transition(session, message, MessageStatus.SENDING, f"attempt {message.attempts}")
    return ClaimedMessage(
        message.id,  # type: ignore[arg-type]
        message.idempotency_key,
        message.channel,
        message.recipient,
        message.body,
    )


def _superseded(
    session: Session, message: OutboundMessage, now: datetime, waiting: Mapping[int, int]
) -> str | None:
    """A booking notice about an older revision than the newest known, applied or still in the inbox, is
    dropped (its newest event tells the patient what is true); a reminder waits for that event to be applied,
    which keeps it, moves it or cancels it."""
    booking = session.get(Booking, message.booking_id) if message.booking_id else None
    if booking is None:
        return None
    newer = waiting.get(booking.id)  # type: ignore[arg-type]
    if message.kind in BOOKING_NOTICES and message.booking_revision is not None:
        newest = max(booking.revision, newer or 0)
        if message.booking_revision < newest:
            where = "stored, not yet applied" if newer is not None and newer > booking.revision else "applied"
            transition(
                session, message, MessageStatus.DROPPED, f"superseded by booking revision {newest} ({where})"
            )
            return MessageStatus.DROPPED
    if message.kind == MessageKind.REMINDER and newer is not None:
        message.send_after = now + AWAIT_NEWER_EVENT
        message.updated_at = utcnow()
        session.add(message)
        return "deferred"
    return None


def _refusal(session: Session, message: OutboundMessage, now: datetime, policy: ReminderPolicy) -> str | None:
    """None if the message may go now; otherwise record why not and return the status (or "deferred")."""
    if message.deadline is not None and message.deadline <= now:
        transition(session, message, MessageStatus.DROPPED, "deadline passed before it could be sent")
        return MessageStatus.DROPPED
    booking = session.get(Booking, message.booking_id) if message.booking_id else None
    if message.kind == MessageKind.REMINDER and booking is not None:
        status = BookingStatus(booking.status)
        if not status.is_accepted:
            transition(session, message, MessageStatus.DROPPED, f"booking is {status.value.lower()}")
            return MessageStatus.DROPPED
        if message.appointment_at is not None and booking.start_at != message.appointment_at:
            transition(session, message, MessageStatus.DROPPED, "booking moved; a new reminder replaces it")
            return MessageStatus.DROPPED
    reason = may_send(message.channel, message.purpose).refusal(session, message.recipient, message.kind)
    if reason is not None:
        transition(session, message, MessageStatus.SUPPRESSED, f"recipient suppressed ({reason})")
        return MessageStatus.SUPPRESSED
    if message.kind == MessageKind.REMINDER and message.channel == Channel.SMS:
        timezone = (booking.timezone if booking else None) or get_settings().clinic_timezone
        allowed_at = policy.sendable_now(now, timezone)
        if allowed_at is not None:
            if message.deadline is not None and allowed_at >= message.deadline:
                transition(session, message, MessageStatus.DROPPED, "quiet hours last past its deadline")
                return MessageStatus.DROPPED
            message.send_after = allowed_at
            message.updated_at = utcnow()
            session.add(message)
            return "deferred"
    return None


@dataclass(frozen=True)
class Outcome:
    """What one send attempt came to, to be written back to the outbox."""

    message_id: int
    status: MessageStatus
    detail: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None


def record_many(outcomes: list[Outcome]) -> None:
    """Write a batch of send results in one transaction (one fsync for a whole sweep, not one per SMS)."""
    if not outcomes:
        return
    with session_scope() as session:
        ids = [outcome.message_id for outcome in outcomes]
        rows = session.exec(select(OutboundMessage).where(OutboundMessage.id.in_(ids))).all()  # type: ignore[union-attr]
        by_id = {row.id: row for row in rows}
        for outcome in outcomes:
            _apply(session, by_id[outcome.message_id], outcome)


def _apply(session: Session, message: OutboundMessage, outcome: Outcome) -> None:
    message.provider = outcome.provider or message.provider
    message.provider_message_id = outcome.provider_message_id or message.provider_message_id
    if outcome.status in {MessageStatus.SENT, MessageStatus.SANDBOXED}:
        message.sent_at = utcnow()
    if outcome.status in {MessageStatus.FAILED, MessageStatus.BLOCKED}:
        message.last_error = outcome.detail
    if outcome.status == MessageStatus.BLOCKED and message.channel == Channel.SMS:
        # The provider holds an opt-out we did not know of (a STOP sent straight to the carrier): honour it
        # everywhere, not only at the provider.
        contact = session.get(Contact, message.contact_id) if message.contact_id else None
        provider = outcome.provider or "provider"
        why = ConsentSource("provider_blocked", provider, outcome.detail, origin=ConsentOrigin.PATIENT_SMS)
        withdraw(session, phone=message.recipient, contact=contact, scopes=OPT_OUT_SCOPES, why=why)
    if outcome.status == MessageStatus.PENDING:  # provider outage: try again later, same key
        message.send_after = utcnow() + timedelta(seconds=OUTAGE_BACKOFF.delay(message.attempts))
        message.last_error = outcome.detail
        transition(session, message, MessageStatus.PENDING, f"retry after outage: {outcome.detail}")
        return
    transition(session, message, outcome.status, outcome.detail)
    if outcome.status == MessageStatus.FAILED:
        open_for_failed_message(session, message)


def release_abandoned() -> int:
    """Claims a crashed sender left behind go back to pending; returns how many.

    A claim is abandoned once its process is known gone (it ran on this machine and runs no more: taken back
    at once, e.g. by the first sweep after a restart) or its lease lapsed (the sender stopped renewing it:
    dead elsewhere, or hung). Judged by the wall clock, never by a sweep's `now`: a sweep run "as of" a later
    time (the CLI's `--now`) must not mistake another sender's fresh claim for an abandoned one.
    """
    now = utcnow()
    with session_scope() as session:
        sending = session.exec(
            select(OutboundMessage).where(
                OutboundMessage.status == MessageStatus.SENDING,
                # A campaign email left sending may have reached SendGrid (no idempotency key there): the
                # campaign flow settles its own (campaigns/bulk_outbox.py `abandoned`), never a blind resend.
                OutboundMessage.campaign_id.is_(None),  # type: ignore[union-attr]
            )
        ).all()
        # Resent with the same key: MobileMessage deduplicates on it; Gmail has no such key, but the resent
        # email keeps its Message-ID (providers/gmail.py), which Gmail's own mailboxes deduplicate on.
        released = 0
        for message in sending:
            why = _abandoned(message, now)
            if why is not None:
                message.claimed_by = message.lease_until = None
                transition(session, message, MessageStatus.PENDING, f"{why}; will resend with the same key")
                released += 1
        return released


def _abandoned(message: OutboundMessage, now: datetime) -> str | None:
    if message.lease_until is None:
        return "claim abandoned" if message.updated_at < now - STALE_SENDING_AFTER else None
    if message.claimed_by is not None and process_identity.is_gone(message.claimed_by):
        return "claim abandoned (its process is gone)"
    if message.lease_until < now:
        return "claim abandoned (its lease lapsed)"
    return None


def renew_leases(message_ids: list[int]) -> None:
    """Extend this process's claims on messages it is still sending."""
    with session_scope() as session:
        session.exec(
            update(OutboundMessage)  # type: ignore[call-overload]
            .where(
                OutboundMessage.id.in_(message_ids),  # type: ignore[union-attr]
                OutboundMessage.status == MessageStatus.SENDING,
                OutboundMessage.claimed_by == process_identity.current(),
            )
            .values(lease_until=utcnow() + CLAIM_LEASE)
        )


@asynccontextmanager
async def leases_kept(message_ids: list[int], every: timedelta = CLAIM_LEASE / 4) -> AsyncIterator[None]:
    """Keep renewing the claims on `message_ids` while the block sends them."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(every.total_seconds())
            try:
                await asyncio.to_thread(renew_leases, message_ids)
            except Exception as exc:  # the database busy for a moment: the next round tries again
                logger.warning("claims not renewed this round: %s", type(exc).__name__)

    renewer = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewer.cancel()


def transition(
    session: Session,
    message: OutboundMessage,
    status: MessageStatus,
    detail: str | None,
    at: datetime | None = None,
) -> None:
    """Move a message to `status` with a history entry; `at` is when it happened, if not now (a provider's
    report of a delivery, say, names its own time)."""
    message.status = status
    message.updated_at = now = utcnow()
    session.add(message)
    entry = OutboundMessageEvent(message_id=message.id, status=status, detail=detail, at=at or now)  # type: ignore[arg-type]
    session.add(entry)
