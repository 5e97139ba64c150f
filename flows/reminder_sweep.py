"""`reminder-sweep`: send every scheduled message whose time has come, re-checked just before it goes.

Reminders are outbox rows written by booking intake with a send time and a deadline; messages a provider
outage delayed wait in the same table. This flow (scheduled every minute, or `avatar-crm reminders sweep`)
claims what is due, checks each against the booking as it is *now* (still active, same start time), the
suppression list, its deadline and quiet hours, then sends. A claim is a row lock taken in one transaction
(`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two sweeps at once, or a retried sweep, never send twice; a
sweep that ran late drops what is past its deadline instead of texting a patient after their appointment.
"""

# No `from __future__ import annotations` here: the runner hands this flow to its process pickled, and
# Prefect builds the parameter model from the annotations; as strings, `datetime` no longer resolves there.
import asyncio
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from prefect import flow
from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from sqlmodel import select

from flows.tasks.calendar import resync_calendars
from flows.tasks.send import send_due
from models import OutboundMessage, OutboundMessageEvent, get_settings, session_scope
from models.run_logger import describe_counts
from models.types import utcnow


def _run_name() -> str:
    """The moment swept on the clinic's clock, e.g. `reminder-sweep-2026-11-25-0900` (no PII in run names)."""
    now = flow_run.parameters.get("now")
    if isinstance(now, str):
        now = datetime.fromisoformat(now)
    moment = now or flow_run.scheduled_start_time
    return f"reminder-sweep-{moment.astimezone(ZoneInfo(get_settings().clinic_timezone)):%Y-%m-%d-%H%M}"


@flow(name="reminder-sweep", flow_run_name=_run_name)
async def reminder_sweep(now: datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """Send what is due at `now` (default: the current time), at most `limit` messages; counts per status."""
    logger = get_run_logger()
    now = now or utcnow()
    results = await send_due(now, limit)
    # Bookings the calendar fell behind on (Google was down or not connected) catch up here, a batch a sweep.
    await resync_calendars(now)
    counts = dict(Counter(results.values()))
    logger.info("sweep at %s: %s", now.isoformat(), describe_counts(counts))
    if results:
        await acreate_table_artifact(
            key="reminder-sweep",
            table=await artifact_rows(results),
            description=f"Reminder sweep at {now.isoformat()}: {describe_counts(counts)}",
        )
    return counts


async def artifact_rows(results: dict[int, str]) -> list[dict[str, object]]:
    """What each message came to and why, for ops (no patient details); two queries for the whole sweep."""

    def read() -> list[dict[str, object]]:
        ids = sorted(results)
        with session_scope() as session:
            messages = {
                row.id: row
                for row in session.exec(
                    select(OutboundMessage.id, OutboundMessage.kind, OutboundMessage.booking_id).where(
                        OutboundMessage.id.in_(ids)  # type: ignore[union-attr]
                    )
                ).all()
            }
            latest: dict[int, str | None] = {}
            for message_id, detail in session.exec(
                select(OutboundMessageEvent.message_id, OutboundMessageEvent.detail)
                .where(OutboundMessageEvent.message_id.in_(ids))  # type: ignore[attr-defined]
                .order_by(OutboundMessageEvent.id)  # type: ignore[arg-type]
            ).all():
                latest[message_id] = detail
        return [
            {
                "message_id": message_id,
                "kind": messages[message_id].kind if message_id in messages else "?",
                "booking_id": messages[message_id].booking_id if message_id in messages else None,
                "result": results[message_id],
                "reason": "" if results[message_id] == "sent" else latest.get(message_id) or "",
            }
            for message_id in ids
        ]

    return await asyncio.to_thread(read)
