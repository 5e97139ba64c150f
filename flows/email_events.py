"""`email-events`: apply SendGrid's engagement events to the outbox and the suppression list.

The gateway stores each event of a signed Event Webhook batch as its own inbox row and starts this flow for a
batch of them (`event_ids`). What each event changes (statuses forward only, opens and clicks, suppressions
and the consent ledger) is in `messaging/email_events.py`; a batch is one transaction and marks its inbox
rows, so a replay or a retried run changes nothing twice. Patient addresses never reach the logs.
"""

# No `from __future__ import annotations` here: the runner pickles this flow; see flows/reminder_sweep.py.
import asyncio

from prefect import flow, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from messaging.email_events import EventResult, apply_events, summarise


@task(name="apply-email-events", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 3, 10])
async def apply_events_task(event_ids: list[int]) -> list[EventResult]:
    return await asyncio.to_thread(apply_events, event_ids)


@flow(name="email-events", description=__doc__.split("\n\n")[0])
async def email_events(event_ids: list[int]) -> dict[str, int]:
    """Apply the SendGrid events stored as inbox events `event_ids`; returns how many came per event type."""
    logger = get_run_logger()
    results = await apply_events_task(event_ids)
    table = summarise(results)
    counts = {str(row["event"]): int(row["events"]) for row in table}
    suppressed = sum(r.suppressed for r in results)
    failed = [r.event_id for r in results if r.failed is not None]
    if results:
        await acreate_table_artifact(
            key="email-events",
            table=table,
            description=(
                f"SendGrid events {min(event_ids)}–{max(event_ids)}: {len(results)} applied, "
                f"{suppressed} new suppression(s), {len(failed)} failed"
            ),
        )
    if failed:
        logger.error("%s stored event(s) could not be applied: inbox ids %s", len(failed), failed)
    logger.info(
        "%s event(s) of %s requested: %s; %s new suppression(s)",
        len(results),
        len(event_ids),
        counts,
        suppressed,
    )
    return counts
