"""The dispatcher against a Prefect API that is busy (503: a SQLite-backed server's write lock) or gone:
a busy server is asked again within a fraction of a second, not after Prefect's client's 2 s; an outage
leaves the row waiting with its reason, to be dispatched by a later round. A row whose flow run died (crashed,
cancelled, stuck) gets a new run under a new key, a bounded number of times, then fails with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import get_current_settings
from prefect.states import Cancelled, Completed, Crashed, Failed, Pending, Running, Scheduled
from sqlalchemy import event

from models import InboxStatus, WebhookEvent, get_engine, session_scope
from models.types import utcnow
from tests.inbox_events import store_event
from webhook_gateway import dispatcher as dispatching
from webhook_gateway.dead_runs import StuckLimits, heartbeat_window
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
    assert len(prefect.attempts) == dispatching._BUSY.attempts and sum(pauses) < 3.5
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


# --- flow runs whose process died -------------------------------------------------------------------------


@dataclass
class _PrefectWithRuns(_Prefect):
    """Keeps the runs it created, in the state a test gives them, and the automations asked for."""

    busy_answers: int = 0
    runs: dict[UUID, SimpleNamespace] = field(default_factory=dict)
    forced: list[tuple[UUID, str]] = field(default_factory=list)
    automations: list[Any] = field(default_factory=list)
    beating: set[UUID] = field(default_factory=set)  # runs whose heartbeats arrive
    heartbeat_queries: list[Any] = field(default_factory=list)

    async def create_flow_run_from_deployment(self, deployment_id: object, **kw: Any) -> SimpleNamespace:
        await super().create_flow_run_from_deployment(deployment_id, **kw)
        run = SimpleNamespace(id=uuid4(), state=Pending())
        self.runs[run.id] = run
        return run

    async def read_flow_runs(self, *, flow_run_filter: Any, limit: int) -> list[SimpleNamespace]:
        return [self.runs[i] for i in flow_run_filter.id.any_ if i in self.runs][:limit]

    async def read_events(self, *, filter: Any, limit: int) -> SimpleNamespace:
        self.heartbeat_queries.append(filter)
        assert filter.event.name == ["prefect.flow-run.heartbeat"]
        wanted = {UUID(resource.removeprefix("prefect.flow-run.")) for resource in filter.resource.id}
        events = [SimpleNamespace(resource=SimpleNamespace(id=f"prefect.flow-run.{i}")) for i in wanted]
        return SimpleNamespace(events=[e for e in events if UUID(e.resource.id[17:]) in self.beating])

    async def set_flow_run_state(self, flow_run_id: UUID, state: Any, force: bool = False) -> None:
        self.forced.append((flow_run_id, state.type.value))
        self.runs[flow_run_id].state = state

    async def read_automations_by_name(self, name: str) -> list[Any]:
        return [a for a in self.automations if a.name == name]

    async def create_automation(self, automation: Any) -> UUID:
        self.automations.append(automation)
        return uuid4()

    def run_of(self, event_id: int) -> SimpleNamespace:
        return self.runs[UUID(_row(event_id).flow_run_id)]


def _dispatcher(database_url: str, prefect: _PrefectWithRuns, **kw: Any) -> Dispatcher:
    return Dispatcher(get_engine(database_url), prefect, {"wix": "booking-intake/booking-intake"}, **kw)  # type: ignore[arg-type]


def _aged(state: Any, seconds: float) -> Any:
    state.timestamp = utcnow() - timedelta(seconds=seconds)
    return state


async def test_an_event_whose_run_crashed_gets_a_new_run_under_a_new_key(database_url: str, db: str) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    prefect = _PrefectWithRuns()
    dispatcher = _dispatcher(database_url, prefect)
    await dispatcher.dispatch_due()
    first_run = prefect.run_of(event_id)
    first_run.state = Running()
    assert await dispatcher.recover_dead_runs() == 0  # alive: left alone
    first_run.state = Crashed(message="Marked Crashed: no heartbeat from the flow run's process (it died)")

    assert await dispatcher.recover_dead_runs() == 1
    row = _row(event_id)
    assert (row.status, row.redispatches) == (InboxStatus.RECEIVED, 1)
    assert row.last_error == (
        f"flow run {first_run.id} ended Crashed without an outcome: "
        "Marked Crashed: no heartbeat from the flow run's process (it died)"
    )
    assert await dispatcher.dispatch_due() == 1
    first_key, second_key = (attempt["idempotency_key"] for attempt in prefect.attempts)
    assert second_key == f"{first_key}:run2"  # the old key would hand back the dead run
    row = _row(event_id)
    assert row.status == InboxStatus.DISPATCHED and UUID(row.flow_run_id) != first_run.id
    # Prefect's documented zombie-run automation was put in place on the way.
    [automation] = prefect.automations
    assert automation.trigger.within == timedelta(
        seconds=get_current_settings().flows.heartbeat_frequency * 2.5
    )


async def test_an_event_gets_a_bounded_number_of_runs_then_fails_with_the_reason(
    database_url: str, db: str
) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    prefect = _PrefectWithRuns()
    dispatcher = _dispatcher(database_url, prefect, max_runs=3)
    for _ in range(3):
        assert await dispatcher.dispatch_due() == 1
        prefect.run_of(event_id).state = Cancelled()
        assert await dispatcher.recover_dead_runs() == 1
    row = _row(event_id)
    assert row.status == InboxStatus.FAILED and row.processed_at is not None
    assert row.last_error is not None and row.last_error.startswith(
        "gave up after 3 flow runs; the last: flow run"
    )
    assert await dispatcher.dispatch_due() == 0
    assert len(prefect.attempts) == 3


async def test_runs_stuck_in_pending_or_silent_while_running_are_crashed_and_replaced(
    database_url: str, db: str
) -> None:
    kind = "wix.bookings.v2.booking_created"
    pending, silent, beating, young = (store_event("wix", b"token", kind) for _ in range(4))
    prefect = _PrefectWithRuns()
    window = heartbeat_window()
    assert window is not None  # heartbeats are on by default (every 180 s; 30 s under `make up`)
    dispatcher = _dispatcher(database_url, prefect, stuck=StuckLimits(timedelta(seconds=60), timedelta(0)))
    await dispatcher.dispatch_due()
    prefect.run_of(pending).state = _aged(Pending(), 61)
    prefect.run_of(silent).state = _aged(Running(), window.total_seconds() + 5)
    prefect.run_of(beating).state = _aged(Running(), window.total_seconds() + 5)
    prefect.beating.add(prefect.run_of(beating).id)
    prefect.run_of(young).state = _aged(Running(), window.total_seconds() - 5)  # no need to ask yet
    stuck_runs = {prefect.run_of(pending).id, prefect.run_of(silent).id}

    assert await dispatcher.recover_dead_runs() == 2
    assert {run_id for run_id, _ in prefect.forced} == stuck_runs  # the UI shows them Crashed, with why
    assert {state for _, state in prefect.forced} == {"CRASHED"}
    assert _row(pending).status == _row(silent).status == InboxStatus.RECEIVED
    assert "stuck in Pending for 6" in (_row(pending).last_error or "")
    assert "Running with no heartbeat for" in (_row(silent).last_error or "")
    assert _row(beating).status == _row(young).status == InboxStatus.DISPATCHED
    [query] = prefect.heartbeat_queries
    assert len(query.resource.id) == 2  # only the runs old enough to have missed their heartbeats


@dataclass
class _TaskWorkers:
    """Stands in for `webhook_gateway.background.BackgroundTask`: whether a task worker serves the booking
    task, and the task runs handed to it (kept in the fake Prefect's task runs, Scheduled)."""

    prefect: _PrefectWithRuns
    serving: bool = True
    submitted: list[tuple[int, str]] = field(default_factory=list)

    async def served(self, client: object) -> bool:
        return self.serving

    async def submit(self, event_id: int, name: str) -> UUID:
        self.submitted.append((event_id, name))
        run = SimpleNamespace(id=uuid4(), state=Scheduled())
        self.prefect.task_runs[run.id] = run
        return run.id


@dataclass
class _PrefectWithTaskRuns(_PrefectWithRuns):
    task_runs: dict[UUID, SimpleNamespace] = field(default_factory=dict)
    forced_tasks: list[tuple[UUID, str]] = field(default_factory=list)

    async def read_task_runs(self, *, task_run_filter: Any, limit: int) -> list[SimpleNamespace]:
        return [self.task_runs[i] for i in task_run_filter.id.any_ if i in self.task_runs][:limit]

    async def set_task_run_state(self, task_run_id: UUID, state: Any, force: bool = False) -> None:
        self.forced_tasks.append((task_run_id, state.type.value))
        self.task_runs[task_run_id].state = state


def _with_task_workers(database_url: str, **kw: Any) -> tuple[Dispatcher, _PrefectWithTaskRuns, _TaskWorkers]:
    prefect = _PrefectWithTaskRuns()
    workers = _TaskWorkers(prefect)
    dispatcher = _dispatcher(database_url, prefect, background={"wix": workers}, **kw)
    return dispatcher, prefect, workers


async def test_a_lone_booking_goes_to_a_task_worker_and_if_that_run_dies_to_a_flow_run(
    database_url: str, db: str
) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    dispatcher, prefect, workers = _with_task_workers(database_url)
    assert await dispatcher.dispatch_due() == 1
    assert workers.submitted == [(event_id, f"booking-event-{event_id}")]
    assert prefect.attempts == []  # no flow run
    [task_run_id] = prefect.task_runs
    assert _row(event_id).flow_run_id == str(task_run_id)

    prefect.task_runs[task_run_id].state = _aged(Running(), 100)
    assert await dispatcher.recover_dead_runs() == 0  # at work (a booking takes a second; 2 min is dead)
    prefect.task_runs[task_run_id].state = _aged(Running(), 121)  # its task worker was killed
    assert await dispatcher.recover_dead_runs() == 1
    assert prefect.forced_tasks == [(task_run_id, "CRASHED")]  # the UI says so; it cannot finish later
    row = _row(event_id)
    assert (row.status, row.redispatches) == (InboxStatus.RECEIVED, 1)
    assert f"task run {task_run_id} Running for 12" in (row.last_error or "")

    assert await dispatcher.dispatch_due() == 1  # its next run is a flow run, whatever the task workers do
    assert len(workers.submitted) == 1 and len(prefect.attempts) == 1
    assert prefect.attempts[0]["idempotency_key"].endswith(":run2")
    assert UUID(_row(event_id).flow_run_id) in prefect.runs


async def test_with_no_task_worker_serving_a_lone_booking_gets_a_flow_run(database_url: str, db: str) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    dispatcher, prefect, workers = _with_task_workers(database_url)
    workers.serving = False
    assert await dispatcher.dispatch_due() == 1
    assert workers.submitted == [] and prefect.task_runs == {}
    assert UUID(_row(event_id).flow_run_id) in prefect.runs


async def test_a_booking_that_cannot_be_handed_to_a_task_worker_gets_a_flow_run(
    database_url: str, db: str
) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    dispatcher, prefect, workers = _with_task_workers(database_url)

    async def refused(event_id: int, name: str) -> UUID:
        raise OSError("task parameters could not be stored")

    workers.submit = refused  # type: ignore[method-assign]
    assert await dispatcher.dispatch_due() == 1
    assert dispatcher.failed_rounds == 0
    assert UUID(_row(event_id).flow_run_id) in prefect.runs


async def test_task_runs_never_taken_or_ended_without_an_outcome_are_handed_back(
    database_url: str, db: str
) -> None:
    kind = "wix.bookings.v2.booking_created"
    untaken, ended, waiting = (store_event("wix", b"token", kind) for _ in range(3))
    dispatcher, prefect, workers = _with_task_workers(
        database_url, stuck=StuckLimits(timedelta(seconds=60), timedelta(minutes=30))
    )
    assert await dispatcher.dispatch_due() == 3
    assert len(workers.submitted) == 3
    runs = {event_id: UUID(_row(event_id).flow_run_id) for event_id in (untaken, ended, waiting)}
    prefect.task_runs[runs[untaken]].state = _aged(Scheduled(), 61)  # no task worker took it
    prefect.task_runs[runs[ended]].state = Failed(message="parameters could not be read")
    prefect.task_runs[runs[waiting]].state = _aged(Scheduled(), 5)

    assert await dispatcher.recover_dead_runs() == 2
    assert "not taken by a task worker for 6" in (_row(untaken).last_error or "")
    assert _row(ended).last_error == (
        f"task run {runs[ended]} ended Failed without an outcome: parameters could not be read"
    )
    assert prefect.forced_tasks == [(runs[untaken], "CRASHED")]  # a final one is left as it ended
    assert _row(waiting).status == InboxStatus.DISPATCHED


async def test_a_row_finished_by_its_run_meanwhile_is_not_handed_back(database_url: str, db: str) -> None:
    event_id = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    prefect = _PrefectWithRuns()
    dispatcher = _dispatcher(database_url, prefect)
    await dispatcher.dispatch_due()
    prefect.run_of(event_id).state = Completed()
    [dispatched] = dispatcher._select_dispatched(0)
    with session_scope() as session:  # the run marked it processed just after the dispatcher read it
        stored = session.get(WebhookEvent, event_id)
        assert stored is not None
        stored.status = InboxStatus.PROCESSED
        session.add(stored)
    assert dispatcher._hand_back([(dispatched, "ended Completed")]) == 0
    assert _row(event_id).status == InboxStatus.PROCESSED


async def test_booking_events_get_a_run_each_until_a_backlog_builds_then_runs_of_a_batch(
    database_url: str, db: str
) -> None:
    engine = get_engine(database_url)
    deployments = {"wix": "booking-intake/booking-intake"}
    prefect = _Prefect(busy_answers=0)
    backlog = {"batched_in_backlog": {"wix"}, "backlog_threshold": 4, "backlog_batch": 3}
    few = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(3)]
    dispatcher = Dispatcher(engine, prefect, deployments, **backlog)  # type: ignore[arg-type]

    assert await dispatcher.dispatch_due() == 3  # under the threshold: a run per booking, as when idle
    assert [a["parameters"] for a in prefect.attempts] == [{"event_id": event_id} for event_id in few]

    prefect.attempts.clear()
    burst = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(7)]
    assert await dispatcher.dispatch_due() == 7
    assert [a["parameters"] for a in prefect.attempts] == [
        {"event_ids": burst[0:3]},
        {"event_ids": burst[3:6]},
        {"event_id": burst[6]},  # what is left over is one event, dispatched as one
    ]
    keys = [a["idempotency_key"] for a in prefect.attempts]
    assert keys[:2] == [f"wix:batch:{burst[0]}-{burst[2]}", f"wix:batch:{burst[3]}-{burst[5]}"]
    assert prefect.attempts[0]["name"] == f"booking-events-{burst[0]}-{burst[2]} (3)"
    runs = {_row(event_id).flow_run_id for event_id in burst}
    assert len(runs) == 3 and all(_row(event_id).status == InboxStatus.DISPATCHED for event_id in burst)

    prefect.attempts.clear()
    more = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(5)]
    never = Dispatcher(engine, prefect, deployments, batched_in_backlog={"wix"}, backlog_threshold=0)  # type: ignore[arg-type]
    assert await never.dispatch_due() == 5  # threshold 0: batching off
    assert [a["parameters"] for a in prefect.attempts] == [{"event_id": event_id} for event_id in more]


