"""`delivery-receipts`: apply MobileMessage delivery receipts to the outbox.

MobileMessage posts one receipt per message part and status, in no guaranteed order and sometimes more than
once. Each is stored once (unique per message, part and status) and the message's status is recomputed from
all of its parts: any failed part fails the message; it is delivered when every part is. A message never
moves backwards (a late "sent" after "delivered" changes nothing). The gateway batches receipts into one run
(`event_ids`), since a campaign can bring thousands a minute. A confirmation or reminder that failed is an
error in the run's logs and a row in the `delivery-failures` artifact.
"""

# No `from __future__ import annotations` here: the runner pickles this flow; see flows/reminder_sweep.py.
import asyncio
from dataclasses import dataclass

from prefect import flow, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from sqlmodel import Session, select

from flows.run_logger import describe_counts
from messaging.outbox import transition
from models import (
    DeliveryReceipt,
    InboxStatus,
    MessageStatus,
    OutboundMessage,
    WebhookEvent,
    session_scope,
)
from models.types import utcnow
from providers.mobilemessage_webhooks import MobileMessagePayloadError, parse_receipt

# Where a message may go from each status on a receipt; anything else would be moving backwards.
_FORWARD = {
    MessageStatus.SENDING: {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.FAILED},
    MessageStatus.SENT: {MessageStatus.DELIVERED, MessageStatus.FAILED},
    MessageStatus.DELIVERED: {MessageStatus.FAILED},  # a later part failed
}


@dataclass(frozen=True)
class ReceiptResult:
    event_id: int
    message_id: int | None
    status: str
    kind: str | None = None


def _aggregate(receipts: list[DeliveryReceipt]) -> MessageStatus | None:
    parts: dict[int, set[str]] = {}
    total = 1
    for receipt in receipts:
        parts.setdefault(receipt.part_number, set()).add(receipt.status)
        total = max(total, receipt.total_parts or 1, receipt.part_number)
    if any("failed" in statuses for statuses in parts.values()):
        return MessageStatus.FAILED
    if len(parts) >= total and all("delivered" in statuses for statuses in parts.values()):
        return MessageStatus.DELIVERED
    if parts:
        return MessageStatus.SENT
    return None


def _apply_one(session: Session, row: WebhookEvent) -> ReceiptResult:
    receipt = parse_receipt(row.body)
    message = session.exec(
        select(OutboundMessage).where(OutboundMessage.provider_message_id == receipt.message_id)
    ).first()
    stored = session.exec(
        select(DeliveryReceipt).where(
            DeliveryReceipt.provider_message_id == receipt.message_id,
            DeliveryReceipt.part_number == receipt.part_number,
            DeliveryReceipt.status == receipt.status,
        )
    ).first()
    if stored is None:
        session.add(
            DeliveryReceipt(
                message_id=message.id if message else None,
                provider_message_id=receipt.message_id,
                part_number=receipt.part_number,
                total_parts=receipt.total_parts,
                status=receipt.status,
                reported_at=receipt.received_at,
            )
        )
        session.flush()
    if message is None:
        return ReceiptResult(row.id, None, "unknown message")  # type: ignore[arg-type]
    all_parts = session.exec(
        select(DeliveryReceipt).where(DeliveryReceipt.provider_message_id == receipt.message_id)
    ).all()
    new_status = _aggregate(list(all_parts))
    current = MessageStatus(message.status)
    if new_status is not None and new_status in _FORWARD.get(current, set()):
        if new_status == MessageStatus.DELIVERED:
            message.delivered_at = max(r.reported_at for r in all_parts)
        if new_status == MessageStatus.FAILED:
            failed = sorted(r.part_number for r in all_parts if r.status == "failed")
            message.last_error = f"carrier reported part(s) {failed} failed"
        transition(
            session, message, new_status, f"delivery receipt: {receipt.status} part {receipt.part_number}"
        )
    return ReceiptResult(row.id, message.id, message.status, message.kind)  # type: ignore[arg-type]


def apply_receipts(event_ids: list[int]) -> list[ReceiptResult]:
    """All of a batch in one transaction; a malformed receipt fails only its own inbox row."""
    results = []
    with session_scope() as session:
        rows = session.exec(select(WebhookEvent).where(WebhookEvent.id.in_(event_ids))).all()  # type: ignore[union-attr]
        for row in rows:
            if row.status == InboxStatus.PROCESSED:
                continue
            try:
                with session.begin_nested():
                    results.append(_apply_one(session, row))
                row.status, row.last_error = InboxStatus.PROCESSED, None
            except (MobileMessagePayloadError, ValueError) as exc:
                row.status, row.last_error = InboxStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500]
            row.processed_at = utcnow()
            session.add(row)
    return results


@task(name="apply-delivery-receipts", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 3, 10])
async def apply_receipts_task(event_ids: list[int]) -> list[ReceiptResult]:
    return await asyncio.to_thread(apply_receipts, event_ids)


@flow(name="delivery-receipts", flow_run_name="delivery-receipts-{event_ids[0]}")
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
