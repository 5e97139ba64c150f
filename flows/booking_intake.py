"""`booking-intake`: apply one Wix booking event to the CRM and tell the patient what changed.

Wix redelivers events, sometimes hours late and out of order, so this flow is written to be run any number of
times for any event in any order and still end right: the rules are in `bookings/intake.py` (newest revision
wins; contact, booking, audit, messages and the inbox row's outcome in one transaction; idempotent message
keys). The flow reads the event, applies it, sends what it queued, then mirrors the booking into Google
Calendar.
"""

from __future__ import annotations

import asyncio

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed, State

from bookings.intake import IntakeOutcome, apply_inbox_event
from flows.tasks.calendar import sync_calendar
from flows.tasks.send import send_message
from inbox.service import WIX_BOOKINGS, InboxEvent, handle
from models import MessageStatus, get_settings
from providers import wix


@task(
    name="apply-booking-event",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 3, 10],
    retry_jitter_factor=0.5,
)
async def apply_booking_event(event: InboxEvent[wix.BookingEvent | None]) -> IntakeOutcome:
    """Retried: the database may be briefly busy; the work is idempotent."""
    return await asyncio.to_thread(apply_inbox_event, event)


@flow(name="booking-intake", description=__doc__.split("\n\n")[0])
async def booking_intake(event_id: int) -> State:
    """Apply inbox event `event_id` (a Wix booking event) and send the patient what it calls for."""
    logger = get_run_logger()
    async with handle(event_id, WIX_BOOKINGS) as event:
        outcome = await apply_booking_event(event)
    logger.info("event %s: %s", event_id, outcome.summary)

    statuses = {message_id: await send_message(message_id) for message_id in outcome.to_send}
    # No task run at all while Google is not configured: this is every booking's path.
    if outcome.crm_booking_id is not None and not outcome.stale and get_settings().google_configured:
        try:  # after the patient's messages, and never failing them: the sweep catches the calendar up
            await sync_calendar(outcome.crm_booking_id)
        except Exception as exc:
            logger.warning("calendar not synced for this booking yet (the sweep will retry): %s", exc)
    failed = [mid for mid, status in statuses.items() if status == MessageStatus.FAILED]
    if failed:
        return Failed(message=f"{outcome.summary}; message(s) {failed} could not be delivered (see outbox)")
    return Completed(message=outcome.summary)


if __name__ == "__main__":
    import sys

    asyncio.run(booking_intake(int(sys.argv[1])))
