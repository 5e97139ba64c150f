"""Applying one Wix booking event to the CRM: the booking, its contact, what the patient is owed.

Wix redelivers events, sometimes hours late and out of order, so this is written to be run any number of
times for any event in any order and still end right:
- the booking keeps the state of the highest `revision` seen; an older revision changes nothing;
- the contact, booking, audit entries, the patient messages to send and the inbox row's new status are
  committed in one transaction (a transactional outbox), so a crash leaves all or nothing;
- every message has an idempotency key derived from booking, kind and revision, so a replay queues nothing
  new, and pending messages an update makes obsolete are dropped rather than sent late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from inbox import service as inbox
from inbox.service import WIX_BOOKINGS, InboxEvent
from messaging.consent import may_send
from messaging.contacts import (
    ContactInput,
    can_receive_sms,
    lock_keys,
    mask_phone,
    normalize_email,
    normalize_phone,
    upsert_contact,
)
from messaging.email_wording import ClinicIdentity, booking_email_key, render_booking_email
from messaging.outbox import BOOKING_NOTICES, queue_message, transition
from messaging.reminder_policy import PlannedReminder, ReminderPolicy
from messaging.sms_wording import booking_facts, render
from models import (
    Booking,
    BookingStatus,
    Channel,
    Contact,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    get_settings,
)
from models.audit import run_audit
from models.types import utcnow
from providers import wix

ACTOR = "booking-intake"
_INFORMED = [MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.SANDBOXED, MessageStatus.DELIVERED]


@dataclass
class IntakeOutcome:
    event_id: int
    summary: str
    booking_id: str | None = None
    stale: bool = False
    crm_booking_id: int | None = None
    queued: list[str] = field(default_factory=list)
    to_send: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class BookingChange:
    booking: Booking
    is_new: bool
    stale: bool
    previous_status: str | None = None
    previous_start: datetime | None = None


# --- the pieces ---------------------------------------------------------------------------------------


def apply_booking(
    session: Session, event: wix.BookingEvent, contact_id: int | None, event_id: int
) -> BookingChange:
    """Upsert the booking, letting only a newer revision through."""
    incoming = event.booking
    booking = session.exec(select(Booking).where(Booking.wix_booking_id == incoming.booking_id)).first()
    revision = incoming.revision
    if booking is not None:
        if (
            revision is None
        ):  # the simple JSON format has no revision: a create never overwrites, else arrival order
            revision = booking.revision + 1 if event.action != wix.BookingAction.CREATED else booking.revision
        if revision <= booking.revision:
            return BookingChange(booking, is_new=False, stale=True)
    previous_status = booking.status if booking else None
    previous_start = booking.start_at if booking else None
    if booking is None:
        booking = Booking(
            wix_booking_id=incoming.booking_id, status=incoming.status, start_at=incoming.start_at
        )
    booking.wix_instance_id = event.instance_id or booking.wix_instance_id
    booking.contact_id = contact_id or booking.contact_id
    booking.status = incoming.status
    booking.revision = revision if revision is not None else 1
    booking.service_name = incoming.service_name or booking.service_name
    booking.location = incoming.location or booking.location
    booking.timezone = incoming.timezone or booking.timezone
    booking.start_at = incoming.start_at
    booking.end_at = incoming.end_at
    booking.last_event_id = event_id
    booking.updated_at = utcnow()
    session.add(booking)
    session.flush()
    return BookingChange(booking, previous_status is None, False, previous_status, previous_start)


def decide_messages(change: BookingChange, patient_informed: bool) -> list[MessageKind]:
    """Which message this change owes the patient: at most one, and only about the newest state."""
    if change.stale:
        return []
    status = BookingStatus(change.booking.status)
    previous = BookingStatus(change.previous_status) if change.previous_status else None
    was_active = previous is not None and previous.is_active
    moved = change.previous_start is not None and change.previous_start != change.booking.start_at
    if status == BookingStatus.PENDING:
        if not patient_informed:
            return [MessageKind.REQUEST_RECEIVED]
        return [MessageKind.RESCHEDULE] if moved else []
    if status in {BookingStatus.CREATED, BookingStatus.CONFIRMED}:
        if not patient_informed or previous in {None, BookingStatus.PENDING} or not was_active:
            return [MessageKind.CONFIRMATION]
        return [MessageKind.RESCHEDULE] if moved else []
    # Nothing to take back from a patient we told nothing (every notice was superseded before it went).
    if status == BookingStatus.CANCELED and was_active and patient_informed:
        return [MessageKind.CANCELLATION]
    if status == BookingStatus.DECLINED and was_active and patient_informed:
        return [MessageKind.DECLINED]
    return []


def _patient_informed(session: Session, booking_id: int) -> bool:
    """Has the patient been told about this booking (or is a message telling them on its way)?"""
    informing = [MessageKind.CONFIRMATION, MessageKind.REQUEST_RECEIVED, MessageKind.RESCHEDULE]
    found = session.exec(
        select(OutboundMessage.id).where(
            OutboundMessage.booking_id == booking_id,
            OutboundMessage.kind.in_(informing),  # type: ignore[attr-defined]
            OutboundMessage.status.in_(_INFORMED),  # type: ignore[attr-defined]
        )
    ).first()
    return found is not None


def _drop_superseded(session: Session, booking: Booking) -> int:
    """Pending messages about an older revision would tell the patient something no longer true."""
    stale = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.booking_id == booking.id,
            OutboundMessage.status == MessageStatus.PENDING,
            OutboundMessage.kind.in_(BOOKING_NOTICES),  # type: ignore[attr-defined]
        )
    ).all()
    for message in stale:
        transition(
            session, message, MessageStatus.DROPPED, f"superseded by booking revision {booking.revision}"
        )
    return len(stale)


def _audit(session: Session, action: str, entity_type: str, entity_id: int | None, **detail: object) -> None:
    session.add(run_audit(ACTOR, action, entity_type, entity_id, **detail))


def apply_event(event_id: int) -> IntakeOutcome:
    """Read inbox event `event_id` and apply it: the flow's work, without Prefect (tests, tools)."""
    return apply_inbox_event(inbox.read(event_id, WIX_BOOKINGS))


