"""Keep the clinic's Google Calendar in step with bookings: one event per booking, created, moved, removed.

Booking intake calls `sync_calendar(booking_id)` after its transaction has committed (and after the patient's
messages went out: the calendar must never hold up or fail a patient's SMS or email). The booking records
which revision its event mirrors (`calendar_synced_revision`); while Google is unreachable or no account is
connected the booking simply stays behind, and the reminder sweep's `resync_calendars` step catches up a
bounded batch of such bookings every minute. So an outage delays the calendar and never loses a change.

Not configured at all (no OAuth client) → nothing happens but a log line.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import or_
from sqlmodel import select

from models import Booking, BookingStatus, Contact, get_settings, session_scope
from models.run_logger import run_logger
from models.types import utcnow
from providers import google_calendar as gcal
from providers.google_api import (
    BatchService,
    GoogleNotConnected,
    GooglePermanentError,
    GoogleTemporaryError,
    active_connection,
    build_service,
)

RESYNC_BATCH = 50
RESYNC_LOOKBACK = timedelta(days=1)  # bookings further in the past are history, not the day's schedule


def _snapshot(booking_id: int) -> tuple[gcal.CalendarBooking, int, bool] | None:
    """What the event should show, the revision that is, and whether the booking should have an event."""
    with session_scope() as session:
        booking = session.get(Booking, booking_id)
        if booking is None:
            return None
        contact = session.get(Contact, booking.contact_id) if booking.contact_id else None
        status = BookingStatus(booking.status)
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p) if contact else ""
        details = gcal.CalendarBooking(
            wix_booking_id=booking.wix_booking_id,
            crm_booking_id=booking_id,
            start_at=booking.start_at,
            end_at=booking.end_at,
            timezone=booking.timezone or get_settings().clinic_timezone,
            wix_instance_id=booking.wix_instance_id,
            service=booking.service_name,
            patient_name=name or None,
            location=booking.location,
            tentative=status == BookingStatus.PENDING,
        )
        return details, booking.revision, status.is_active


def _record(booking_id: int, event_id: str | None, revision: int) -> None:
    """The event now mirrors `revision`. Written unconditionally: if a slower sync of an older revision
    lands after a newer one, the booking looks behind again and the sweep repairs the event."""
    with session_scope() as session:
        booking = session.get(Booking, booking_id)
        if booking is None:
            return
        booking.calendar_event_id = event_id
        booking.calendar_synced_revision = revision
        booking.calendar_synced_at = utcnow()
        session.add(booking)


def _note_refused(booking_id: int) -> None:
    """Google refused this booking's event: stamp the attempt (the revision stays behind, so the booking
    is still retried) so the catch-up batch takes the bookings it has not tried lately first."""
    with session_scope() as session:
        booking = session.get(Booking, booking_id)
        if booking is not None:
            booking.calendar_synced_at = utcnow()
            session.add(booking)


def _up_to_date(booking_id: int) -> bool:
    with session_scope() as session:
        booking = session.get(Booking, booking_id)
        return booking is None or booking.calendar_synced_revision == booking.revision


def sync_booking(booking_id: int, *, force: bool = False, batch: BatchService | None = None) -> str:
    """Make the booking's event match the booking; returns what was done (for logs and tests).

    Raises `GoogleTemporaryError` (retry later) and `GoogleNotConnected` (wait for a person); a
    `GooglePermanentError` means Google refused this event and is raised too. `batch` is the catch-up's
    Calendar client, shared by its bookings (`BatchService` says why that is safe); without one, the
    booking gets a client of its own, as a single sync has nothing to share it with.
    """
    if not force and _up_to_date(booking_id):
        return "up to date"
    snapshot = _snapshot(booking_id)
    if snapshot is None:
        return "no such booking"
    details, revision, active = snapshot
    settings = get_settings()
    event_id = gcal.event_id_for(details.wix_booking_id)
    service = batch.get() if batch is not None else build_service("calendar")
    if active:
        gcal.upsert_event(service, settings.google_calendar_id, event_id, gcal.event_body(details))
        _record(booking_id, event_id, revision)
        return f"event {event_id} mirrors revision {revision}"
    existed = gcal.delete_event(service, settings.google_calendar_id, event_id)
    _record(booking_id, None, revision)
    return f"event {event_id} {'deleted' if existed else 'already absent'} (revision {revision})"


@task(
    name="sync-calendar",
    task_run_name="sync-calendar-{booking_id}",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_jitter_factor=0.5,
)
async def sync_calendar(booking_id: int) -> str:
    """Retried only for temporary trouble (raised); anything else is logged and left to the sweep."""
    logger = run_logger(__name__)
    if not get_settings().google_configured:
        logger.info("calendar sync skipped for booking %s: Google is not configured", booking_id)
        return "not configured"
    try:
        result = await asyncio.to_thread(sync_booking, booking_id)
    except GoogleNotConnected as exc:
        logger.warning("calendar not synced for booking %s (the sweep will retry): %s", booking_id, exc)
        return "not connected"
    except GooglePermanentError as exc:
        logger.error("Google refused the calendar event for booking %s: %s", booking_id, exc)
        return f"refused: {exc}"
    logger.info("calendar for booking %s: %s", booking_id, result)
    return result


def behind_calendar(now: datetime, limit: int = RESYNC_BATCH) -> list[int]:
    """Bookings whose event does not mirror their newest revision: never tried first, then those tried
    longest ago, then soonest first; so a few events Google keeps refusing cannot starve the rest."""
    with session_scope() as session:
        return list(
            session.exec(
                select(Booking.id)
                .where(
                    or_(
                        Booking.calendar_synced_revision.is_(None),  # type: ignore[union-attr]
                        Booking.calendar_synced_revision != Booking.revision,
                    ),
                    Booking.start_at >= now - RESYNC_LOOKBACK,
                )
                .order_by(
                    Booking.calendar_synced_at.asc().nulls_first(),  # type: ignore[union-attr]
                    Booking.start_at,
                )
                .limit(limit)
            ).all()
        )  # type: ignore[arg-type]


@task(name="resync-calendars", cache_policy=NO_CACHE)
async def resync_calendars(now: datetime, limit: int = RESYNC_BATCH) -> dict[str, int]:
    """The sweep's catch-up step: sync a bounded batch of bookings the calendar is behind on.

    Stops at the first temporary error or missing connection (Google is down for all of them); one
    booking Google refuses does not stop the others. Never raises: the sweep's SMS matter more. The
    bookings share one Calendar client, which is safe only because they are synced one at a time (a
    `BatchService` must never be used by two threads at once): keep this loop sequential."""
    logger = run_logger(__name__)
    counts = {"synced": 0, "refused": 0, "left": 0}
    if not get_settings().google_configured:
        return counts
    try:
        if await asyncio.to_thread(active_connection) is None:
            return counts  # nobody connected Google yet: `avatar-crm google status` tells ops
        pending = await asyncio.to_thread(behind_calendar, now, limit)
    except Exception as exc:  # the database is struggling: the sweep's own work reports that
        logger.warning("calendar catch-up skipped: %s", type(exc).__name__)
        return counts
    with BatchService("calendar") as calendar:
        for index, booking_id in enumerate(pending):
            try:
                await asyncio.to_thread(sync_booking, booking_id, batch=calendar)
                counts["synced"] += 1
            except GooglePermanentError as exc:
                counts["refused"] += 1
                await asyncio.to_thread(_note_refused, booking_id)
                logger.error("Google refused the calendar event for booking %s: %s", booking_id, exc)
            except (GoogleTemporaryError, GoogleNotConnected) as exc:
                counts["left"] = len(pending) - index
                logger.warning("calendar catch-up paused (%s bookings left): %s", counts["left"], exc)
                break
            except Exception as exc:  # a bug must not fail the sweep that sends reminders
                counts["left"] = len(pending) - index
                logger.error("calendar catch-up stopped: %s: %s", type(exc).__name__, exc)
                break
    if pending:
        logger.info("calendar catch-up: %s", counts)
    return counts
