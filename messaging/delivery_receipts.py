"""Applying MobileMessage delivery receipts to the outbox (the `delivery-receipts` flow's rules).

MobileMessage posts one receipt per message part and status, in no guaranteed order and sometimes more than
once. Each is stored once (unique per message, part and status) and the message's status is recomputed from
all of its parts: any failed part fails the message; it is delivered when every part is. A message never
moves backwards (a late "sent" after "delivered" changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from inbox import service as inbox
from inbox.service import DELIVERY_RECEIPTS, InboxEvent
from messaging.outbox import transition
from messaging.staff_tasks import open_for_failed_message
from models import DeliveryReceipt, MessageStatus, OutboundMessage, session_scope
from providers import mobilemessage_webhooks
from providers.mobilemessage_webhooks import MobileMessagePayloadError

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


def _apply_one(session: Session, event: InboxEvent[mobilemessage_webhooks.DeliveryReceipt]) -> ReceiptResult:
    receipt = event.payload
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
        return ReceiptResult(event.id, None, "unknown message")  # type: ignore[arg-type]
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
        if new_status == MessageStatus.FAILED:
            open_for_failed_message(session, message)
    return ReceiptResult(event.id, message.id, message.status, message.kind)  # type: ignore[arg-type]


def apply_receipts(event_ids: list[int]) -> list[ReceiptResult]:
    """All of a batch in one transaction; a malformed receipt fails only its own inbox row."""
    results = []
    with session_scope() as session:
        for event in inbox.read_batch(session, event_ids, DELIVERY_RECEIPTS).events:
            try:
                with session.begin_nested():
                    results.append(_apply_one(session, event))
                inbox.finish(session, event.id)
            except (MobileMessagePayloadError, ValueError) as exc:
                inbox.finish(session, event.id, inbox.reason(exc))
    return results