def apply_inbox_event(event: InboxEvent[wix.BookingEvent | None]) -> IntakeOutcome:
    """The whole CRM side of one event, and the inbox row's `processed`, in one transaction."""
    with inbox.processing(event) as session:
        return apply(session, event)


def apply(session: Session, inbox_event: InboxEvent[wix.BookingEvent | None]) -> IntakeOutcome:
    """Apply the event in the caller's transaction; returns what changed and which messages are due now."""
    settings = get_settings()
    now = utcnow()
    event_id, event = inbox_event.id, inbox_event.payload
    if event is None:
        return IntakeOutcome(event_id, f"ignored {inbox_event.event_type}: not a booking event")
    incoming = event.booking
    lock_keys(session, [f"booking:{incoming.booking_id}"])
    region = incoming.contact.country_code or settings.default_phone_region
    phone = normalize_phone(incoming.contact.phone, region)
    contact_change = upsert_contact(
        session,
        ContactInput(
            first_name=incoming.contact.first_name,
            last_name=incoming.contact.last_name,
            email=normalize_email(incoming.contact.email),
            phone=phone,
            wix_contact_id=incoming.contact.contact_id,
        ),
    )
    contact = contact_change.contact
    if contact_change.created or contact_change.changed_fields:
        _audit(
            session,
            "contact.created" if contact_change.created else "contact.updated",
            "contact",
            contact.id,
            fields=list(contact_change.changed_fields),
            event_id=event_id,
        )

    change = apply_booking(session, event, contact.id, event_id)
    booking = change.booking
    outcome = IntakeOutcome(
        event_id, "", booking_id=incoming.booking_id, stale=change.stale, crm_booking_id=booking.id
    )
    if change.stale:
        _audit(
            session,
            "booking.stale_event_ignored",
            "booking",
            booking.id,
            event_id=event_id,
            event_revision=incoming.revision,
            current_revision=booking.revision,
        )
        outcome.summary = f"stale revision {incoming.revision} ≤ {booking.revision}: nothing changed"
    else:
        dropped = _drop_superseded(session, booking)
        _audit(
            session,
            "booking.created" if change.is_new else "booking.updated",
            "booking",
            booking.id,
            event_id=event_id,
            wix_action=event.action.value,
            status=booking.status,
            previous_status=change.previous_status,
            revision=booking.revision,
            start_at=booking.start_at.isoformat(),
            previous_start_at=change.previous_start.isoformat() if change.previous_start else None,
            superseded_messages=dropped,
        )
        kinds = decide_messages(change, _patient_informed(session, booking.id))  # type: ignore[arg-type]
        outcome.queued = _queue_sms(session, kinds, booking, contact, phone, now)
        outcome.queued += _queue_email(session, kinds, booking, contact, now)
        outcome.queued += sync_reminders(session, booking, contact, phone, now)
        outcome.summary = (
            f"{event.action.value}: booking now {booking.status} rev {booking.revision}; "
            f"queued {', '.join(outcome.queued) or 'no message'}"
        )
    outcome.to_send = list(
        session.exec(
            select(OutboundMessage.id).where(
                OutboundMessage.booking_id == booking.id,
                OutboundMessage.status == MessageStatus.PENDING,
                OutboundMessage.send_after <= utcnow(),
            )
        ).all()
    )  # type: ignore[arg-type]
    return outcome


