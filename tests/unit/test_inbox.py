"""The inbox writer: every webhook committed once, duplicates recognised within and across batches."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import text

from models import get_engine
from webhook_gateway.inbox import InboxWriter

pytestmark = pytest.mark.db


@pytest.fixture
def writer(db: str):  # type: ignore[no-untyped-def]
    inbox = InboxWriter(get_engine(db))
    inbox.start()
    yield inbox
    inbox.stop()


async def test_concurrent_stores_keep_one_row_per_key_and_answer_the_rest_duplicate(
    writer: InboxWriter, db: str
) -> None:
    keys = [f"evt-{i % 20}" for i in range(100)]  # each of 20 events delivered five times, all at once
    results = await asyncio.gather(*(writer.store("wix", k, "booking_created", k.encode()) for k in keys))

    new = Counter(k for k, r in zip(keys, results, strict=True) if not r.duplicate)
    assert new == Counter({f"evt-{i}": 1 for i in range(20)})
    ids = {k: {r.event_id for kk, r in zip(keys, results, strict=True) if kk == k} for k in set(keys)}
    assert all(len(v) == 1 for v in ids.values())  # every delivery of an event names the same row
    with get_engine(db).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM webhookevent")).scalar_one() == 20


async def test_a_redelivery_later_is_a_duplicate_with_the_stored_status(writer: InboxWriter) -> None:
    first = await writer.store("wix", "evt-x", "booking_created", b"body")
    again, fresh = await asyncio.gather(
        writer.store("wix", "evt-x", "booking_created", b"body"),
        writer.store("wix", "evt-y", "booking_created", b"other"),
    )
    assert not first.duplicate and again.duplicate and again.event_id == first.event_id
    assert again.status == "received"
    assert not fresh.duplicate and fresh.event_id != first.event_id


async def test_the_same_key_from_another_source_is_a_different_event(writer: InboxWriter) -> None:
    a, b = await asyncio.gather(
        writer.store("wix", "same", "t", b"1"), writer.store("mobilemessage", "same", "t", b"2")
    )
    assert not a.duplicate and not b.duplicate and a.event_id != b.event_id


async def test_a_large_batch_gives_every_event_its_own_row_and_readable_body(
    writer: InboxWriter, db: str
) -> None:
    """More than one group commit's worth at once: each answer names the row holding that event's body."""
    from models import WebhookEvent
    from models.db import session_scope

    keys = [f"bulk-{i}" for i in range(600)]
    results = await asyncio.gather(*(writer.store("wix", k, "t", f"body of {k}".encode()) for k in keys))

    assert not any(r.duplicate for r in results)
    assert len({r.event_id for r in results}) == len(keys)
    with session_scope(get_engine(db)) as session:
        for key, result in zip(keys, results, strict=True):
            row = session.get(WebhookEvent, result.event_id)
            assert row is not None and row.dedupe_key == key and row.body == f"body of {key}".encode()
