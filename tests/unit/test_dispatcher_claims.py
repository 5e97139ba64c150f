"""Two gateways' dispatchers on one inbox (PostgreSQL in production; the same claim runs on SQLite): every
event is handed to Prefect by exactly one of them, once, and none is left behind, even when one of them dies
holding a claim."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select

from models import InboxStatus, WebhookEvent, get_engine
from tests.inbox_events import store_event
from webhook_gateway.dispatcher import Dispatcher

pytestmark = pytest.mark.db

_DEPLOYMENTS = {"wix": "booking-intake/booking-intake", "sendgrid": "email-events/email-events"}


@dataclass
class _RecordingPrefect:
    """Records every `create_flow_run_from_deployment`, answering slowly enough (a few ms, at random) that
    two dispatchers' rounds interleave. Like Prefect, an idempotency key it has seen returns that run."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    runs: dict[str, UUID] = field(default_factory=dict)

    async def read_deployment_by_name(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(id=uuid4())

    async def create_flow_run_from_deployment(self, deployment_id: object, **kw: Any) -> SimpleNamespace:
        await asyncio.sleep(random.uniform(0, 0.004))
        self.calls.append((kw["idempotency_key"], kw["parameters"]))
        return SimpleNamespace(id=self.runs.setdefault(kw["idempotency_key"], uuid4()))


def _dispatcher(database_url: str, prefect: _RecordingPrefect, **kw: Any) -> Dispatcher:
    return Dispatcher(get_engine(database_url), prefect, _DEPLOYMENTS, batched={"sendgrid"}, **kw)  # type: ignore[arg-type]


def _statuses(database_url: str) -> dict[int, tuple[str, str | None]]:
    table = WebhookEvent.__table__  # type: ignore[attr-defined]
    with get_engine(database_url).connect() as connection:
        rows = connection.execute(select(table.c.id, table.c.status, table.c.flow_run_id))
        return {row.id: (row.status, row.flow_run_id) for row in rows}


def _events_handed_over(prefect: _RecordingPrefect) -> Counter[int]:
    """How many times each inbox id was in a create request (single or batch)."""
    counted: Counter[int] = Counter()
    for _key, parameters in prefect.calls:
        counted.update(parameters.get("event_ids") or [parameters["event_id"]])
    return counted


async def test_two_dispatchers_hand_each_event_to_prefect_exactly_once(database_url: str, db: str) -> None:
    kind = "wix.bookings.v2.booking_created"
    bookings = [store_event("wix", b"token", kind) for _ in range(160)]
    emails = [store_event("sendgrid", b"{}", "delivered") for _ in range(80)]
    prefect = _RecordingPrefect()
    first, second = _dispatcher(database_url, prefect), _dispatcher(database_url, prefect)

    # Both drain the same inbox at once, each calling again until it finds nothing due.
    async def drain(dispatcher: Dispatcher) -> int:
        total = 0
        while dispatched := await dispatcher.dispatch_due():
            total += dispatched
        return total

    shares = await asyncio.gather(drain(first), drain(second), drain(first), drain(second))

    handed = _events_handed_over(prefect)
    assert set(handed) == set(bookings) | set(emails)
    assert set(handed.values()) == {1}  # no event was sent to Prefect twice, let alone run twice
    assert len({key for key, _ in prefect.calls}) == len(prefect.calls)  # and no idempotency key twice
    assert sum(shares) == len(bookings) + len(emails)
    statuses = _statuses(database_url)
    assert {status for status, _ in statuses.values()} == {InboxStatus.DISPATCHED}  # none left behind
    booking_runs = [statuses[event_id][1] for event_id in bookings]
    assert len(set(booking_runs)) == len(bookings)  # one run per booking event, as recorded on its row


async def test_a_dispatcher_that_dies_holding_a_claim_delays_its_events_by_the_claim_only(
    database_url: str, db: str
) -> None:
    kind = "wix.bookings.v2.booking_created"
    events = [store_event("wix", b"token", kind) for _ in range(5)]
    prefect = _RecordingPrefect()
    dead = _dispatcher(database_url, prefect, claim_seconds=1.0)
    survivor = _dispatcher(database_url, prefect, claim_seconds=1.0)

    claimed = dead._select_due()  # claimed, then its process died before creating any run
    assert [row.id for row in claimed] == events
    assert await survivor.dispatch_due() == 0  # the claim keeps the other dispatcher off them
    await asyncio.sleep(1.1)
    assert await survivor.dispatch_due() == len(events)  # the claim ran out: picked up, one run each
    assert Counter(_events_handed_over(prefect).values()) == Counter({1: len(events)})
    assert {status for status, _ in _statuses(database_url).values()} == {InboxStatus.DISPATCHED}


async def test_a_late_dispatch_from_an_expired_claim_does_not_take_a_row_from_its_next_run(
    database_url: str, db: str
) -> None:
    """The slow claimant's event was dispatched by another, its run died and the event was handed back for
    a second run: the slow claimant's (first-key) run, arriving last, must not be recorded on the row."""
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    prefect = _RecordingPrefect()
    slow = _dispatcher(database_url, prefect, claim_seconds=0)
    [claimed] = slow._select_due()
    table = WebhookEvent.__table__  # type: ignore[attr-defined]
    with get_engine(database_url).begin() as connection:  # meanwhile: dispatched elsewhere, died, handed back
        connection.execute(
            table.update().where(table.c.id == event_id).values(status=InboxStatus.RECEIVED, redispatches=1)
        )
    assert slow._record_success([claimed], uuid4()) == 0
    with get_engine(database_url).connect() as connection:
        query = select(table.c.status, table.c.flow_run_id).where(table.c.id == event_id)
        row = connection.execute(query).one()
        assert (row.status, row.flow_run_id) == (InboxStatus.RECEIVED, None)
        assert connection.execute(select(func.count()).select_from(table)).scalar_one() == 1
