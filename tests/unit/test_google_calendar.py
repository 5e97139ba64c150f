"""The clinic calendar mirrors bookings: one event per booking whatever is retried or replayed.

The provider functions are checked against google-api-python-client's own `HttpMockSequence` (what request
each makes); the booking lifecycle runs against the fake Google over HTTP: created → rescheduled (patched,
same id, still one event) → cancelled (deleted), replays and retries doubling nothing, and an outage or a
missing connection delaying the calendar until the sweep's catch-up step, never losing a change.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from googleapiclient.http import HttpMockSequence
from sqlmodel import select

from bookings.intake import apply_event
from flows.tasks.calendar import behind_calendar, resync_calendars, sync_booking, sync_calendar
from models import (
    Booking,
    GoogleConnection,
    GoogleConnectionStatus,
    WebhookEvent,
    get_settings,
    session_scope,
)
from models.types import utcnow
from providers import google_api, google_oauth
from providers import google_calendar as gcal
from providers.google_api import (
    SCOPES,
    BatchService,
    GoogleNotConnected,
    GooglePermanentError,
    GoogleTemporaryError,
    build_service,
)
from providers.wix_simulator import WixKeys
from tests.fakes.google import FakeGoogle
from tests.google_env import connect, disconnect_all, fake_google_fixture, google_fixture  # noqa: F401
from tests.inbox_events import apply_wix, store_event

KEYS = WixKeys()
BRISBANE = ZoneInfo("Australia/Brisbane")
BASE32HEX = re.compile(r"^[a-v0-9]{5,1024}$")


def _details(**overrides: Any) -> gcal.CalendarBooking:
    values: dict[str, Any] = {
        "wix_booking_id": "4d5088e6-8d67-4a1a-9e4b-6b5b4a1f0c11",
        "crm_booking_id": 7,
        "start_at": datetime(2031, 3, 4, 23, 0, tzinfo=UTC),
        "end_at": datetime(2031, 3, 4, 23, 45, tzinfo=UTC),
        "timezone": "Australia/Brisbane",
        "wix_instance_id": "inst-1",
        "service": "MRI – Knee",
        "patient_name": "Zoë Nguyen",
        "location": "Bondi Junction",
    }
    return gcal.CalendarBooking(**{**values, **overrides})


def _error(code: int, reason: str) -> str:
    return json.dumps(
        {"error": {"errors": [{"domain": "global", "reason": reason}], "code": code, "message": reason}}
    )


# --- the provider module, request by request ----------------------------------------------------------


def test_event_ids_are_deterministic_base32hex_and_distinct() -> None:
    first = gcal.event_id_for("4d5088e6-8d67-4a1a-9e4b-6b5b4a1f0c11")
    assert first == gcal.event_id_for("4d5088e6-8d67-4a1a-9e4b-6b5b4a1f0c11")
    assert BASE32HEX.match(first)
    assert first != gcal.event_id_for("4d5088e6-8d67-4a1a-9e4b-6b5b4a1f0c12")
    with pytest.raises(ValueError):
        gcal.event_id_for("")


def test_the_event_holds_what_staff_need_and_no_contact_details() -> None:
    body = gcal.event_body(_details())
    assert body["summary"] == "MRI – Knee - Zoë Nguyen"
    assert body["location"] == "Bondi Junction"
    assert body["start"] == {"dateTime": "2031-03-04T23:00:00+00:00", "timeZone": "Australia/Brisbane"}
    assert body["end"]["dateTime"] == "2031-03-04T23:45:00+00:00"
    assert body["status"] == "confirmed"
    assert body["extendedProperties"]["private"] == {
        "wix_booking_id": "4d5088e6-8d67-4a1a-9e4b-6b5b4a1f0c11",
        "wix_instance_id": "inst-1",
        "crm_booking_id": "7",
    }
    assert "attendees" not in body  # nobody is invited (or emailed) by Google
    assert "@" not in json.dumps(body) and "+61" not in json.dumps(body)

    tentative = gcal.event_body(_details(tentative=True, end_at=None, patient_name=None))
    assert tentative["status"] == "tentative" and tentative["summary"] == "[Requested] MRI – Knee"
    assert tentative["end"]["dateTime"] == "2031-03-04T23:30:00+00:00"  # default 30 minutes


def test_upsert_inserts_with_our_id_and_sends_no_invitations(google_default_urls: None) -> None:
    mock = HttpMockSequence([({"status": "200"}, json.dumps({"id": "abc", "status": "confirmed"}))])
    service = build_service("calendar", http=mock)
    event_id = gcal.event_id_for("b-1")
    gcal.upsert_event(service, "primary", event_id, gcal.event_body(_details()))

    [(uri, method, body, _headers)] = mock.request_sequence
    assert method == "POST"
    assert uri.startswith("https://www.googleapis.com/calendar/v3/calendars/primary/events?")
    assert "sendUpdates=none" in uri
    assert json.loads(body)["id"] == event_id


def test_an_existing_id_is_patched_back_to_the_booking_state() -> None:
    mock = HttpMockSequence(
        [
            ({"status": "409"}, _error(409, "duplicate")),
            ({"status": "200"}, json.dumps({"id": "abc", "status": "confirmed"})),
        ]
    )
    event_id = gcal.event_id_for("b-1")
    gcal.upsert_event(
        build_service("calendar", http=mock), "clinic@example.com", event_id, gcal.event_body(_details())
    )

    (_, first, _, _), (uri, method, body, _) = mock.request_sequence
    assert first == "POST" and method == "PATCH"
    assert f"/calendars/clinic%40example.com/events/{event_id}?" in uri and "sendUpdates=none" in uri
    patch = json.loads(body)
    assert patch["status"] == "confirmed" and "id" not in patch  # a deleted event is revived


def test_other_refusals_are_not_mistaken_for_a_conflict() -> None:
    mock = HttpMockSequence([({"status": "403"}, _error(403, "forbidden"))])
    with pytest.raises(GooglePermanentError):
        gcal.upsert_event(
            build_service("calendar", http=mock), "primary", "abcde", gcal.event_body(_details())
        )
    assert len(mock.request_sequence) == 1


@pytest.mark.parametrize(("status", "expected"), [("204", True), ("404", False), ("410", False)])
def test_delete_treats_an_event_already_gone_as_done(status: str, expected: bool) -> None:
    body = "" if status == "204" else _error(int(status), "notFound")
    mock = HttpMockSequence([({"status": status}, body)])
    assert gcal.delete_event(build_service("calendar", http=mock), "primary", "abcde") is expected
    [(uri, method, _, _)] = mock.request_sequence
    assert method == "DELETE" and "/events/abcde?" in uri and "sendUpdates=none" in uri


def test_a_google_outage_is_temporary() -> None:
    mock = HttpMockSequence([({"status": "503"}, _error(503, "backendError"))])
    with pytest.raises(GoogleTemporaryError):
        gcal.delete_event(build_service("calendar", http=mock), "primary", "abcde")


# --- bookings and the fake Google ---------------------------------------------------------------------


def _slot(days: int, hour: int) -> datetime:
    day = (datetime.now(BRISBANE) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=BRISBANE)


def _booking(wix_id: str) -> Booking:
    with session_scope() as session:
        booking = session.exec(select(Booking).where(Booking.wix_booking_id == wix_id)).one()
        session.expunge(booking)
        return booking


def _event(fake: FakeGoogle, wix_id: str) -> dict[str, Any]:
    events = fake.calendar_events("primary")
    assert list(events) == [gcal.event_id_for(wix_id)], "exactly one event for the booking"
    return events[gcal.event_id_for(wix_id)]


@pytest.mark.db
def test_created_rescheduled_cancelled_and_replayed_keep_one_event(google: FakeGoogle) -> None:
    wix_id = str(uuid.uuid4())
    start = _slot(3, 9)
    created = apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, start, first_name="Zoë")
    booking = _booking(wix_id)
    assert booking.calendar_synced_revision is None

    assert "mirrors revision 1" in asyncio.run(sync_calendar.fn(booking.id))
    event = _event(google, wix_id)
    assert event["summary"] == "MRI – Knee - Zoë Nguyen"
    assert event["start"] == {"dateTime": start.astimezone(UTC).isoformat(), "timeZone": "Australia/Brisbane"}
    assert event["extendedProperties"]["private"]["wix_booking_id"] == wix_id
    assert event["extendedProperties"]["private"]["crm_booking_id"] == str(booking.id)
    assert "alex@example.com" not in json.dumps(event) and "412345678" not in json.dumps(event)
    synced = _booking(wix_id)
    assert (synced.calendar_event_id, synced.calendar_synced_revision) == (event["id"], 1)
    assert synced.calendar_synced_at is not None

    # A retry of the same sync (the answer was lost, the task ran again) changes nothing.
    sync_booking(booking.id, force=True)
    assert _event(google, wix_id)["start"] == event["start"]

    new_start = _slot(4, 14)
    apply_wix(KEYS, "wix.bookings.v2.booking_rescheduled", wix_id, 2, new_start)
    asyncio.run(sync_calendar.fn(booking.id))
    moved = _event(google, wix_id)
    assert moved["id"] == event["id"] and moved["start"]["dateTime"] == new_start.astimezone(UTC).isoformat()
    assert google.requests_to("/calendar", "PATCH"), "moved by a patch of the same event"

    # Wix redelivers the old `created` event: stale, nothing to sync, still one event at the new time.
    with session_scope() as session:
        row = session.get(WebhookEvent, created)
        assert row is not None
        body, event_type = row.body, row.event_type
    assert apply_event(store_event("wix", body, event_type)).stale
    assert asyncio.run(sync_calendar.fn(booking.id)) == "up to date"
    assert _event(google, wix_id)["start"]["dateTime"] == new_start.astimezone(UTC).isoformat()

    apply_wix(KEYS, "wix.bookings.v2.booking_canceled", wix_id, 3, new_start, status="CANCELED")
    assert "deleted" in asyncio.run(sync_calendar.fn(booking.id))
    assert _event(google, wix_id)["status"] == "cancelled"
    gone = _booking(wix_id)
    assert (gone.calendar_event_id, gone.calendar_synced_revision) == (None, 3)
    assert "already absent" in sync_booking(booking.id, force=True)  # deleting twice is fine

    # Revived (Wix confirms it again): the deleted event comes back, same id.
    apply_wix(KEYS, "wix.bookings.v2.booking_confirmed", wix_id, 4, new_start)
    asyncio.run(sync_calendar.fn(booking.id))
    assert _event(google, wix_id)["status"] == "confirmed"


@pytest.mark.db
def test_an_outage_delays_the_calendar_and_the_sweep_catches_up(google: FakeGoogle) -> None:
    wix_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(2, 10))
    booking = _booking(wix_id)

    google.fail("/calendar", times=1, status=503)
    with pytest.raises(GoogleTemporaryError):  # the task's retries handle this; here we see it raised
        sync_booking(booking.id)
    assert google.calendar_events("primary") == {}
    assert behind_calendar(datetime.now(UTC)) == [booking.id]

    counts = asyncio.run(resync_calendars.fn(datetime.now(UTC)))
    assert counts == {"synced": 1, "refused": 0, "left": 0}
    assert _event(google, wix_id)["status"] == "confirmed"
    assert behind_calendar(datetime.now(UTC)) == []


@pytest.mark.db
def test_without_a_connection_nothing_is_lost(google: FakeGoogle) -> None:
    disconnect_all()
    wix_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(2, 11))
    booking = _booking(wix_id)

    assert asyncio.run(sync_calendar.fn(booking.id)) == "not connected"
    assert asyncio.run(resync_calendars.fn(datetime.now(UTC)))["synced"] == 0
    assert _booking(wix_id).calendar_synced_revision is None

    connect(google)  # someone connects Google: the next sweep catches up
    assert asyncio.run(resync_calendars.fn(datetime.now(UTC)))["synced"] == 1
    assert _event(google, wix_id)["extendedProperties"]["private"]["wix_booking_id"] == wix_id


@pytest.mark.db
def test_not_configured_means_no_calendar_and_no_calls(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLIENT_ID")
    get_settings.cache_clear()
    wix_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(2, 12))

    assert asyncio.run(sync_calendar.fn(_booking(wix_id).id)) == "not configured"
    assert asyncio.run(resync_calendars.fn(datetime.now(UTC)))["synced"] == 0
    assert google.requests == []


# --- the catch-up's one client per batch ---------------------------------------------------------------


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every API client built from now on (googleapiclient's `build`, whichever path calls it)."""
    builds: list[str] = []
    real_build = google_api.build

    def counting_build(api: str, *args: Any, **kwargs: Any) -> Any:
        builds.append(api)
        return real_build(api, *args, **kwargs)

    monkeypatch.setattr(google_api, "build", counting_build)
    return builds