def _sms_skip_reason(booking: Booking, phone: str | None, now: datetime) -> str | None:
    if phone is None:
        return "no valid phone number"
    if not can_receive_sms(phone):
        return "phone number cannot receive SMS"
    if booking.start_at <= now:
        return "appointment time has already passed"
    return None


def _booking_sms(
    booking: Booking, contact: Contact, phone: str, kind: MessageKind, key: str, **schedule: datetime
) -> OutboundMessage:
    return OutboundMessage(
        idempotency_key=key,
        channel=Channel.SMS,
        purpose=Purpose.TRANSACTIONAL,
        kind=kind,
        contact_id=contact.id,
        booking_id=booking.id,
        recipient=phone,
        body=render(kind, booking_facts(booking, contact)),
        booking_revision=booking.revision,
        appointment_at=booking.start_at,
        **schedule,
    )


def _queue_sms(
    session: Session,
    kinds: list[MessageKind],
    booking: Booking,
    contact: Contact,
    phone: str | None,
    now: datetime,
) -> list[str]:
    queued: list[str] = []
    for kind in kinds:
        skip_reason = _sms_skip_reason(booking, phone, now)
        if skip_reason:
            _audit(session, "message.skipped", "booking", booking.id, kind=kind.value, reason=skip_reason)
            continue
        assert phone is not None
        key = f"booking:{booking.wix_booking_id}:{kind.value}:rev{booking.revision}"
        message = _booking_sms(booking, contact, phone, kind, key, deadline=booking.start_at)
        result = queue_message(session, message)
        if result.created:
            _audit(
                session,
                "message.queued",
                "outbound_message",
                result.id,
                kind=kind.value,
                to=mask_phone(phone),
            )
            queued.append(kind.value)
    return queued


