"""`avatar-crm demo`: show a new user the whole path with nothing configured.

Posts a booking's life — created, rescheduled, cancelled — to the running gateway, signed exactly as Wix
signs (with the demo key `make up` generated) or, when only `WIX_WEBHOOK_SECRET` is set, in the simple
HMAC-signed JSON format. Then it waits for the flows and prints what the CRM and the outbox hold.
The patient is fictional: 0491 570 156 is a number ACMA reserves for drama and examples.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlmodel import select

from deployments.stack import DEMO_PRIVATE_KEY
from messaging.contacts import mask_phone
from messaging.email_wording import EmailContent
from models import (
    Booking,
    Channel,
    Contact,
    InboxStatus,
    OutboundMessage,
    WebhookEvent,
    get_settings,
    session_scope,
)
from providers import wix_simulator

DEMO_PHONE = "0491 570 156"


def _slot(days: int, hour: int, minute: int = 0) -> datetime:
    zone = ZoneInfo(get_settings().clinic_timezone)
    day = (datetime.now(zone) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


def _signed_bodies(booking_id: str) -> list[tuple[str, bytes, dict[str, str]]]:
    settings = get_settings()
    first, moved = _slot(2, 9), _slot(3, 14, 30)
    steps = [
        ("created", "wix.bookings.v2.booking_created", 1, first, "CONFIRMED"),
        ("rescheduled", "wix.bookings.v2.booking_rescheduled", 2, moved, "CONFIRMED"),
        ("cancelled", "wix.bookings.v2.booking_canceled", 3, moved, "CANCELED"),
    ]
    key_file = settings.crm_data_dir / DEMO_PRIVATE_KEY
    if key_file.exists():
        keys = wix_simulator.WixKeys.from_private_pem(key_file.read_bytes())
        bodies = []
        for label, event_type, revision, start, status in steps:
            booking = wix_simulator.booking_payload(
                booking_id=booking_id,
                revision=revision,
                status=status,
                start=start,
                phone=DEMO_PHONE,
                email="demo.patient@example.com",
                first_name="Sam",
                last_name="Demo",
                timezone=settings.clinic_timezone,
            )
            inner = wix_simulator.wix_event(
                event_type, booking, previous_start=first if revision == 2 else None
            )
            bodies.append(
                (label, wix_simulator.sign_wix_jwt(keys, inner, event_type), {"Content-Type": "text/plain"})
            )
        return bodies
    if settings.wix_webhook_secret is not None:
        secret = settings.wix_webhook_secret.get_secret_value().encode()
        simple = [
            ("created", "bookings/created"),
            ("rescheduled", "bookings/updated"),
            ("cancelled", "bookings/cancelled"),
        ]
        bodies = []
        for (label, event), (_, _, revision, start, _) in zip(simple, steps, strict=True):
            body = wix_simulator.simple_event(
                event, booking_id, start=start, phone=DEMO_PHONE, revision=revision
            )
            bodies.append((label, body, {"X-Wix-Webhook-Signature": wix_simulator.sign_hmac(body, secret)}))
        return bodies
    raise SystemExit(
        "no demo key in the data directory and no WIX_WEBHOOK_SECRET: start the system with `make up`"
    )


def run_demo(gateway_url: str | None, timeout: float, allow_real_sms: bool = False) -> int:
    settings = get_settings()
    if settings.sms_provider != "sandbox" and not allow_real_sms:
        print(
            "SMS_PROVIDER is mobilemessage: the demo would text a real provider. Re-run with --send-real-sms."
        )
        return 2
    gateway_url = gateway_url or f"http://{settings.gateway_host}:{settings.gateway_port}"
    booking_id = str(uuid.uuid4())
    event_ids: list[int] = []
    print(f"Demo booking {booking_id}")
    for label, body, headers in _signed_bodies(booking_id):
        response = httpx.post(
            f"{gateway_url}/webhooks/wix/bookings", content=body, headers=headers, timeout=10
        )
        print(f"  POST {label:<12} → {response.status_code} {response.text}")
        if response.status_code != 200:
            return 1
        event_ids.append(response.json()["event_id"])
        time.sleep(1.5)  # let each step be applied in order, as a patient's changes would be

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            rows = session.exec(select(WebhookEvent).where(WebhookEvent.id.in_(event_ids))).all()  # type: ignore[union-attr]
            if all(r.status in {InboxStatus.PROCESSED, InboxStatus.FAILED} for r in rows) and len(rows) == 3:
                break
        time.sleep(0.5)
    else:
        print(f"The flows did not finish within {timeout:.0f}s; see the Prefect UI.")
    _print_state(booking_id, event_ids)
    return 0


def _summary(message: OutboundMessage) -> str:
    """What a person reads of a message: an SMS's text; an email's subject (its HTML is for the inbox)."""
    if message.channel != Channel.EMAIL:
        return message.body
    try:
        email = EmailContent.from_json(message.body)
    except ValueError:
        return "(not a rendered email)"
    return f"subject: {email.subject} ({len(email.text.splitlines())} lines of text, and HTML)"


def _print_state(booking_id: str, event_ids: list[int]) -> None:
    settings = get_settings()
    with session_scope() as session:
        booking = session.exec(select(Booking).where(Booking.wix_booking_id == booking_id)).first()
        contact = session.get(Contact, booking.contact_id) if booking and booking.contact_id else None
        events = session.exec(select(WebhookEvent).where(WebhookEvent.id.in_(event_ids))).all()  # type: ignore[union-attr]
        messages = session.exec(
            select(OutboundMessage).where(OutboundMessage.booking_id == (booking.id if booking else -1))
        ).all()
        print("\nInbox:")
        for event in events:
            print(f"  #{event.id} {event.event_type:<38} {event.status:<10} flow run {event.flow_run_id}")
        if contact:
            phone = mask_phone(contact.phone)
            print(f"\nContact #{contact.id}: {contact.display_name}, phone {phone} (encrypted at rest)")
        if booking:
            print(
                f"Booking: {booking.status} revision {booking.revision}, {booking.service_name}, "
                f"{booking.start_at:%Y-%m-%d %H:%M} UTC"
            )
        print("\nOutbox:")
        for message in messages:
            print(f"  [{message.status:<9}] {message.kind:<12} {message.channel:<5} {_summary(message)}")
    prefect_ui = f"http://127.0.0.1:{settings.prefect_port}"
    print(f"\nSee the runs in the Prefect UI: {prefect_ui}/runs (flow `booking-intake`).")
