"""Booking emails through Gmail: a proper MIME message (checked by parsing what was sent), queued by booking
intake through the outbox, sent once, delayed (never lost) by an outage or a missing connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from googleapiclient.http import HttpMockSequence
from sqlmodel import select

from flows.tasks.email import compose
from flows.tasks.send import send_due, send_message
from messaging.consent import ConsentSource, withdraw
from messaging.email_wording import (
    ClinicIdentity,
    EmailContent,
    add_tracking,
    render_booking_email,
    render_staff_email,
)
from messaging.outbox import ClaimedMessage
from messaging.replies import apply_reply
from messaging.sms_classifier import classify
from messaging.sms_wording import BookingFacts
from models import (
    AuditLog,
    Booking,
    Campaign,
    Channel,
    ConsentOrigin,
    Contact,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    get_settings,
    session_scope,
)
from providers import gmail
from providers.google_api import build_service
from providers.tracking_tokens import verify
from providers.wix_simulator import WixKeys
from tests.fakes.google import FakeGoogle
from tests.fakes.mobilemessage import inbound_payload
from tests.google_env import connect, disconnect_all, fake_google_fixture, google_fixture  # noqa: F401
from tests.inbox_events import apply_wix, store_event

KEYS = WixKeys()
BRISBANE = ZoneInfo("Australia/Brisbane")
ADDRESS = "1 Example St, Brisbane QLD 4000"
CLINIC = ClinicIdentity("Avatar Imaging", "07 3000 0000", ADDRESS, "hello@avatar.test")
FACTS = BookingFacts(
    first_name="Zoë",
    service="MRI – Knee",
    location="Bondi Junction & Co",
    start_at=datetime(2031, 3, 4, 23, 0, tzinfo=UTC),
    timezone="Australia/Brisbane",
    clinic_name="Avatar Imaging",
    clinic_phone="07 3000 0000",
)


def _parse(raw: bytes):  # type: ignore[no-untyped-def]
    return BytesParser(policy=policy.default).parsebytes(raw)


def _outgoing(**overrides: object) -> gmail.OutgoingEmail:
    content = render_booking_email(MessageKind.CONFIRMATION, FACTS, CLINIC, to_name="Zoë Ångström-Nguyễn")
    values: dict[str, object] = {
        "sender": gmail.Mailbox("clinic@avatar.test", "Avatar Imaging – Brisbane"),
        "to": gmail.Mailbox("zoe@example.com", content.to_name),
        "subject": content.subject,
        "text": content.text,
        "html": content.html,
        "key": "booking:b-1:confirmation:rev1:email",
        "reply_to": gmail.Mailbox("hello@avatar.test", "Avatar Imaging"),
    }
    return gmail.OutgoingEmail(**{**values, **overrides})  # type: ignore[arg-type]


# --- the message ------------------------------------------------------------------------------------


def test_the_mime_message_parses_back_to_what_we_meant() -> None:
    raw = gmail.build_message(_outgoing()).as_bytes()
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii(), "headers must be 7-bit: non-ASCII goes in RFC 2047 encoded words"
    assert b"=?utf-8?" in header_block

    parsed = _parse(raw)
    assert parsed["To"].addresses[0].display_name == "Zoë Ångström-Nguyễn"
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.com"
    assert parsed["From"].addresses[0].display_name == "Avatar Imaging – Brisbane"
    assert parsed["From"].addresses[0].addr_spec == "clinic@avatar.test"
    assert parsed["Reply-To"].addresses[0].addr_spec == "hello@avatar.test"
    assert str(parsed["Subject"]) == "Your MRI – Knee is booked for Wed 5 Mar, 9:00am - Avatar Imaging"
    assert abs(parsedate_to_datetime(str(parsed["Date"])) - datetime.now(UTC)) < timedelta(minutes=1)
    assert str(parsed["Message-ID"]) == gmail.message_id_for(
        "booking:b-1:confirmation:rev1:email", "avatar.test"
    )
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]  # HTML last: preferred
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = parts[0].get_content(), parts[1].get_content()
    assert "Hi Zoë," in text and "Wed 5 Mar, 9:00am" in text and "Bondi Junction & Co" in text
    assert "Bondi Junction &amp; Co" in html and "<p>Hi Zoë,</p>" in html
    for part in (text, html):  # the clinic identifies itself
        assert "Avatar Imaging" in part and "07 3000 0000" in part and ADDRESS in part


def test_the_same_outbox_key_gives_the_same_message_id_and_no_reply_to_self() -> None:
    first = gmail.build_message(_outgoing(reply_to=gmail.Mailbox("CLINIC@avatar.test")))
    second = gmail.build_message(_outgoing())
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Reply-To"] is None
    other = gmail.build_message(_outgoing(key="booking:b-1:confirmation:rev2:email"))
    assert other["Message-ID"] != first["Message-ID"]


def test_an_invalid_address_is_refused_before_sending() -> None:
    with pytest.raises(ValueError):
        gmail.build_message(_outgoing(to=gmail.Mailbox("not-an-address", "X")))


def test_patient_text_is_escaped_in_html() -> None:
    facts = BookingFacts(
        "<script>alert(1)</script>", "<b>MRI</b>", None, FACTS.start_at, FACTS.timezone, "A&B"
    )
    content = render_booking_email(MessageKind.CANCELLATION, facts, ClinicIdentity("A&B"))
    assert "<script>" not in content.html and "&lt;script&gt;" in content.html
    assert "<b>MRI</b>" not in content.html and "A&amp;B" in content.html
    assert "<script>alert(1)</script>" in content.text  # plain text is plain


def test_every_booking_kind_has_wording() -> None:
    for kind in (
        MessageKind.CONFIRMATION,
        MessageKind.REQUEST_RECEIVED,
        MessageKind.RESCHEDULE,
        MessageKind.CANCELLATION,
        MessageKind.DECLINED,
    ):
        content = render_booking_email(kind, FACTS, CLINIC)
        assert "MRI – Knee" in content.subject and "Avatar Imaging" in content.subject
        # The plain-text part names the same appointment as the HTML part, location and map included.
        block = "  MRI – Knee\n  {when}\n  Bondi Junction & Co\n  Map: {map}\n\n".format(
            when=content.text.split("  MRI – Knee\n  ", 1)[1].split("\n", 1)[0],
            map="https://www.google.com/maps/search/?api=1&query=Bondi+Junction+%26+Co",
        )
        assert block in content.text, kind
        assert "Bondi Junction &amp; Co" in content.html
        assert EmailContent.from_json(content.to_json()) == content


def test_tracking_rewrites_web_links_and_adds_one_pixel() -> None:
    content = render_booking_email(MessageKind.CONFIRMATION, FACTS, CLINIC)
    tracked = add_tracking(content.html, 42, "https://crm.example.test/")

    assert "https://www.google.com/maps" not in tracked, "the map link goes through the redirect"
    assert 'href="tel:0730000000"' in tracked and 'href="mailto:hello@avatar.test"' in tracked
    [click] = [t for t in tracked.split('href="https://crm.example.test/t/c/')[1:]]
    claim = verify(click.split('"', 1)[0], "click")
    assert claim is not None and claim.message_id == 42
    assert claim.url == "https://www.google.com/maps/search/?api=1&query=Bondi+Junction+%26+Co"  # unescaped
    assert tracked.count('src="https://crm.example.test/t/o/') == 1
    assert tracked.index("/t/o/") < tracked.index("</body>")
    pixel = tracked.split("/t/o/", 1)[1].split('"', 1)[0]
    assert verify(pixel, "open") is not None and verify(pixel, "open").message_id == 42  # type: ignore[union-attr]


def test_gmail_send_posts_the_raw_message_as_base64url(google_default_urls: None) -> None:
    mock = HttpMockSequence(
        [({"status": "200"}, json.dumps({"id": "m1", "threadId": "t1", "labelIds": ["SENT"]}))]
    )
    message = gmail.build_message(_outgoing())
    result = gmail.send(build_service("gmail", http=mock), message)

    assert result["id"] == "m1"
    [(uri, method, body, _)] = mock.request_sequence
    assert method == "POST" and uri.startswith("https://gmail.googleapis.com/gmail/v1/users/me/messages/send")
    raw = json.loads(body)["raw"]
    assert "+" not in raw and "/" not in raw  # base64url
    assert base64.urlsafe_b64decode(raw) == message.as_bytes()


# --- booking intake → outbox → Gmail (the fake) -------------------------------------------------------


def _slot(days: int, hour: int) -> datetime:
    day = (datetime.now(BRISBANE) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=BRISBANE)


def _emails(wix_id: str | None = None) -> list[OutboundMessage]:
    with session_scope() as session:
        query = select(OutboundMessage).where(OutboundMessage.channel == Channel.EMAIL)
        if wix_id:
            query = query.where(OutboundMessage.idempotency_key.startswith(f"booking:{wix_id}:"))  # type: ignore[attr-defined]
        return list(session.exec(query.order_by(OutboundMessage.id)).all())  # type: ignore[arg-type]


def _send(message_id: int) -> str:
    return asyncio.run(send_message.fn(message_id))


def _reload(message_id: int) -> OutboundMessage:
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        session.expunge(message)
        return message


@pytest.mark.db
def test_booking_intake_queues_the_email_and_it_is_sent_once(google: FakeGoogle) -> None:
    wix_id = str(uuid.uuid4())
    start = _slot(3, 9)
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, start, first_name="Zoë")
    apply_wix(KEYS, "wix.bookings.v2.booking_updated", wix_id, 1, start)  # a replay: nothing new

    [email] = _emails(wix_id)
    assert email.idempotency_key == f"booking:{wix_id}:confirmation:rev1:email"
    assert (email.kind, email.purpose, email.recipient) == (
        MessageKind.CONFIRMATION,
        Purpose.TRANSACTIONAL,
        "alex@example.com",
    )
    assert email.deadline == start and email.booking_revision == 1
    assert EmailContent.from_json(email.body).to_name == "Zoë Nguyen"

    assert _send(email.id) == MessageStatus.SENT  # type: ignore[arg-type]
    assert _send(email.id) == MessageStatus.SENT  # a retried task finds it sent and sends nothing
    [sent] = google.sent_emails
    message = sent["message"]
    assert message["To"].addresses[0].display_name == "Zoë Nguyen"
    assert message["To"].addresses[0].addr_spec == "alex@example.com"
    assert message["From"].addresses[0].display_name == "Avatar Imaging"
    assert message["From"].addresses[0].addr_spec == google.account_email  # the connected account
    assert "Hi Zoë," in sent["text"] and "https://crm.example.test/t/o/" in sent["html"]
    assert google.requests_to("/token"), "the stored refresh token was used for an access token"
    row = _reload(email.id)  # type: ignore[arg-type]
    assert (row.provider, row.provider_message_id) == ("gmail", sent["id"])


@pytest.mark.db
def test_reschedule_and_cancellation_emails_follow_the_booking(google: FakeGoogle) -> None:
    wix_id = str(uuid.uuid4())

    def sweep() -> dict[int, str]:
        return asyncio.run(send_due.fn(datetime.now(UTC), 1000))  # the sweep sends email too

    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(3, 9))
    sweep()
    apply_wix(KEYS, "wix.bookings.v2.booking_rescheduled", wix_id, 2, _slot(4, 10))
    sweep()
    apply_wix(KEYS, "wix.bookings.v2.booking_canceled", wix_id, 3, _slot(4, 10), status="CANCELED")
    sweep()

    emails = _emails(wix_id)
    assert [(e.kind, e.status, e.idempotency_key) for e in emails] == [
        (MessageKind.CONFIRMATION, MessageStatus.SENT, f"booking:{wix_id}:confirmation:rev1:email"),
        (MessageKind.RESCHEDULE, MessageStatus.SENT, f"booking:{wix_id}:reschedule:rev2:email"),
        (MessageKind.CANCELLATION, MessageStatus.SENT, f"booking:{wix_id}:cancellation:rev3:email"),
    ]
    subjects = [m["subject"] for m in google.sent_emails]
    assert subjects == [EmailContent.from_json(e.body).subject for e in emails]
    assert "is booked for" in subjects[0] and "has moved to" in subjects[1] and "is cancelled" in subjects[2]
    assert sweep() == {}  # nothing twice


@pytest.mark.db
def test_no_email_when_none_is_known_or_it_is_suppressed(google: FakeGoogle) -> None:
    no_address = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", no_address, 1, _slot(3, 9), email=None)
    assert _emails(no_address) == []

    with session_scope() as session:
        booking = session.exec(select(Booking).where(Booking.wix_booking_id == no_address)).one()
        contact = session.get(Contact, booking.contact_id)  # the patient of that booking, not any contact
        contact.email = "bounced@example.com"  # type: ignore[union-attr]
        session.add(contact)
        session.flush()
        withdraw(
            session,
            phone=None,
            contact=contact,
            scopes=[(Channel.EMAIL, Purpose.TRANSACTIONAL)],
            why=ConsentSource("sendgrid_bounce", "test", origin=ConsentOrigin.PROVIDER),
        )
    suppressed = str(uuid.uuid4())
    apply_wix(
        KEYS, "wix.bookings.v2.booking_created", suppressed, 1, _slot(3, 10), email="bounced@example.com"
    )
    assert _emails(suppressed) == []
    with session_scope() as session:
        reasons = [
            a.detail.get("reason") for a in session.exec(select(AuditLog)) if a.action == "message.skipped"
        ]
    assert "no email address" in reasons and "email suppressed (sendgrid_bounce)" in reasons


@pytest.mark.db
def test_an_outage_or_a_missing_connection_delays_the_email(google: FakeGoogle) -> None:
    wix_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(3, 9))
    [email] = _emails(wix_id)
    email_id = email.id
    assert email_id is not None

    google.fail("/gmail", times=1, status=503)
    assert _send(email_id) == MessageStatus.PENDING
    delayed = _reload(email_id)
    assert delayed.send_after > datetime.now(UTC) and "503" in (delayed.last_error or "")

    disconnect_all()
    _make_due(email_id)
    assert _send(email_id) == MessageStatus.PENDING
    assert "GoogleNotConnected" in (_reload(email_id).last_error or "")
    assert google.sent_emails == []

    connect(google)
    _make_due(email_id)
    assert _send(email_id) == MessageStatus.SENT
    assert len(google.sent_emails) == 1


@pytest.mark.db
def test_google_refusing_the_message_fails_it(google: FakeGoogle) -> None:
    wix_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(3, 9))
    [email] = _emails(wix_id)
    google.fail("/gmail", times=1, status=400)
    assert _send(email.id) == MessageStatus.FAILED  # type: ignore[arg-type]
    assert "400" in (_reload(email.id).last_error or "")  # type: ignore[arg-type]


@pytest.mark.db
def test_without_google_configured_email_is_sandboxed(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET")
    get_settings.cache_clear()
    wix_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(3, 9))
    [email] = _emails(wix_id)
    assert _send(email.id) == MessageStatus.SANDBOXED  # type: ignore[arg-type]
    assert google.requests == []


def test_staff_emails_are_not_tracked() -> None:
    content = render_staff_email(
        "**cancel requested** - contact #3, booking b-1", CLINIC, reference="staff:9:email"
    )
    claimed = ClaimedMessage(9, "staff:9:email", Channel.EMAIL, "desk@avatar.test", content.to_json())
    outgoing = compose(claimed, "clinic@avatar.test")
    assert "/t/o/" not in outgoing.html and "cancel requested - contact #3" in outgoing.text
    assert outgoing.subject.startswith("[Avatar Imaging] Staff action needed: cancel requested")


def _make_due(message_id: int) -> None:
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        message.send_after = datetime.now(UTC) - timedelta(seconds=1)
        session.add(message)


@pytest.mark.db
def test_staff_notices_also_go_to_the_staff_address_by_email(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAFF_NOTIFICATION_EMAIL", "front-desk@avatar.test")
    get_settings.cache_clear()
    wix_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(3, 9))
    body = json.dumps(inbound_payload("N", sender="61412345678")).encode()
    event_id = store_event("mobilemessage", body, "sms.inbound")

    outcome = apply_reply(event_id, classify("N"))
    with session_scope() as session:
        staff = session.exec(
            select(OutboundMessage).where(OutboundMessage.idempotency_key == f"staff:{event_id}:email")
        ).one()
    assert staff.id in outcome.to_send
    assert (staff.channel, staff.kind, staff.recipient) == (
        Channel.EMAIL,
        MessageKind.STAFF_NOTIFICATION,
        "front-desk@avatar.test",
    )
    apply_reply(event_id, classify("N"))  # a retried triage queues nothing twice

    assert _send(staff.id) == MessageStatus.SENT  # type: ignore[arg-type]
    [sent] = google.sent_emails
    assert sent["message"]["To"].addresses[0].addr_spec == "front-desk@avatar.test"
    assert "cancel requested" in sent["subject"] and wix_id in sent["text"]
    assert "412345678" not in sent["text"] and "/t/o/" not in sent["html"]  # no patient number, not tracked


@pytest.mark.db
def test_the_sweep_never_sends_campaign_email_through_gmail(google: FakeGoogle) -> None:
    """Campaign rows belong to the campaign flow (SendGrid, in bulk): `claim_due` leaves them alone."""
    slug = f"spring-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        campaign = Campaign(slug=slug, name="Spring", channel=Channel.EMAIL, spec={})
        session.add(campaign)
        session.flush()
        message = OutboundMessage(
            idempotency_key=f"campaign:{slug}:1",
            channel=Channel.EMAIL,
            purpose=Purpose.MARKETING,
            kind=MessageKind.CAMPAIGN,
            recipient="alex@example.com",
            body="{}",
            campaign_id=campaign.id,
            variant="A",
        )
        session.add(message)
        session.flush()
        message_id, campaign_id = message.id, campaign.id
    try:
        assert message_id not in asyncio.run(send_due.fn(datetime.now(UTC), 1000))
        assert _reload(message_id).status == MessageStatus.PENDING  # type: ignore[arg-type]
        assert google.sent_emails == []
    finally:
        with session_scope() as session:
            session.delete(session.get(OutboundMessage, message_id))
            session.flush()
            session.delete(session.get(Campaign, campaign_id))