def _queue_email(
    session: Session, kinds: list[MessageKind], booking: Booking, contact: Contact, now: datetime
) -> list[str]:
    """The same notices by email, when the patient gave an address that is not suppressed."""
    queued: list[str] = []
    for kind in kinds:
        skip_reason = None
        if not contact.email:
            skip_reason = "no email address"
        elif booking.start_at <= now:
            skip_reason = "appointment time has already passed"
        else:
            why = may_send(Channel.EMAIL, Purpose.TRANSACTIONAL).refusal(session, contact.email, kind)
            skip_reason = f"email suppressed ({why})" if why else None
        if skip_reason:
            _audit(
                session,
                "message.skipped",
                "booking",
                booking.id,
                kind=kind.value,
                channel="email",
                reason=skip_reason,
            )
            continue
        assert contact.email is not None
        content = render_booking_email(
            kind,
            booking_facts(booking, contact),
            ClinicIdentity.from_settings(get_settings()),
            to_name=" ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
        )
        message = OutboundMessage(
            idempotency_key=booking_email_key(booking.wix_booking_id, kind, booking.revision),
            channel=Channel.EMAIL,
            purpose=Purpose.TRANSACTIONAL,
            kind=kind,
            contact_id=contact.id,
            booking_id=booking.id,
            recipient=contact.email,
            body=content.to_json(),
            booking_revision=booking.revision,
            appointment_at=booking.start_at,
            deadline=booking.start_at,
        )
        result = queue_message(session, message)
        if result.created:
            _audit(session, "message.queued", "outbound_message", result.id, kind=kind.value, channel="email")
            queued.append(f"{kind.value} email")
    return queued


def sync_reminders(
    session: Session, booking: Booking, contact: Contact, phone: str | None, now: datetime
) -> list[str]:
    """Make the booking's pending reminders match its newest state: planned for its current start time if it
    is confirmed, none otherwise (a request not yet accepted gets the request-received notice only). A
    reminder for another start time is dropped, so a reschedule moves the reminders and a cancellation
    removes them; one already sent stays sent.

    Each reminder is one per (offset, appointment time) that is still meant to go: a row for the same offset
    and time that is pending, in flight or sent is kept as it is (a replay or an edit that moves nothing
    plans nothing twice), while a dropped one is replaced by a new plan whose key names the revision that
    planned it, so a booking moved away and back again gets its reminders (A -> A' -> A).
    """
    settings = get_settings()
    planned: dict[str, PlannedReminder] = {}
    existing = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.booking_id == booking.id, OutboundMessage.kind == MessageKind.REMINDER
        )
    ).all()
    accepted = BookingStatus(booking.status).is_accepted
    if accepted and _sms_skip_reason(booking, phone, now) is None:
        plan = ReminderPolicy.from_settings(settings).plan(
            booking.start_at,
            now=now,
            timezone=booking.timezone or settings.clinic_timezone,
            service=booking.service_name,
        )
        planned = {_reminder_key(booking, reminder, existing): reminder for reminder in plan.reminders}
        for label, reason in plan.skipped:
            _audit(session, "reminder.not_planned", "booking", booking.id, reminder=label, reason=reason)

    for message in existing:
        if message.status == MessageStatus.PENDING and message.idempotency_key not in planned:
            why = "booking moved" if accepted else f"booking {booking.status}"
            transition(session, message, MessageStatus.DROPPED, f"{why} (revision {booking.revision})")

    queued = []
    for key, reminder in planned.items():
        assert phone is not None
        message = _booking_sms(
            booking,
            contact,
            phone,
            MessageKind.REMINDER,
            key,
            send_after=reminder.send_at,
            deadline=reminder.deadline,
        )
        if queue_message(session, message).created:
            queued.append(f"reminder {reminder.label} at {reminder.send_at:%Y-%m-%d %H:%M}Z")
    return queued


def _reminder_key(booking: Booking, reminder: PlannedReminder, existing: Sequence[OutboundMessage]) -> str:
    """The key of the row that stands for this reminder: the one for the same offset and appointment time
    that is not dropped, if there is one, else a new plan's (`booking:<id>:reminder-<label>:<time>:rev<n>`).

    Rows written before plans were named carry no `:rev<n>`; the prefix still finds them."""
    prefix = f"booking:{booking.wix_booking_id}:reminder-{reminder.label}:{booking.start_at:%Y%m%dT%H%MZ}"
    for message in existing:
        key = message.idempotency_key
        if message.status != MessageStatus.DROPPED and (key == prefix or key.startswith(f"{prefix}:")):
            return key
    return f"{prefix}:rev{booking.revision}"