async def test_booking_events_are_batched_while_earlier_runs_still_hold_a_backlog(
    database_url: str, db: str
) -> None:
    """A steady stream faster than runs finish is a backlog too, though each round finds only a few due."""
    engine = get_engine(database_url)
    prefect = _Prefect(busy_answers=0)
    backlog = {"batched_in_backlog": {"wix"}, "backlog_threshold": 4, "backlog_batch": 3}
    dispatcher = Dispatcher(engine, prefect, {"wix": "booking-intake/booking-intake"}, **backlog)  # type: ignore[arg-type]
    first = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(3)]
    assert await dispatcher.dispatch_due() == 3
    assert [a["parameters"] for a in prefect.attempts] == [{"event_id": event_id} for event_id in first]

    prefect.attempts.clear()
    next_two = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(2)]
    assert await dispatcher.dispatch_due() == 2  # 3 still in runs + 2 due: a backlog, one run of both
    assert [a["parameters"] for a in prefect.attempts] == [{"event_ids": next_two}]

    with session_scope() as session:  # the runs finish everything they held
        for event_id in [*first, *next_two]:
            stored = session.get(WebhookEvent, event_id)
            assert stored is not None
            stored.status = InboxStatus.PROCESSED
            session.add(stored)
    prefect.attempts.clear()
    lone = store_event("wix", b"token", "wix.bookings.v2.booking_created")
    assert await dispatcher.dispatch_due() == 1  # nothing waiting any more: a run of its own again
    assert [a["parameters"] for a in prefect.attempts] == [{"event_id": lone}]


