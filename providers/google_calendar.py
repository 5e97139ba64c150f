"""The clinic calendar's copy of each booking: one Google Calendar event per Wix booking, never two.

The event id is derived from the Wix booking id (Calendar lets the client choose it: base32hex characters
a-v and 0-9, 5-1024 long), so every create, retry and replay aims at the same event: an insert of an id that
exists answers 409 and becomes a patch; a cancelled booking deletes its event, and a booking revived later
patches the deleted (status `cancelled`) event back to `confirmed`. Nobody is emailed by Google
(`sendUpdates=none`): patients hear from the clinic's own messages.

The event holds only what staff need to see in the calendar: service, patient's name, location, time. No
phone number or email address: calendars are shared more widely than the CRM.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from googleapiclient.discovery import Resource

from providers.google_api import GooglePermanentError, error_status, execute

# A fixed namespace makes the id a pure function of the Wix booking id, on every machine, forever.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://avatar-crm/calendar-events")
DEFAULT_DURATION = timedelta(minutes=30)  # when Wix sends no end time
SEND_UPDATES = "none"


def event_id_for(wix_booking_id: str) -> str:
    """32 lowercase hex characters (hex is a subset of base32hex), the same for the same booking."""
    if not wix_booking_id:
        raise ValueError("a Wix booking id is required")
    return uuid.uuid5(_NAMESPACE, wix_booking_id).hex


@dataclass(frozen=True)
class CalendarBooking:
    """What the calendar event is made of (deliberately no contact details)."""

    wix_booking_id: str
    crm_booking_id: int
    start_at: datetime
    timezone: str
    end_at: datetime | None = None
    wix_instance_id: str | None = None
    service: str | None = None
    patient_name: str | None = None
    location: str | None = None
    tentative: bool = False  # a request the clinic has not accepted yet (Wix PENDING)


def event_body(booking: CalendarBooking) -> dict[str, Any]:
    """The event resource: summary "service - patient", location, zoned start/end, Wix ids kept private."""
    service = booking.service or "Appointment"
    summary = f"{service} - {booking.patient_name}" if booking.patient_name else service
    if booking.tentative:
        summary = f"[Requested] {summary}"
    end_at = booking.end_at if booking.end_at and booking.end_at > booking.start_at else None
    end_at = end_at or booking.start_at + DEFAULT_DURATION
    body: dict[str, Any] = {
        "summary": summary,
        "description": (
            f"{service} booked through Wix.\n"
            f"Wix booking {booking.wix_booking_id} (CRM booking #{booking.crm_booking_id}).\n"
            "Patient contact details are in the CRM."
        ),
        "start": {"dateTime": booking.start_at.isoformat(), "timeZone": booking.timezone},
        "end": {"dateTime": end_at.isoformat(), "timeZone": booking.timezone},
        "status": "tentative" if booking.tentative else "confirmed",
        "extendedProperties": {
            "private": {
                "wix_booking_id": booking.wix_booking_id,
                "wix_instance_id": booking.wix_instance_id or "",
                "crm_booking_id": str(booking.crm_booking_id),
            }
        },
    }
    if booking.location:
        body["location"] = booking.location
    return body


def upsert_event(service: Resource, calendar_id: str, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create the event with our id, or bring the existing one (even a deleted one) up to `body`."""
    events = service.events()
    try:
        return execute(
            events.insert(calendarId=calendar_id, body={**body, "id": event_id}, sendUpdates=SEND_UPDATES)
        )
    except GooglePermanentError as exc:
        if error_status(exc) != 409:
            raise
    # The id exists (a retry, a replay, a reschedule, or a deleted event): patch it to the booking's state.
    # `body` carries `status`, so a cancelled event comes back confirmed.
    return execute(
        events.patch(calendarId=calendar_id, eventId=event_id, body=body, sendUpdates=SEND_UPDATES)
    )


def delete_event(service: Resource, calendar_id: str, event_id: str) -> bool:
    """Delete the event; True if it was there, False if it was already gone (404/410), which is success."""
    try:
        execute(service.events().delete(calendarId=calendar_id, eventId=event_id, sendUpdates=SEND_UPDATES))
    except GooglePermanentError as exc:
        if error_status(exc) in {404, 410}:
            return False
        raise
    return True
