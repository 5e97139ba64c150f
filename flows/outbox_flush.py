"""`outbox-flush`: send every pending message whose time has come, so a provider outage only delays.

Booking intake sends its messages straight away; when the provider is down they go back to pending with a
backoff, and this scheduled flow (every minute) picks them up. Messages whose deadline has passed are
dropped, never sent late. A table artifact shows ops what happened in each run.
"""

# No `from __future__ import annotations` here: the runner hands this flow to its process pickled, and
# Prefect builds the parameter model from the annotations; as strings, `datetime` no longer resolves there.
import asyncio
from collections import Counter
from datetime import datetime

from prefect import flow
from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_run_logger

from flows import outbox
from flows.tasks.sms import send_sms
from models.types import utcnow


@flow(name="outbox-flush", flow_run_name="outbox-flush-{now}")
async def outbox_flush(now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Send due pending SMS (oldest first, at most `limit`); returns a count per resulting status."""
    logger = get_run_logger()
    now = now or utcnow()
    message_ids = await asyncio.to_thread(outbox.due_message_ids, now, limit)
    results = {message_id: await send_sms(message_id) for message_id in message_ids}
    counts = Counter(str(status) for status in results.values())
    logger.info("outbox flush: %s due, %s", len(message_ids), dict(counts) or "nothing to do")
    if message_ids:
        await acreate_table_artifact(
            key="outbox-flush",
            table=[{"message_id": mid, "status": str(status)} for mid, status in results.items()],
            description=f"Outbox flush at {now.isoformat()}: {dict(counts)}",
        )
    return dict(counts)
