"""A connected Google Workspace account, end to end: a signed Wix booking posted to the gateway runs the
served `booking-intake` deployment, which texts the patient, emails them through Gmail and puts the booking
in the clinic calendar (fake Google over real HTTP); a cancellation removes the event and emails again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC

import pytest

from models import MessageStatus
from providers.google_calendar import event_id_for
from tests.fakes.google import FakeGoogle
from tests.google_env import connect, disconnect_all
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    booking,
    local_slot,
    messages,
    new_booking_id,
    post_wix,
    signed_event,
    spoken,
    wait_processed,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]


@pytest.fixture
def google(rig: Rig, sms: object) -> Iterator[FakeGoogle]:
    """The clinic's Google account connected (the rig's fake Google was emptied by the `sms` fixture)."""
    connect(rig.google)
    yield rig.google
    disconnect_all()


def test_a_booking_reaches_the_patients_inbox_and_the_clinic_calendar(
    rig: Rig, google: FakeGoogle, gateway_url: str
) -> None:
    booking_id = new_booking_id()
    start = local_slot(days_ahead=6, hour=11)
    post_wix(
        gateway_url,
        signed_event(rig.wix_keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, start)),
    )
    wait_processed(1)

    [sms] = rig.sms.sent
    assert sms["to"] == "+61412345678"
    [email] = google.sent_emails
    assert email["to"] == "Alex Nguyen <alex@example.com>"
    assert email["subject"] == f"Your MRI – Knee is booked for {spoken(start, '11:00am')} - Avatar Imaging"
    assert spoken(start, "11:00am") in email["text"] and "Bondi Junction" in email["text"]
    assert "https://crm.example.test/t/o/" in email["html"]  # the open pixel, served by our gateway
    [row] = messages(booking_id, channel="email")
    assert row.status == MessageStatus.SENT and row.provider_message_id == email["id"]

    event = wait_until(lambda: google.calendar_events("primary").get(event_id_for(booking_id)))
    assert event["summary"] == "MRI – Knee - Alex Nguyen"
    assert event["start"]["dateTime"] == start.astimezone(UTC).isoformat()
    assert event["extendedProperties"]["private"]["wix_booking_id"] == booking_id
    assert "alex@example.com" not in json.dumps(event) and "412345678" not in json.dumps(event)

    cancelled = booking(booking_id, 2, start, status="CANCELED")
    post_wix(gateway_url, signed_event(rig.wix_keys, "wix.bookings.v2.booking_canceled", cancelled))
    wait_processed(2)
    wait_until(lambda: google.calendar_events("primary")[event_id_for(booking_id)]["status"] == "cancelled")
    assert len(google.calendar_events("primary")) == 1  # one event per booking, ever
    assert [e["subject"] for e in google.sent_emails][1] == (
        f"Your MRI – Knee on {spoken(start, '11:00am')} is cancelled - Avatar Imaging"
    )
    assert len(rig.sms.sent) == 2 and len(google.sent_emails) == 2
