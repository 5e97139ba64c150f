"""Durable, idempotent storage of verified webhooks, fast enough to answer inside a provider's timeout.

Every accepted webhook must be committed before we answer, and a commit with `synchronous=FULL` is an fsync.
Rather than one fsync per request, a single writer thread takes whatever requests are waiting and commits them
together (group commit): under load many webhooks share one fsync, at idle a webhook waits for nobody. Each
request still gets its answer only after the transaction holding its row has committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime

from litestar.datastructures import State
from sqlalchemy import Connection, Engine, select

from models import InboxStatus, WebhookEvent
from models.inbox import insert_new_events
from models.types import utcnow
from webhook_gateway.errors import request_arrived_at
from webhook_gateway.queue_worker import QueueWorker
from webhook_gateway.schemas import WebhookAck

logger = logging.getLogger(__name__)

_TABLE = WebhookEvent.__table__  # type: ignore[attr-defined]
_MAX_BATCH = 256


@dataclass(frozen=True)
class StoredEvent:
    event_id: int
    duplicate: bool
    status: str


@dataclass
class _Pending:
    source: str
    dedupe_key: str
    event_type: str
    body: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[StoredEvent] = field(repr=False)
    subject: str | None = None
    revision: int | None = None
    arrived_at: datetime | None = field(default_factory=request_arrived_at)


class InboxWriter(QueueWorker[_Pending]):
    """Owns the inbox's write path: `await store(...)` returns once the row is durably committed."""

    def __init__(self, engine: Engine) -> None:
        super().__init__("inbox-writer")
        self._engine = engine
        self._insert = insert_new_events(engine.dialect.name).returning(
            _TABLE.c.id, _TABLE.c.source, _TABLE.c.dedupe_key
        )

    async def store(
        self,
        source: str,
        dedupe_key: str,
        event_type: str,
        body: bytes,
        subject: str | None = None,
        revision: int | None = None,
    ) -> StoredEvent:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = _Pending(source, dedupe_key, event_type, body, loop, future, subject, revision)
        self._queue.put(pending)
        return await pending.future

    async def store_many(self, source: str, events: Sequence[tuple[str, str, bytes]]) -> list[StoredEvent]:
        """Store a provider's batch, `(dedupe_key, event_type, body)` per event; returns once every row is
        committed (the writer may spread them over a few group commits). Any failure raises, so the caller
        answers non-2xx and the provider resends the batch; rows already committed come back duplicates."""
        loop = asyncio.get_running_loop()
        pending = [
            _Pending(source, key, kind, body, loop, loop.create_future()) for key, kind, body in events
        ]
        for item in pending:
            self._queue.put(item)
        outcomes = await asyncio.gather(*(item.future for item in pending), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return list(outcomes)  # type: ignore[arg-type]

    # --- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._engine.begin() as connection:
                results = self._write(connection, batch)
        except Exception as exc:
            if len(batch) > 1:  # one bad row must not fail its neighbours: retry each on its own
                for item in batch:
                    self._commit([item])
                return
            logger.exception("inbox write failed")
            _resolve(batch[0], exc)
            return
        for item, result in zip(batch, results, strict=True):
            _resolve(item, result)

    def _write(self, connection: Connection, batch: list[_Pending]) -> list[StoredEvent]:
        """One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` for the batch; rows it did not insert
        were already there (or earlier in this batch) and are answered as duplicates."""
        now = utcnow()
        first: dict[tuple[str, str], _Pending] = {}
        for item in batch:
            first.setdefault((item.source, item.dedupe_key), item)
        rows = [
            {
                "source": item.source,
                "dedupe_key": item.dedupe_key,
                "event_type": item.event_type,
                "body": item.body,
                "subject": item.subject,
                "revision": item.revision,
                "status": InboxStatus.RECEIVED,
                "dispatch_attempts": 0,
                "received_at": now,
                "arrived_at": item.arrived_at,
                "next_dispatch_at": now,
            }
            for item in first.values()
        ]
        # Executed as an executemany: SQLAlchemy's "insertmanyvalues" still sends one multi-row INSERT, but
        # from a statement compiled once, where `.values(rows)` recompiled it for every batch (≈ 2/3 of the
        # writer's CPU, all of it under the GIL the request thread needs).
        inserted = {(row.source, row.dedupe_key): row.id for row in connection.execute(self._insert, rows)}
        existing: dict[tuple[str, str], tuple[int, str]] = {}
        missing = [key for key in first if key not in inserted]
        for source in {source for source, _ in missing}:
            keys = [dedupe_key for s, dedupe_key in missing if s == source]
            query = select(_TABLE.c.id, _TABLE.c.dedupe_key, _TABLE.c.status).where(
                _TABLE.c.source == source, _TABLE.c.dedupe_key.in_(keys)
            )
            for row in connection.execute(query):
                existing[(source, row.dedupe_key)] = (row.id, row.status)

        results = []
        for item in batch:
            key = (item.source, item.dedupe_key)
            if key in inserted:
                is_new = first[key] is item
                results.append(StoredEvent(inserted[key], duplicate=not is_new, status=InboxStatus.RECEIVED))
            else:
                event_id, status = existing[key]
                results.append(StoredEvent(event_id, duplicate=True, status=status))
        return results


def _resolve(item: _Pending, outcome: StoredEvent | BaseException) -> None:
    def _set() -> None:
        if item.future.done():
            return
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)

    with suppress(RuntimeError):  # the request's loop is gone (shutdown): nothing is waiting any more
        item.loop.call_soon_threadsafe(_set)


async def accept(
    state: State,
    source: str,
    dedupe_key: str,
    event_type: str,
    raw: bytes,
    subject: str | None = None,
    revision: int | None = None,
) -> WebhookAck:
    """What every webhook route does with a verified event: store it durably, wake the dispatcher if it is
    new, and answer `accepted` or `duplicate` only once it is committed. `subject` and `revision` name what
    the event is about and its place in that thing's history, where the provider says (Wix bookings)."""
    stored = await state.inbox.store(source, dedupe_key, event_type, raw, subject, revision)
    if stored.duplicate:
        logger.debug("duplicate %s event %s (%s)", source, stored.event_id, event_type)
        return WebhookAck(status="duplicate", event_id=stored.event_id)
    logger.debug("accepted %s event %s (%s)", source, stored.event_id, event_type)
    state.dispatcher.wake()
    return WebhookAck(status="accepted", event_id=stored.event_id)


async def accept_many(
    state: State, source: str, events: Sequence[tuple[str, str, bytes]]
) -> list[StoredEvent]:
    """`accept` for a provider that posts many events at once (SendGrid): one inbox row per event, all
    committed before the caller answers, and the dispatcher woken once if any of them is new."""
    stored = await state.inbox.store_many(source, events) if events else []
    new = sum(not item.duplicate for item in stored)
    logger.debug("%s batch of %s event(s): %s new", source, len(stored), new)
    if new:
        state.dispatcher.wake()
    return stored
