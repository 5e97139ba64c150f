"""SMS triage and delivery receipts applied directly against the real database: what each kind of reply
changes, which booking it is about, what is queued for the patient and for staff; and how receipts for
message parts decide a message's delivery status."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from messaging.delivery_receipts import apply_receipts
from messaging.replies import apply_reply
from messaging.sms_classifier import Classification, Intent, classify
from models import (
    Booking,
    Channel,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    StaffAttention,
    StaffTask,
    StaffTaskKind,
    Suppression,
    WebhookEvent,
    session_scope,
)
from providers.wix_simulator import WixKeys
from tests.fakes.mobilemessage import inbound_payload, receipt_payload
from tests.inbox_events import apply_wix, store_event

pytestmark = pytest.mark.db

KEYS = WixKeys()
BRISBANE = ZoneInfo("Australia/Brisbane")


def _slot(days: int, hour: int) -> datetime:
    day = (datetime.now(BRISBANE) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=BRISBANE)


def book(days: int) -> str:
    booking_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", booking_id, 1, _slot(days, 10))
    return booking_id


def receive(text: str, *, sender: str = "61412345678", **fields: object) -> tuple[int, list[OutboundMessage]]:
    """Store an inbound SMS, triage it with the rules classifier; returns the event id and what it queued."""
    body = json.dumps(inbound_payload(text, sender=sender, **fields)).encode()  # type: ignore[arg-type]
    event_id = store_event("mobilemessage", body, "sms.inbound")
    apply_reply(event_id, classify(text))
    return event_id, queued_for(event_id)


def queued_for(event_id: int) -> list[OutboundMessage]:
    """What a reply queued: the answer to the patient first, then any staff notice."""
    keys = [f"sms-reply:{event_id}", f"staff:{event_id}"]
    with session_scope() as session:
        query = select(OutboundMessage).where(OutboundMessage.idempotency_key.in_(keys))  # type: ignore[attr-defined]
        rows = session.exec(query).all()
    return sorted(rows, key=lambda m: m.channel != Channel.SMS)


def booking(booking_id: str) -> Booking:
    with session_scope() as session:
        return session.exec(select(Booking).where(Booking.wix_booking_id == booking_id)).one()


def suppressions() -> set[tuple[str, str]]:
    with session_scope() as session:
        return {(s.channel, s.purpose) for s in session.exec(select(Suppression)).all()}


def test_a_reply_is_about_the_booking_our_message_named_not_just_the_next_one(db: str) -> None:
    sooner, later = book(3), book(6)
    with session_scope() as session:
        later_confirmation = session.exec(
            select(OutboundMessage.id)
            .join(Booking, Booking.id == OutboundMessage.booking_id)
            .where(
                Booking.wix_booking_id == later,
                OutboundMessage.kind == MessageKind.CONFIRMATION,
                OutboundMessage.channel == Channel.SMS,
            )
        ).one()
    receive("Y", original_custom_ref=f"msg:{later_confirmation}")
    assert booking(later).patient_confirmed_at is not None
    assert booking(sooner).patient_confirmed_at is None
    receive("yes thanks")  # no reference: the next upcoming booking
    assert booking(sooner).patient_confirmed_at is not None


def test_cancel_flags_the_booking_for_staff_and_leaves_it_booked(db: str) -> None:
    bid = book(3)
    event_id, [reply, notice] = receive("N")
    assert booking(bid).staff_attention == StaffAttention.CANCEL_REQUESTED
    assert booking(bid).status == "CONFIRMED"
    assert reply.channel == Channel.SMS and "will contact you shortly to cancel" in reply.body
    assert notice.channel == Channel.OPS and bid in notice.body and "+61" not in notice.body
    with session_scope() as session:
        assert session.get(WebhookEvent, event_id).status == InboxStatus.PROCESSED  # type: ignore[union-attr]


def test_a_reply_the_rules_are_unsure_of_goes_to_staff_never_guessed(db: str) -> None:
    bid = book(3)
    unsure = Classification("yes but can I change the time?", Intent.RESCHEDULE, 0.6)
    body = json.dumps(inbound_payload(unsure.text)).encode()
    event_id = store_event("mobilemessage", body, "sms.inbound")
    apply_reply(event_id, unsure)
    reply, notice = queued_for(event_id)
    assert booking(bid).staff_attention == StaffAttention.REPLY_NEEDS_REVIEW
    assert "team will get back to you" in reply.body and notice.kind == MessageKind.STAFF_NOTIFICATION


def test_the_providers_unsubscribe_suppresses_without_a_confirmation_and_start_lifts_sms(db: str) -> None:
    book(3)
    body = json.dumps(inbound_payload("", kind="unsubscribe")).encode()
    event_id = store_event("mobilemessage", body, "sms.unsubscribe")
    apply_reply(event_id, Classification("", Intent.OPT_OUT, 1.0, "provider"))
    assert suppressions() == {("sms", "transactional"), ("sms", "marketing"), ("email", "marketing")}
    assert queued_for(event_id) == []  # MobileMessage confirmed it; a text from us would be blocked anyway

    _, [reply] = receive("START")
    assert suppressions() == {("email", "marketing")}
    assert "subscribed to SMS from us again" in reply.body


def test_stop_from_a_number_we_do_not_know_is_still_honoured(db: str) -> None:
    _, [confirmation] = receive("STOP", sender="61498765432")
    assert suppressions() == {("sms", "transactional"), ("sms", "marketing")}  # no email known for it
    assert confirmation.kind == MessageKind.OPT_OUT_CONFIRMATION and confirmation.recipient == "+61498765432"


def test_a_staff_notice_about_a_number_we_do_not_know_shows_none_of_it(db: str) -> None:
    """Staff notices become Prefect artifacts, readable through its API: not even a masked number."""
    event_id, [_reply, notice] = receive("can I move my appointment?", sender="61498765432")
    assert notice.channel == Channel.OPS and "a number we do not know" in notice.body
    assert "+61" not in notice.body and "432" not in notice.body and str(event_id) in notice.body


def test_help_answers_with_the_clinics_name(db: str) -> None:
    _, [reply] = receive("help")
    assert reply.body.startswith("Avatar Imaging appointment messages")


def _sent_message(provider_id: str) -> int:
    with session_scope() as session:
        message = OutboundMessage(
            idempotency_key=f"k-{provider_id}",
            channel=Channel.SMS,
            purpose="transactional",
            kind=MessageKind.REMINDER,
            recipient="+61412345678",
            body="Hi",
            status=MessageStatus.SENT,
            provider_message_id=provider_id,
        )
        session.add(message)
        session.flush()
        return message.id  # type: ignore[return-value]


def _receipt(provider_id: str, status: str, part: int, total: int) -> int:
    at = datetime.now(UTC)
    payload = receipt_payload(provider_id, status, part_number=part, total_parts=total, received_at=at)
    return store_event("mobilemessage-status", json.dumps(payload).encode(), f"sms.status.{status}")


def _status(message_id: int) -> str:
    with session_scope() as session:
        return session.get(OutboundMessage, message_id).status  # type: ignore[union-attr]


def test_a_message_is_delivered_only_when_every_part_is_and_failed_if_any_part_fails(db: str) -> None:
    whole, broken = _sent_message("p-whole"), _sent_message("p-broken")
    apply_receipts([_receipt("p-whole", "delivered", 1, 2)])
    assert _status(whole) == MessageStatus.SENT  # part 2 not yet known
    apply_receipts([_receipt("p-whole", "delivered", 2, 2), _receipt("p-whole", "sent", 1, 2)])
    assert _status(whole) == MessageStatus.DELIVERED  # and a late "sent" does not move it back

    apply_receipts([_receipt("p-broken", "delivered", 1, 2), _receipt("p-broken", "failed", 2, 2)])
    assert _status(broken) == MessageStatus.FAILED
    with session_scope() as session:
        assert "part(s) [2] failed" in (session.get(OutboundMessage, broken).last_error or "")  # type: ignore[union-attr]


def test_a_replayed_receipt_batch_changes_nothing_and_a_malformed_one_fails_alone(db: str) -> None:
    message = _sent_message("p-replay")
    good = _receipt("p-replay", "delivered", 1, 1)
    bad = store_event("mobilemessage-status", b'{"status": "delivered"}', "sms.status.delivered")
    apply_receipts([good, bad])
    apply_receipts([good, bad])
    assert _status(message) == MessageStatus.DELIVERED
    with session_scope() as session:
        rows = {row.id: row.status for row in session.exec(select(WebhookEvent)).all()}
    assert rows == {good: InboxStatus.PROCESSED, bad: InboxStatus.FAILED}


def test_a_retried_triage_still_hands_over_what_the_first_attempt_queued(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task retries after a crash between queueing and sending: the patient's answer and the staff
    notice (SMS, the ops notice and its email copy) must still be sent, once each, not dropped because this
    attempt created nothing new."""
    from models import get_settings

    monkeypatch.setenv("STAFF_NOTIFICATION_EMAIL", "front-desk@avatar-imaging.example")
    get_settings.cache_clear()
    try:
        book(3)
        body = json.dumps(inbound_payload("N")).encode()
        event_id = store_event("mobilemessage", body, "sms.inbound")
        first = apply_reply(event_id, classify("N"))
        again = apply_reply(event_id, classify("N"))
    finally:
        get_settings.cache_clear()
    with session_scope() as session:
        rows = session.exec(select(OutboundMessage).where(OutboundMessage.id.in_(first.to_send))).all()  # type: ignore[union-attr]
    assert sorted(again.to_send) == sorted(first.to_send)
    assert sorted(r.channel for r in rows) == sorted([Channel.SMS, Channel.OPS, Channel.EMAIL])
    assert "queued nothing" in again.summary


