"""`delivery-receipts`: apply MobileMessage delivery receipts to the outbox.

The gateway batches receipts into one run (`event_ids`), since a campaign can bring thousands a minute; the
rules (one row per part and status, a message's status from all its parts, never backwards) are in
`messaging/delivery_receipts.py`. A confirmation or reminder that failed is an error in the run's logs and
a row in the `delivery-failures` artifact.
"""

# No `from __future__ import annotations` here: the runner pickles this flow; see flows/reminder_sweep.py.
import asyncio

from prefect import flow, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from messaging.delivery_receipts import ReceiptResult, apply_receipts
from models import MessageStatus
from models.run_logger import describe_counts


@task(name="apply-delivery-receipts", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 3, 10])
async def apply_receipts_task(event_ids: list[int]) -> list[ReceiptResult]:
    return await asyncio.to_thread(apply_receipts, event_ids)


@flow(name="delivery-receipts")
async def delivery_receipts(event_ids: list[int]) -> dict[str, int]:
    """Apply the delivery receipts stored as inbox events `event_ids`; returns messages per status."""
    logger = get_run_logger()
    results = await apply_receipts_task(event_ids)
    counts: dict[str, int] = {}
    for result in results:
        counts[str(result.status)] = counts.get(str(result.status), 0) + 1
    failures = [r for r in results if r.status == MessageStatus.FAILED]
    for failure in failures:
        logger.error("message %s (%s) was not delivered", failure.message_id, failure.kind)
    if failures:
        await acreate_table_artifact(
            key="delivery-failures",
            table=[{"message_id": f.message_id, "kind": f.kind, "inbox_event": f.event_id} for f in failures],
            description="Patient messages the carrier could not deliver: see the outbox for each",
        )
    logger.info("%s receipt(s): %s", len(event_ids), describe_counts(counts, "none"))
    return counts
