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
from flows.tasks.send import send_one
from inbox.service import WIX_BOOKINGS, InboxEvent, handle, unfinished
from models import MessageStatus, get_settings
from providers import wix

BATCH_CONCURRENCY = 16  # bookings of one batch run under way at once (measured: benchmarks/throughput.py)


@task(
    name="booking-event",
    task_run_name="booking-event-{event.id}",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 3, 10],
    retry_jitter_factor=0.5,
)
async def apply_and_send(event: InboxEvent[wix.BookingEvent | None]) -> tuple[IntakeOutcome, dict[int, str]]:
    """One booking's unit of work in the Prefect UI: the event applied, then the messages it queued sent;
    their statuses by message id. One task run, not one per step: each costs ~35 ms of Prefect CPU, half
    of a booking's during a burst (docs/benchmarks.md). Retried, as the database may be briefly busy: both
    steps are idempotent (the revision rule; the outbox claim), so a retry sends nothing twice."""
    outcome = await asyncio.to_thread(apply_inbox_event, event)
    get_run_logger().info("event %s: %s", event.id, outcome.summary)
    return outcome, {message_id: await send_one(message_id) for message_id in outcome.to_send}


@flow(name="booking-intake", description=__doc__.split("\n\n")[0])
async def booking_intake(event_id: int | None = None, event_ids: list[int] | None = None) -> State:
    """Apply inbox event `event_id` (a Wix booking event) and send the patient what it calls for; or each
    of `event_ids`, which the gateway hands over together when a burst of bookings builds a backlog."""
    if event_ids is not None:
        return await _intake_batch(event_ids)
    if event_id is None:
        raise ValueError("booking-intake needs event_id or event_ids")
    return await _lone(event_id)


@task(name="booking-intake", task_run_name="booking-intake-{event_id}", cache_policy=NO_CACHE)
async def booking_intake_task(event_id: int) -> State:
    """A lone booking event as a background task run (`avatar-crm task-worker`), which the gateway prefers to
    a flow run when a task worker serves it: the same steps as the flow, at a fraction of a flow run's cost
    (no worker hand-over, no process, no flow-run orchestration), so a patient hears back in about a second
    while bookings trickle in."""
    return await _lone(event_id)


async def _lone(event_id: int) -> State:
    """One booking event's final state, in a flow run or a task run: Failed if a message could not go."""
    summary, failed = await _intake(event_id)
    if failed:
        return Failed(message=f"{summary}; message(s) {failed} could not be delivered (see outbox)")
    return Completed(message=summary)


async def _intake(event_id: int) -> tuple[str, list[int]]:
    """One booking event: applied, its messages sent, the calendar mirrored; the summary and the ids of
    messages that failed. Raises (the row then marked failed) if the event cannot be applied."""
    async with handle(event_id, WIX_BOOKINGS) as event:
        outcome, statuses = await apply_and_send(event)
    # No task run at all while Google is not configured: this is every booking's path.
    if outcome.crm_booking_id is not None and not outcome.stale and get_settings().google_configured:
        try:  # after the patient's messages, and never failing them: the sweep catches the calendar up
            await sync_calendar(outcome.crm_booking_id)
        except Exception as exc:
            get_run_logger().warning("calendar not synced yet (the sweep will retry): %s", exc)
    return outcome.summary, [mid for mid, status in statuses.items() if status == MessageStatus.FAILED]


async def _intake_batch(event_ids: list[int]) -> State:
    """Each event as `_intake` does it, a few at once; one that fails fails only itself (its row says why).
    Rows already finished (a batch handed over again after its run died) are skipped."""
    todo = await asyncio.to_thread(unfinished, event_ids)
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one(event_id: int) -> tuple[str, list[int]] | BaseException:
        async with gate:
            try:
                return await _intake(event_id)
            except Exception as exc:  # the row is marked failed by `handle`; the others go on
                return exc

    results = await asyncio.gather(*(one(event_id) for event_id in todo))
    errors = sum(isinstance(result, BaseException) for result in results)
    undelivered = [mid for result in results if not isinstance(result, BaseException) for mid in result[1]]
    summary = (
        f"{len(todo)} booking event(s) of {len(event_ids)} handed over: {len(todo) - errors} applied, "
        f"{errors} could not be"
    )
    get_run_logger().info(summary)
    if errors or undelivered:
        return Failed(message=f"{summary}; message(s) {undelivered} could not be delivered (see outbox)")
    return Completed(message=summary)


if __name__ == "__main__":
    import sys

    asyncio.run(booking_intake(int(sys.argv[1])))