def test_an_uncertain_opt_out_is_honoured_and_the_patient_told_the_way_back(db: str) -> None:
    book(3)
    _, [confirmation] = receive("Not interested")
    assert suppressions() == {("sms", "transactional"), ("sms", "marketing"), ("email", "marketing")}
    assert confirmation.kind == MessageKind.OPT_OUT_CONFIRMATION
    assert "we read your message as a request to stop" in confirmation.body
    assert "reply START" in confirmation.body


def test_a_reply_in_chinese_is_answered_in_english_and_chinese(db: str) -> None:
    bid = book(3)
    _, [reply, notice] = receive("取消")  # a short cancel in Chinese
    assert booking(bid).staff_attention == StaffAttention.CANCEL_REQUESTED
    english, chinese = reply.body.split("\n\n")
    assert "will contact you shortly to cancel" in english
    assert chinese.startswith("感谢告知。Avatar Imaging的工作人员会尽快联系您取消预约。")
    assert notice.channel == Channel.OPS


def test_a_spanish_yes_confirms_and_a_language_without_a_template_gets_english(db: str) -> None:
    bid = book(3)
    _, [reply] = receive("Sí")
    assert booking(bid).patient_confirmed_at is not None
    assert "is confirmed" in reply.body and "está confirmada" in reply.body
    _, [stop] = receive("ਮੈਸੇਜ ਨਾ ਭੇਜੋ")  # Punjabi: no template, so English only
    assert stop.kind == MessageKind.OPT_OUT_CONFIRMATION and "\n" not in stop.body