def _reconnect(fake: FakeGoogle) -> str:
    """Staff connect the same account again (as the OAuth callback updates its row); the new refresh token."""
    refresh_token, _ = fake.issue_tokens(" ".join(SCOPES))
    with session_scope() as session:
        row = session.exec(select(GoogleConnection)).one()
        row.refresh_token, row.access_token = refresh_token, None
        row.status, row.status_reason = GoogleConnectionStatus.CONNECTED, None
        row.connected_at = row.updated_at = utcnow()
        session.add(row)
    return refresh_token


@pytest.mark.db
def test_the_catch_up_builds_one_client_for_its_batch_and_every_booking_reaches_google(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = [str(uuid.uuid4()) for _ in range(4)]
    for hour, wix_id in enumerate(created, start=9):
        apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(2, hour))
    cancelled = str(uuid.uuid4())  # its event exists; the cancellation has not reached the calendar yet
    apply_wix(KEYS, "wix.bookings.v2.booking_created", cancelled, 1, _slot(3, 9))
    sync_booking(_booking(cancelled).id)
    apply_wix(KEYS, "wix.bookings.v2.booking_canceled", cancelled, 2, _slot(3, 9), status="CANCELED")
    already_sent = len(google.requests)
    builds = _count_builds(monkeypatch)

    counts = asyncio.run(resync_calendars.fn(datetime.now(UTC)))

    assert counts == {"synced": 5, "refused": 0, "left": 0}
    assert builds == ["calendar"], "one Calendar client for the whole batch, not one per booking"
    events = google.calendar_events("primary")
    for wix_id in created:
        event = events[gcal.event_id_for(wix_id)]
        assert event["status"] == "confirmed"
        assert event["extendedProperties"]["private"]["wix_booking_id"] == wix_id
        assert event["extendedProperties"]["private"]["crm_booking_id"] == str(_booking(wix_id).id)
    assert events[gcal.event_id_for(cancelled)]["status"] == "cancelled"
    sent = [r for r in google.requests[already_sent:] if r["path"].startswith("/calendar")]
    assert sorted(r["json"]["id"] for r in sent if r["method"] == "POST") == sorted(
        gcal.event_id_for(w) for w in created
    )
    [deleted] = [r for r in sent if r["method"] == "DELETE"]
    assert deleted["path"].endswith(f"/events/{gcal.event_id_for(cancelled)}")
    assert len(sent) == 5
    assert behind_calendar(datetime.now(UTC)) == []


