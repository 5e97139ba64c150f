"""The dispatcher against a Prefect API that is busy (503: a SQLite-backed server's write lock) or gone:
a busy server is asked again within a fraction of a second, not after Prefect's client's 2 s; an outage
leaves the row waiting with its reason, to be dispatched by a later round."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prefect.exceptions import PrefectHTTPStatusError

from models import InboxStatus, WebhookEvent, get_engine, session_scope
from tests.inbox_events import store_event
from webhook_gateway import dispatcher as dispatching
from webhook_gateway.dispatcher import Dispatcher

pytestmark = pytest.mark.db


def _busy() -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://prefect.test/api/deployments/x/create_flow_run")
    response = httpx.Response(503, json={"exception_message": "Service Unavailable"}, request=request)
    return PrefectHTTPStatusError.from_httpx_error(
        httpx.HTTPStatusError("503", request=request, response=response)
    )


@dataclass
class _Prefect:
    busy_answers: int
    attempts: list[dict[str, Any]] = field(default_factory=list)

    async def read_deployment_by_name(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(id=uuid4())

    async def create_flow_run_from_deployment(self, deployment_id: object, **kw: Any) -> SimpleNamespace:
        self.attempts.append(kw)
        if len(self.attempts) <= self.busy_answers:
            raise _busy()
        return SimpleNamespace(id=uuid4())


def _row(event_id: int) -> WebhookEvent:
    with session_scope() as session:
        row = session.get(WebhookEvent, event_id)
        assert row is not None
        session.expunge(row)
        return row


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(dispatching.asyncio, "sleep", sleep)
    return slept


async def test_a_busy_server_is_asked_again_quickly_with_the_same_idempotency_key(
    database_url: str, db: str, pauses: list[float]
) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    prefect = _Prefect(busy_answers=3)
    dispatcher = Dispatcher(get_engine(database_url), prefect, {"wix": "booking-intake/booking-intake"})  # type: ignore[arg-type]

    assert await dispatcher.dispatch_due() == 1
    assert len(prefect.attempts) == 4
    assert (
        len({a["idempotency_key"] for a in prefect.attempts}) == 1
    )  # Prefect keeps one run however many asks
    assert len(pauses) == 3 and sum(pauses) < 0.5
    row = _row(event_id)
    assert row.status == InboxStatus.DISPATCHED and row.flow_run_id


async def test_a_server_busy_for_seconds_leaves_the_row_for_a_later_round(
    database_url: str, db: str, pauses: list[float]
) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    prefect = _Prefect(busy_answers=100)
    dispatcher = Dispatcher(get_engine(database_url), prefect, {"wix": "booking-intake/booking-intake"})  # type: ignore[arg-type]

    assert await dispatcher.dispatch_due() == 0
    assert len(prefect.attempts) == len(dispatching._BUSY_PAUSES) + 1 and sum(pauses) < 3.5
    row = _row(event_id)
    assert row.status == InboxStatus.RECEIVED and row.dispatch_attempts == 1
    assert "503" in (row.last_error or "")

    prefect.busy_answers = 0
    with session_scope() as session:  # its backoff has passed
        stored = session.get(WebhookEvent, event_id)
        assert stored is not None
        stored.next_dispatch_at = stored.received_at
        session.add(stored)
    assert await dispatcher.dispatch_due() == 1
    assert _row(event_id).status == InboxStatus.DISPATCHED