def _finish(event_ids: list[int]) -> None:
    with session_scope() as session:
        for event_id in event_ids:
            stored = session.get(WebhookEvent, event_id)
            assert stored is not None
            stored.status = InboxStatus.PROCESSED
            session.add(stored)


async def test_a_backlog_keeps_at_most_backlog_runs_under_way_and_the_rest_waits_for_full_batches(
    database_url: str, db: str
) -> None:
    """Small runs queued behind busy workers only add each run's start-up cost: the backlog waits in the inbox
    instead, and goes out in full batches as runs finish; nothing is lost or dispatched twice meanwhile."""
    engine = get_engine(database_url)
    prefect = _Prefect(busy_answers=0)
    backlog = {"batched_in_backlog": {"wix"}, "backlog_threshold": 2, "backlog_batch": 3, "backlog_runs": 2}
    dispatcher = Dispatcher(engine, prefect, {"wix": "booking-intake/booking-intake"}, **backlog)  # type: ignore[arg-type]
    burst = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(8)]
    assert await dispatcher.dispatch_due() == 6  # two runs of three; the other two wait
    assert [a["parameters"] for a in prefect.attempts] == [
        {"event_ids": burst[0:3]},
        {"event_ids": burst[3:6]},
    ]
    held = burst[6:]
    assert [_row(event_id).status for event_id in held] == [InboxStatus.RECEIVED] * 2
    assert all(_row(event_id).next_dispatch_at <= utcnow() for event_id in held)  # due, not leased away

    more = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(2)]
    assert await dispatcher.dispatch_due() == 0  # both runs still under way: nothing more goes out
    assert len(prefect.attempts) == 2

    _finish(burst[0:3])  # one run is done
    assert await dispatcher.dispatch_due() == 3  # one full batch in its place
    assert prefect.attempts[2]["parameters"] == {"event_ids": [*held, more[0]]}
    _finish(burst[3:6])
    assert await dispatcher.dispatch_due() == 1
    assert prefect.attempts[3]["parameters"] == {"event_id": more[1]}  # what is left: one event, one run
    runs = [_row(event_id).flow_run_id for event_id in [*burst, *more]]
    assert None not in runs and len(set(runs)) == 4  # every event in exactly one run


