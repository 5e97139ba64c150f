"""A connected Google Workspace account, end to end: a signed Wix booking posted to the gateway runs the
served `booking-intake` deployment, which texts the patient, emails them through Gmail and puts the booking
in the clinic calendar (fake Google over real HTTP); a cancellation removes the event and emails again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC

import httpx
import pytest
from prefect.deployments import run_deployment
from sqlmodel import select

from models import Contact, MessageStatus, session_scope
from providers.google_calendar import event_id_for
from tests.fakes.google import FakeGoogle
from tests.google_env import connect, disconnect_all
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    TERMINAL,
    booking,
    flow_run_state,
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


def test_the_served_contacts_import_creates_contacts_and_shows_what_changed(
    rig: Rig, google: FakeGoogle
) -> None:
    google.add_person("Priya", "Shah", emails=["priya@example.com"], phones=["0412 000 111"])
    google.add_person("Tom", None, phones=["+61 7 3000 1234"])

    async def start() -> str:
        run = await run_deployment("google-contacts-import/google-contacts-import", parameters={}, timeout=0)
        return str(run.id)

    run_id = asyncio.run(start())
    wait_until(lambda: flow_run_state(run_id) in TERMINAL, timeout=120)
    assert flow_run_state(run_id) == "COMPLETED"

    with session_scope() as session:
        contacts = {c.first_name: c for c in session.exec(select(Contact)).all()}
    assert contacts["Priya"].email == "priya@example.com" and contacts["Priya"].phone == "+61412000111"
    assert contacts["Tom"].phone == "+61730001234"

    response = httpx.post(
        f"{rig.prefect_api_url}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run_id]}}},
        timeout=10,
    )
    [artifact] = response.json()  # everything the run left readable through Prefect's API
    assert artifact["key"] == "google-contacts-import"
    table = json.loads(artifact["data"])
    assert sorted(row["contact_id"] for row in table) == sorted(c.id for c in contacts.values())
    assert all(set(row) == {"action", "contact_id", "fields"} for row in table)
    shown = artifact["data"] + (artifact["description"] or "")
    for detail in ("Priya", "Shah", "Tom", "priya", "example.com", "…", "+61", "412000111", "30001234"):
        assert detail not in shown, detail