def _tasks() -> list[StaffTask]:
    with session_scope() as session:
        return list(session.exec(select(StaffTask).order_by(StaffTask.id)).all())  # type: ignore[arg-type]


def test_a_request_to_move_opens_one_staff_task_with_the_reply_even_when_retried(db: str) -> None:
    bid = book(2)
    text = "can we move it to Thursday"
    event_id, _ = receive(text)
    apply_reply(event_id, classify(text))  # a retried run
    [task] = _tasks()
    assert task.kind == StaffTaskKind.RESCHEDULE_REQUESTED and task.status == "open"
    assert task.reply_text == text and task.inbox_event_id == event_id
    assert task.booking_id == booking(bid).id and text not in task.summary
    with session_scope() as session:  # the reply is encrypted at rest
        raw = session.connection().exec_driver_sql("SELECT reply_text FROM stafftask").scalar_one()
        assert text.encode() not in bytes(raw)


def test_a_reminder_failing_for_good_opens_a_task_but_a_campaign_message_does_not(db: str) -> None:
    book(3)
    with session_scope() as session:
        contact = session.exec(select(Booking)).first()
        contact_id = contact.contact_id if contact else None
    reminder = _sent_message("p-task")
    with session_scope() as session:
        message = session.get(OutboundMessage, reminder)
        assert message is not None
        message.contact_id = contact_id
        session.add(message)
    apply_receipts([_receipt("p-task", "failed", 1, 1)])
    [task] = _tasks()
    assert (task.kind, task.outbound_message_id, task.contact_id) == (
        StaffTaskKind.MESSAGE_FAILED,
        reminder,
        contact_id,
    )
    marketing = _sent_message("p-campaign")
    with session_scope() as session:
        message = session.get(OutboundMessage, marketing)
        assert message is not None
        message.contact_id, message.purpose, message.kind = contact_id, "marketing", MessageKind.CAMPAIGN
        session.add(message)
    apply_receipts([_receipt("p-campaign", "failed", 1, 1)])
    assert len(_tasks()) == 1