async def test_while_a_backlog_is_held_a_stream_of_webhooks_starts_a_round_at_most_every_quarter_second(
    database_url: str, db: str
) -> None:
    """Each round claims, counts and gives back the held rows; during a burst every webhook wakes the
    dispatcher, and those three transactions per webhook would queue on the inbox's write lock. Held, it
    wakes for them at most every `_HOLDING_PAUSE`, and still dispatches what comes due once a run is done."""
    engine = get_engine(database_url)
    prefect = _Prefect(busy_answers=0)
    backlog = {"batched_in_backlog": {"wix"}, "backlog_threshold": 2, "backlog_batch": 3, "backlog_runs": 1}
    dispatcher = Dispatcher(
        engine,
        prefect,
        {"wix": "booking-intake/booking-intake"},
        poll_seconds=30,
        recovery_seconds=3600,
        **backlog,
    )  # type: ignore[arg-type]
    burst = [store_event("wix", b"token", "wix.bookings.v2.booking_created") for _ in range(5)]
    inbox_writes: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith(f"UPDATE {WebhookEvent.__tablename__.upper()} "):
            inbox_writes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    loop = asyncio.create_task(dispatcher.run_forever())
    try:
        await _until(lambda: len(prefect.attempts) == 1)  # one run of three under way, two events held
        started = len(inbox_writes)
        began = time.monotonic()
        while time.monotonic() - began < 1.0:  # a webhook every 20 ms for a second
            store_event("wix", b"token", "wix.bookings.v2.booking_created")
            dispatcher.wake()
            await asyncio.sleep(0.02)
        rounds = (len(inbox_writes) - started) / 2  # each held round: the claim and the give-back
        assert 1 <= rounds <= 6, rounds  # about 4 (1 s / 0.25 s), not about 50
        assert len(prefect.attempts) == 1  # and nothing went out meanwhile

        _finish(burst[0:3])
        dispatcher.wake()
        await _until(lambda: len(prefect.attempts) == 2)  # the next full batch, well before the 30 s poll
        assert prefect.attempts[1]["parameters"] == {"event_ids": [*burst[3:5], burst[4] + 1]}
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        event.remove(engine, "before_cursor_execute", count)


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (up to 10 s) for what the dispatcher's own task does meanwhile."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the dispatcher never got there")
