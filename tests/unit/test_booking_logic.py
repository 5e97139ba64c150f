"""Booking intake's CRM side, run directly against the real database: revision ordering, contact matching,
which message a change owes the patient, and what ends up in the outbox and audit log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from bookings.intake import apply_event
from messaging import outbox as outbox_ops
from messaging.contacts import lock_keys
from messaging.sms_wording import format_local_time
from models import (
    AuditLog,
    Booking,
    Contact,
    InboxStatus,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    WebhookEvent,
    get_engine,
    get_settings,
    session_scope,
)
from models.crypto import get_cipher
from providers.wix_simulator import WixKeys, booking_payload, sign_wix_jwt, simple_event, wix_event
from tests.inbox_events import apply_wix, store_event
from tests.lock_races import start_until_blocked

pytestmark = pytest.mark.db

KEYS = WixKeys()
BRISBANE = ZoneInfo("Australia/Brisbane")


def _slot(days: int, hour: int, minute: int = 0, tz: str = "Australia/Brisbane") -> datetime:
    zone = ZoneInfo(tz)
    day = (datetime.now(zone) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


def deliver(
    event_type: str, booking_id: str, revision: int, start: datetime, **booking_fields: object
) -> int:
    """Store a signed Wix event in the inbox and apply it, as the flow would; returns the inbox id."""
    return apply_wix(KEYS, event_type, booking_id, revision, start, **booking_fields)


def outbox(booking_id: str) -> list[OutboundMessage]:
    """The SMS notices about a booking's changes (its scheduled reminders are tested in test_reminders.py,
    the same notices by email in test_gmail.py)."""
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboundMessage)
                .join(Booking, Booking.id == OutboundMessage.booking_id)
                .where(
                    Booking.wix_booking_id == booking_id,
                    OutboundMessage.kind != "reminder",
                    OutboundMessage.channel == "sms",
                )
                .order_by(OutboundMessage.id)
            ).all()
        )


def mark_all_sent() -> None:
    with session_scope() as session:
        for message in session.exec(select(OutboundMessage).where(OutboundMessage.status == "pending")).all():
            message.status = MessageStatus.SENT
            session.add(message)


def booking_row(booking_id: str) -> Booking:
    with session_scope() as session:
        row = session.exec(select(Booking).where(Booking.wix_booking_id == booking_id)).one()
        return row


CREATED, UPDATED = "wix.bookings.v2.booking_created", "wix.bookings.v2.booking_updated"
RESCHEDULED, CANCELED = "wix.bookings.v2.booking_rescheduled", "wix.bookings.v2.booking_canceled"
CONFIRMED, DECLINED = "wix.bookings.v2.booking_confirmed", "wix.bookings.v2.booking_declined"


def test_new_booking_creates_contact_booking_confirmation_and_audit(db: str) -> None:
    bid, start = str(uuid.uuid4()), _slot(3, 9)
    event_id = deliver(CREATED, bid, 1, start, phone="0412 345 678", email="Alex@Example.com ")

    with session_scope() as session:
        [contact] = session.exec(select(Contact)).all()
        assert contact.phone == "+61412345678" and contact.email == "alex@example.com"
        assert contact.phone_hash == get_cipher().blind_index("phone", "+61412345678")
        assert session.get(WebhookEvent, event_id).status == InboxStatus.PROCESSED  # type: ignore[union-attr]
        actions = [a.action for a in session.exec(select(AuditLog).order_by(AuditLog.id)).all()]
        # 09:00: the 2 h reminder would fall at 07:00, in quiet hours, and is not planned (with the reason)
        queued = ["message.queued", "message.queued"]  # the SMS, then the same notice by email
        assert actions == ["contact.created", "booking.created", *queued, "reminder.not_planned"]
        for entry in session.exec(select(AuditLog)).all():
            assert "412345678" not in str(entry.detail) and "alex@" not in str(entry.detail).lower()
    [message] = outbox(bid)
    assert message.kind == "confirmation" and message.status == MessageStatus.PENDING
    assert message.recipient == "+61412345678" and message.deadline == start
    assert f"{format_local_time(start, 'Australia/Brisbane')}" in message.body
    assert booking_row(bid).revision == 1


def test_reschedule_after_a_sent_confirmation_queues_the_new_time(db: str) -> None:
    bid, first, moved = str(uuid.uuid4()), _slot(3, 9), _slot(4, 13, 30)
    deliver(CREATED, bid, 1, first)
    mark_all_sent()
    deliver(RESCHEDULED, bid, 2, moved)

    _, reschedule = outbox(bid)
    assert reschedule.kind == "reschedule" and reschedule.idempotency_key == f"booking:{bid}:reschedule:rev2"
    assert "has moved to" in reschedule.body and "1:30pm" in reschedule.body
    assert booking_row(bid).start_at == moved


def test_a_reschedule_before_the_confirmation_went_out_replaces_it(db: str) -> None:
    bid, first, moved = str(uuid.uuid4()), _slot(3, 9), _slot(4, 16)
    deliver(CREATED, bid, 1, first)  # the confirmation is still pending (provider outage, say)
    deliver(RESCHEDULED, bid, 2, moved)

    old, new = outbox(bid)
    assert old.status == MessageStatus.DROPPED
    assert new.kind == "confirmation" and new.status == MessageStatus.PENDING and "4:00pm" in new.body


def test_stale_revision_changes_nothing(db: str) -> None:
    bid, start = str(uuid.uuid4()), _slot(5, 10)
    deliver(RESCHEDULED, bid, 2, start + timedelta(hours=2))
    mark_all_sent()
    stale_id = deliver(CREATED, bid, 1, start)

    row = booking_row(bid)
    assert row.revision == 2 and row.start_at == start + timedelta(hours=2)
    assert [m.kind for m in outbox(bid)] == ["confirmation"]
    with session_scope() as session:
        assert session.get(WebhookEvent, stale_id).status == InboxStatus.PROCESSED  # type: ignore[union-attr]
        assert session.exec(select(AuditLog).where(AuditLog.action == "booking.stale_event_ignored")).first()


def test_replaying_an_event_queues_nothing_new(db: str) -> None:
    bid = str(uuid.uuid4())
    event_id = deliver(CREATED, bid, 1, _slot(3, 9))
    apply_event(event_id)
    apply_event(event_id)
    assert len(outbox(bid)) == 1


def test_cancellation_after_confirmation_and_nothing_for_a_first_seen_cancellation(db: str) -> None:
    bid = str(uuid.uuid4())
    deliver(CREATED, bid, 1, _slot(3, 9))
    mark_all_sent()
    deliver(CANCELED, bid, 2, _slot(3, 9), status="CANCELED")
    assert [m.kind for m in outbox(bid)] == ["confirmation", "cancellation"]
    assert "has been cancelled" in outbox(bid)[1].body

    never_seen = str(uuid.uuid4())
    deliver(CANCELED, never_seen, 3, _slot(3, 9), status="CANCELED")
    assert outbox(never_seen) == []
    assert booking_row(never_seen).status == "CANCELED"


def test_pending_request_then_confirmed_then_declined_flow(db: str) -> None:
    bid, start = str(uuid.uuid4()), _slot(6, 11)
    deliver(CREATED, bid, 1, start, status="PENDING")
    assert [m.kind for m in outbox(bid)] == ["request_received"]
    mark_all_sent()
    deliver(CONFIRMED, bid, 2, start, status="CONFIRMED")
    assert [m.kind for m in outbox(bid)] == ["request_received", "confirmation"]

    other = str(uuid.uuid4())
    deliver(CREATED, other, 1, start, status="PENDING")
    mark_all_sent()
    deliver(DECLINED, other, 2, start, status="DECLINED")
    assert [m.kind for m in outbox(other)] == ["request_received", "declined"]


def test_an_update_that_moves_nothing_sends_nothing(db: str) -> None:
    bid, start = str(uuid.uuid4()), _slot(3, 9)
    deliver(CREATED, bid, 1, start)
    mark_all_sent()
    deliver(UPDATED, bid, 2, start, service="MRI – Knee (with contrast)")
    assert [m.kind for m in outbox(bid)] == ["confirmation"]
    assert booking_row(bid).service_name == "MRI – Knee (with contrast)"


def test_the_same_patient_is_matched_by_phone_in_any_format_or_by_email(db: str) -> None:
    deliver(CREATED, str(uuid.uuid4()), 1, _slot(3, 9), phone="+61 412 345 678", email="a@example.com")
    deliver(CREATED, str(uuid.uuid4()), 1, _slot(4, 9), phone="0412345678", email=None)
    deliver(CREATED, str(uuid.uuid4()), 1, _slot(5, 9), phone=None, email="A@EXAMPLE.COM")
    with session_scope() as session:
        contacts = session.exec(select(Contact)).all()
        assert len(contacts) == 1
        assert len(session.exec(select(Booking).where(Booking.contact_id == contacts[0].id)).all()) == 3


def test_unusable_phone_or_past_appointment_sends_nothing_and_says_why(db: str) -> None:
    no_phone = str(uuid.uuid4())
    deliver(CREATED, no_phone, 1, _slot(3, 9), phone="12345")
    landline = str(uuid.uuid4())
    deliver(CREATED, landline, 1, _slot(3, 9), phone="07 3123 4567")
    past = str(uuid.uuid4())
    deliver(CREATED, past, 1, datetime.now(UTC) - timedelta(hours=1))
    assert outbox(no_phone) == outbox(landline) == outbox(past) == []
    with session_scope() as session:
        reasons = [
            a.detail["reason"]
            for a in session.exec(
                select(AuditLog).where(AuditLog.action == "message.skipped").order_by(AuditLog.id)  # type: ignore[arg-type]
            )
            if a.detail.get("channel") != "email"  # email skips are tested in test_gmail.py
        ]
    assert reasons == [
        "no valid phone number",
        "phone number cannot receive SMS",
        "appointment time has already passed",
    ]


def test_text_uses_the_appointment_location_timezone(db: str) -> None:
    bid = str(uuid.uuid4())
    start = _slot(10, 9, tz="Australia/Sydney")
    deliver(CREATED, bid, 1, start, timezone="Australia/Sydney")
    [message] = outbox(bid)
    assert "9:00am" in message.body


def test_simple_format_without_revisions_applies_in_arrival_order(db: str) -> None:
    bid, start, moved = str(uuid.uuid4()), _slot(3, 9), _slot(3, 11)

    def simple(event: str, when: datetime) -> None:
        apply_event(store_event("wix", simple_event(event, bid, start=when), event))

    simple("bookings/created", start)
    mark_all_sent()
    simple("bookings/updated", moved)
    simple("bookings/created", start)  # a late redelivered create must not undo the update
    row = booking_row(bid)
    assert row.start_at == moved and row.revision == 2
    simple("bookings/cancelled", moved)
    assert booking_row(bid).status == "CANCELED"
    assert [m.kind for m in outbox(bid)] == ["confirmation", "reschedule", "cancellation"]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 3, 2, 23, 0, tzinfo=UTC), "Tue 3 Mar, 9:00am"),
        (datetime(2026, 3, 3, 2, 0, tzinfo=UTC), "Tue 3 Mar, 12:00pm"),
        (datetime(2026, 3, 2, 14, 5, tzinfo=UTC), "Tue 3 Mar, 12:05am"),
        (datetime(2026, 12, 31, 7, 45, tzinfo=UTC), "Thu 31 Dec, 5:45pm"),
    ],
)
def test_patient_time_format(moment: datetime, expected: str) -> None:
    assert format_local_time(moment, "Australia/Brisbane") == expected


def test_sydney_daylight_saving_is_respected() -> None:
    # 9:00am Sydney is 22:00 UTC the day before in summer (AEDT, +11) and 23:00 UTC in winter (AEST, +10).
    assert (
        format_local_time(datetime(2026, 1, 14, 22, 0, tzinfo=UTC), "Australia/Sydney")
        == "Thu 15 Jan, 9:00am"
    )
    assert (
        format_local_time(datetime(2026, 7, 14, 23, 0, tzinfo=UTC), "Australia/Sydney")
        == "Wed 15 Jul, 9:00am"
    )


def stored_only(event_type: str, booking_id: str, revision: int, start: datetime, **fields: object) -> int:
    """A Wix event the gateway stored whose flow run has not applied it yet."""
    booking = booking_payload(booking_id=booking_id, revision=revision, start=start, **fields)  # type: ignore[arg-type]
    return store_event("wix", sign_wix_jwt(KEYS, wix_event(event_type, booking), event_type), event_type)


def last_detail(message_id: int) -> str | None:
    with session_scope() as session:
        return session.exec(
            select(OutboundMessageEvent.detail)
            .where(OutboundMessageEvent.message_id == message_id)
            .order_by(OutboundMessageEvent.id.desc())  # type: ignore[union-attr]
        ).first()


def test_a_notice_is_dropped_when_a_newer_event_is_stored_but_not_yet_applied(db: str) -> None:
    bid, start = str(uuid.uuid4()), _slot(3, 9)
    deliver(CREATED, bid, 1, start)
    cancel = stored_only(CANCELED, bid, 3, start, status="CANCELED")
    stored_only(CREATED, bid, 1, start)  # an older duplicate waiting changes nothing
    [confirmation] = outbox(bid)

    assert outbox_ops.claim(confirmation.id) == MessageStatus.DROPPED  # type: ignore[arg-type]
    assert last_detail(confirmation.id) == "superseded by booking revision 3 (stored, not yet applied)"  # type: ignore[arg-type]
    apply_event(cancel)  # the patient was told nothing, so there is nothing to take back
    assert [(m.kind, m.status) for m in outbox(bid)] == [("confirmation", MessageStatus.DROPPED)]


def test_a_notice_of_the_newest_revision_goes_while_an_older_event_still_waits(db: str) -> None:
    bid, start = str(uuid.uuid4()), _slot(3, 9)
    stored_only(CREATED, bid, 1, start)
    deliver(RESCHEDULED, bid, 2, _slot(4, 9))
    [confirmation] = outbox(bid)
    claimed = outbox_ops.claim(confirmation.id)  # type: ignore[arg-type]
    assert not isinstance(claimed, str) and confirmation.booking_revision == 2


def test_a_due_reminder_waits_for_a_newer_event_to_be_applied(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_QUIET_HOURS", "")  # whatever the hour this runs at, only the new event holds it
    get_settings.cache_clear()
    bid, start = str(uuid.uuid4()), _slot(3, 9)
    deliver(CREATED, bid, 1, start)
    mark_all_sent()
    with session_scope() as session:
        reminder = session.exec(select(OutboundMessage).where(OutboundMessage.kind == "reminder")).first()
        assert reminder is not None
        reminder.status, reminder.send_after = MessageStatus.PENDING, datetime.now(UTC)
        session.add(reminder)
    stored_only(UPDATED, bid, 2, start)
    assert outbox_ops.claim(reminder.id) == "deferred"  # type: ignore[arg-type]
    get_settings.cache_clear()


def test_events_for_one_booking_are_applied_one_at_a_time(db: str) -> None:
    """Another intake is mid-way through applying revision 3 (it holds the booking's lock and has written
    the row) when revision 2 comes to be applied: it waits, then finds itself stale, rather than reading
    revision 1 and overwriting revision 3 once the row is free."""
    if get_engine().dialect.name != "postgresql":
        pytest.skip("SQLite transactions are serial: the write lock already makes them one at a time")
    bid, start = str(uuid.uuid4()), _slot(3, 9)
    deliver(CREATED, bid, 1, start)
    mark_all_sent()
    moved = stored_only(RESCHEDULED, bid, 2, _slot(4, 9))
    with Session(get_engine()) as other:
        lock_keys(other, [f"booking:{bid}"])
        row = other.exec(select(Booking).where(Booking.wix_booking_id == bid)).one()
        row.revision, row.status = 3, "CANCELED"
        other.add(row)
        other.flush()
        applying = start_until_blocked(lambda: apply_event(moved), "the booking's lock")
        other.commit()
    applying.finish()
    saved = booking_row(bid)
    assert (saved.revision, saved.status, saved.start_at) == (3, "CANCELED", start)
    assert [m.kind for m in outbox(bid)] == ["confirmation"]