@pytest.mark.db
def test_staff_disconnecting_mid_batch_stops_it_even_if_google_cannot_revoke(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    wix_ids = [str(uuid.uuid4()) for _ in range(3)]
    for hour, wix_id in enumerate(wix_ids, start=9):
        apply_wix(KEYS, "wix.bookings.v2.booking_created", wix_id, 1, _slot(2, hour))
    google.fail("/revoke", times=1, status=503)  # so the shared client's token still works at Google
    real_upsert = gcal.upsert_event
    disconnected: list[bool] = []

    def upsert_then_disconnect(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = real_upsert(*args, **kwargs)
        if not disconnected:  # `avatar-crm google disconnect`, right after the batch's first booking
            disconnected.append(google_oauth.revoke() is not None)
        return result

    monkeypatch.setattr(gcal, "upsert_event", upsert_then_disconnect)
    builds = _count_builds(monkeypatch)

    assert asyncio.run(resync_calendars.fn(datetime.now(UTC))) == {"synced": 1, "refused": 0, "left": 2}
    assert len(google.calendar_events("primary")) == 1
    assert disconnected == [True] and google.requests_to("/revoke")[0]["status"] == 503
    assert len(google.requests_to("/calendar")) == 1, "nothing sent with the disconnected account"

    refresh_token = _reconnect(google)  # the next sweep's batch gets a client with the new credentials
    assert asyncio.run(resync_calendars.fn(datetime.now(UTC))) == {"synced": 2, "refused": 0, "left": 0}
    assert set(google.calendar_events("primary")) == {gcal.event_id_for(w) for w in wix_ids}
    assert builds == ["calendar", "calendar"]
    refreshes = [r["form"] for r in google.requests_to("/token") if r["form"].get("grant_type")]
    assert refreshes[-1]["refresh_token"] == refresh_token


@pytest.mark.db
def test_a_batch_client_is_reused_only_while_its_connection_is(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _count_builds(monkeypatch)
    with BatchService("calendar") as batch:
        first = batch.get()
        assert batch.get() is first and builds == ["calendar"]
        _reconnect(google)
        assert batch.get() is not first and builds == ["calendar", "calendar"]
        disconnect_all()
        with pytest.raises(GoogleNotConnected):
            batch.get()
