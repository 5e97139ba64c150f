"""The webhook inbox as the flows consume it: one way to read an event and to record what became of it.

The gateway stores each verified webhook as a row (`webhook_gateway/inbox.py`, the receiving side) and its
dispatcher starts a flow run per row, or per batch. Every flow reads its rows here: the stored body is
decrypted and parsed once, into its source's typed event, and the row ends `processed` (in the transaction
that applies the event, so effects and outcome commit together) or `failed` with the reason. This is the
shape of Polar's external events: load, parse, hand the typed event to the handler, mark the outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect.runtime import flow_run
from sqlmodel import Session, select

from models import InboxStatus, WebhookEvent, session_scope
from models.types import utcnow
from providers import wix
from providers.mobilemessage_webhooks import (
    DeliveryReceipt,
    InboundSms,
    MobileMessagePayloadError,
    parse_inbound,
    parse_receipt,
)
from providers.sendgrid_webhooks import SendGridEvent, SendGridPayloadError, parse_event

T = TypeVar("T")
_REASON_CHARS = 1000


@dataclass(frozen=True)
class Source(Generic[T]):
    """What one kind of inbox row holds: how its body parses, and which errors mean it is not one (those
    fail the row with the reason; anything else is trouble worth retrying)."""

    name: str
    parse: Callable[[bytes, str], T]
    malformed: tuple[type[Exception], ...]
    # A batch reads only rows of these sources (empty: any row it is given).
    sources: frozenset[str] = field(default_factory=frozenset)


# One per flow that consumes the inbox. A Wix body that is no booking event parses to None.
WIX_BOOKINGS: Source[wix.BookingEvent | None] = Source(
    "wix booking", wix.decode_stored, (wix.WixPayloadError,)
)
SMS_REPLIES: Source[InboundSms] = Source(
    "SMS reply", lambda body, _type: parse_inbound(body), (MobileMessagePayloadError,)
)
DELIVERY_RECEIPTS: Source[DeliveryReceipt] = Source(
    "delivery receipt", lambda body, _type: parse_receipt(body), (MobileMessagePayloadError, ValueError)
)
EMAIL_EVENTS: Source[SendGridEvent] = Source(
    "email event", lambda body, _type: parse_event(body), (SendGridPayloadError,), frozenset({"sendgrid"})
)


@dataclass(frozen=True)
class InboxEvent(Generic[T]):
    """One inbox row, read: its id (for audit rows and keys), where it came from, and the parsed event."""

    id: int
    source: str
    event_type: str
    payload: T


@dataclass(frozen=True)
class Unreadable:
    """A row of a batch whose body is not what its source sends: already marked failed."""

    id: int
    event_type: str
    error: Exception


@dataclass
class Batch(Generic[T]):
    events: list[InboxEvent[T]]
    unreadable: list[Unreadable]


def reason(exc: BaseException) -> str:
    """How a failure reads on the row (`events list`, `events show`): the exception's type and message."""
    return f"{type(exc).__name__}: {exc}"


def read(event_id: int, source: Source[T]) -> InboxEvent[T]:
    """Load, decrypt and parse one row; `LookupError` if there is none, the source's error if malformed."""
    with session_scope() as session:
        row = session.get(WebhookEvent, event_id)
        if row is None:
            raise LookupError(f"inbox event {event_id} does not exist")
        return InboxEvent(row.id, row.source, row.event_type, source.parse(row.body, row.event_type))  # type: ignore[arg-type]


def read_batch(session: Session, event_ids: Collection[int], source: Source[T]) -> Batch[T]:
    """The rows of a batch not yet processed (a replayed batch or a retried run skips what is done), parsed;
    a malformed one is marked failed here and fails only itself."""
    query = select(WebhookEvent).where(WebhookEvent.id.in_(list(event_ids)))  # type: ignore[union-attr]
    if source.sources:
        query = query.where(WebhookEvent.source.in_(sorted(source.sources)))  # type: ignore[attr-defined]
    batch: Batch[T] = Batch([], [])
    for row in session.exec(query).all():
        if row.status == InboxStatus.PROCESSED:
            continue
        try:
            payload = source.parse(row.body, row.event_type)
        except source.malformed as exc:
            _finish(row, reason(exc))
            session.add(row)
            batch.unreadable.append(Unreadable(row.id, row.event_type, exc))  # type: ignore[arg-type]
            continue
        batch.events.append(InboxEvent(row.id, row.source, row.event_type, payload))  # type: ignore[arg-type]
    return batch


def unfinished(event_ids: Collection[int]) -> list[int]:
    """Those of `event_ids` still waiting for their outcome (neither processed nor failed), in id order."""
    done = {InboxStatus.PROCESSED, InboxStatus.FAILED}
    with session_scope() as session:
        rows = session.exec(
            select(WebhookEvent.id, WebhookEvent.status).where(WebhookEvent.id.in_(list(event_ids)))  # type: ignore[union-attr]
        ).all()
    return sorted(event_id for event_id, status in rows if status not in done)


def finish(session: Session, event_ids: int | Iterable[int], error: str | None = None) -> None:
    """Mark rows `processed` (no error) or `failed` with the reason, in the caller's transaction."""
    ids = [event_ids] if isinstance(event_ids, int) else list(event_ids)
    for event_id in ids:
        row = session.get(WebhookEvent, event_id)
        if row is not None:
            _finish(row, error)
            session.add(row)


def fail(event_id: int, why: str) -> None:
    """Mark one row `failed` with the reason, in a transaction of its own (what it was applied in is gone)."""
    with session_scope() as session:
        finish(session, event_id, why)


@contextmanager
def processing(event: InboxEvent[Any]) -> Iterator[Session]:
    """The transaction that applies an event: whatever it writes and the row's `processed` commit together,
    so a crash leaves both or neither."""
    with session_scope() as session:
        yield session
        finish(session, event.id)


@asynccontextmanager
async def handle(event_id: int, source: Source[T]) -> AsyncIterator[InboxEvent[T]]:
    """For a flow: read the event once and hand it over; if the flow's work on it raises, the row is marked
    `failed` with the reason (after the work's own retries) and the error goes on to fail the run."""
    from models.run_logger import run_logger

    try:
        event = await asyncio.to_thread(read, event_id, source)
        yield event
    except Exception as exc:
        await asyncio.to_thread(fail, event_id, reason(exc))
        run_logger(__name__).error(
            "%s %s could not be applied: %s", source.name, event_id, type(exc).__name__
        )
        raise


def _finish(row: WebhookEvent, error: str | None) -> None:
    row.status = InboxStatus.FAILED if error else InboxStatus.PROCESSED
    row.processed_at = utcnow()
    row.last_error = error[:_REASON_CHARS] if error else None
    row.flow_run_id = row.flow_run_id or (str(flow_run.id) if flow_run.id else None)
