"""Outbox operations: queue a message once, claim it for sending, record what the provider said.

A message moves pending → sending → sent | sandboxed | blocked | failed | dropped, and every move is kept in
`OutboundMessageEvent`. A send that hits a provider outage goes back to pending with a later `send_after`,
so the outage delays it; the unique idempotency key (also sent to the provider) means it is never doubled.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from models import MessageStatus, OutboundMessage, OutboundMessageEvent, session_scope
from models.types import utcnow

STALE_SENDING_AFTER = timedelta(minutes=10)
MAX_RETRY_DELAY = timedelta(minutes=15)


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    created: bool


def queue_message(session: Session, message: OutboundMessage) -> QueuedMessage:
    """Insert unless a message with the same idempotency key exists (a replayed event, a retried flow)."""
    existing = session.exec(
        select(OutboundMessage).where(OutboundMessage.idempotency_key == message.idempotency_key)
    ).first()
    if existing is not None:
        return QueuedMessage(existing.id, created=False)  # type: ignore[arg-type]
    session.add(message)
    session.flush()
    session.add(OutboundMessageEvent(message_id=message.id, status=MessageStatus.PENDING, detail="queued"))
    return QueuedMessage(message.id, created=True)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    idempotency_key: str
    channel: str
    recipient: str
    body: str
    attempts: int


def claim(message_id: int, now: datetime | None = None) -> ClaimedMessage | str:
    """Take a due message for sending, or return the status that says why not (already sent, not due, …)."""
    now = now or utcnow()
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        if message is None:
            return "missing"
        if message.status != MessageStatus.PENDING:
            return message.status
        if message.send_after > now:
            return "not due"
        if message.deadline is not None and message.deadline <= now:
            transition(session, message, MessageStatus.DROPPED, "deadline passed before it could be sent")
            return MessageStatus.DROPPED
        message.attempts += 1
        transition(session, message, MessageStatus.SENDING, f"attempt {message.attempts}")
        return ClaimedMessage(
            message.id,  # type: ignore[arg-type]
            message.idempotency_key,
            message.channel,
            message.recipient,
            message.body,
            message.attempts,
        )


def record(
    message_id: int,
    status: MessageStatus,
    detail: str | None = None,
    *,
    provider: str | None = None,
    provider_message_id: str | None = None,
) -> None:
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        message.provider = provider or message.provider
        message.provider_message_id = provider_message_id or message.provider_message_id
        if status in {MessageStatus.SENT, MessageStatus.SANDBOXED}:
            message.sent_at = utcnow()
        if status in {MessageStatus.FAILED, MessageStatus.BLOCKED}:
            message.last_error = detail
        transition(session, message, status, detail)


def retry_later(message_id: int, reason: str) -> datetime:
    """A provider outage: back to pending with exponential backoff, so a later sweep tries again."""
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        delay = min(MAX_RETRY_DELAY, timedelta(seconds=30 * 2 ** min(message.attempts, 10)))
        message.send_after = utcnow() + delay * random.uniform(0.5, 1.0)
        message.last_error = reason
        transition(session, message, MessageStatus.PENDING, f"retry after outage: {reason}")
        return message.send_after


def due_message_ids(now: datetime, limit: int = 500) -> list[int]:
    """Pending messages whose time has come, oldest first; also frees claims abandoned by a crash."""
    with session_scope() as session:
        abandoned = session.exec(
            select(OutboundMessage).where(
                OutboundMessage.status == MessageStatus.SENDING,
                OutboundMessage.updated_at < now - STALE_SENDING_AFTER,
            )
        ).all()
        for message in abandoned:  # safe to resend: the provider deduplicates on the idempotency key
            transition(
                session, message, MessageStatus.PENDING, "claim abandoned; will resend with the same key"
            )
        rows = session.exec(
            select(OutboundMessage.id)
            .where(OutboundMessage.status == MessageStatus.PENDING, OutboundMessage.send_after <= now)
            .order_by(OutboundMessage.send_after)
            .limit(limit)
        ).all()
        return list(rows)  # type: ignore[arg-type]


def transition(session: Session, message: OutboundMessage, status: MessageStatus, detail: str | None) -> None:
    message.status = status
    message.updated_at = utcnow()
    session.add(message)
    session.add(OutboundMessageEvent(message_id=message.id, status=status, detail=detail))  # type: ignore[arg-type]
