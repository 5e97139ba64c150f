"""Hands committed inbox rows to Prefect as flow runs, and keeps trying until Prefect has them.

One loop creates the runs (a SQLite-backed Prefect server locks under concurrent writes), woken as soon as
a new event is stored and otherwise polling. The flow-run idempotency key is derived from the inbox row, so
whatever happens — a crash between creating the run and recording it, two gateways racing — Prefect holds
at most one run per event.

Sources named in `batched` (delivery receipts: thousands a minute during a campaign) get one run per batch of
due rows instead (`event_ids`), keyed by the batch's first and last row; their flows are idempotent per row,
so a batch that is re-dispatched with different neighbours does no harm.

Sources named in `batched_in_backlog` (booking events) get a run each while they trickle in, so a lone
booking's patient hears back within a couple of seconds and each booking is one run in the Prefect UI. When
`backlog_threshold` or more of them are waiting (due this round, or dispatched to runs that have not finished
them: a burst, a reconciliation backfill, or a steady stream faster than runs finish), they go out in runs of
up to `backlog_batch` events instead (still one task run per booking inside): a run costs the embedded
stack about a second of CPU before it does anything (a process worker's run, a new interpreter, several),
which is what limited a burst to about one booking a second. In a backlog at most `backlog_runs` such runs
are under way at once: the rest wait in the inbox (not as small runs queued in Prefect) and go out together,
in full batches, as runs finish. While it holds a backlog, a round starts at most every `_HOLDING_PAUSE`
however many webhooks wake it (each round claims, counts and gives back the held rows: three transactions that
during a burst would otherwise come with every webhook). The per-event rules (newest revision wins, one
outcome per row, idempotent message keys) are the same in a batch, so the guarantees do not depend on how an
event was dispatched.

A row stays `dispatched` until its run marks it `processed` or `failed`. A run whose process died never will:
every `recovery_seconds` (and first thing after a start, so a restarted stack re-examines everything left
`dispatched`) the dispatcher reads the runs of all dispatched rows and hands a row whose run is dead
(`dead_runs.py`) back as `received` with its reason and a new attempt number, which is part of the next run's
idempotency key; after `max_runs` runs the row is `failed` with the reason.

Several gateways (each with its dispatcher) may share one PostgreSQL inbox. Each round *claims* its batch:
`SELECT … FOR UPDATE SKIP LOCKED` of the due rows, then, in the same short transaction, their
`next_dispatch_at` moved `claim_seconds` ahead (a lease), so the other dispatchers skip the rows while the
claim is being decided and do not see them as due afterwards. Chosen over an advisory-lock leader because
every gateway keeps dispatching (no stand-by, no failover gap, nothing to hand over when the leader's host
is cut off but its PostgreSQL session lingers): a dispatcher that dies mid-batch only delays the rows it
claimed by the lease, and whoever claims them next creates the run under the same idempotency key, so a
lease that runs out while its holder is still working costs one more request, never a second run. A row
is recorded as dispatched only if it was not handed back to another run meanwhile (`redispatches`
unchanged). On SQLite (one box) the claim is the same statement in a `BEGIN IMMEDIATE` transaction, which
serializes it (SQLAlchemy leaves `FOR UPDATE` out there). Dead-run recovery needs no claim: each hand-back
is conditional on the row still naming the dead run, so two dispatchers hand a row back once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from anyio import to_thread
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterId
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.states import Crashed
from sqlalchemy import Engine, bindparam, case, distinct, func, select, update

from models import InboxStatus, WebhookEvent
from models.types import utcnow
from providers import wix
from providers.retry import PREFECT_BUSY, Backoff, RetryPolicy
from webhook_gateway.background import BackgroundTask
from webhook_gateway.dead_runs import (
    StuckLimits,
    dead_reason,
    dead_task_reason,
    ensure_zombie_automation,
    heartbeat_window,
    needs_heartbeat_check,
)

logger = logging.getLogger(__name__)

_TABLE = WebhookEvent.__table__  # type: ignore[attr-defined]
_BATCH = 50
_HOLDING_PAUSE = 0.25  # seconds between rounds while a backlog is held (see the module docstring)
_RECOVERY_PAGE = 200
_STUCK = StuckLimits(pending=timedelta(seconds=90), running=timedelta(minutes=30))
# A SQLite-backed Prefect server answers 503 while another writer holds its lock, usually for tens of
# milliseconds. Prefect's client would wait 2 s (then 4, 8 …) before asking again; the dispatcher asks again
# sooner (0.05 s doubling to 1.6 s, six retries), and leaves longer outages to its own per-row backoff.
_BUSY = RetryPolicy(7, Backoff(0.05, 1.6, jitter="half"), PREFECT_BUSY)
_jitter = (
    random.Random()
)  # its own generator: backoff jitter must not disturb (or be seeded by) anyone else's


@dataclass(frozen=True)
class _Due:
    id: int
    source: str
    dedupe_key: str
    event_type: str
    dispatch_attempts: int
    redispatches: int
    subject: str | None = None
    revision: int | None = None


@dataclass(frozen=True)
class InFlight:
    """A source's events dispatched to runs that have not finished them, and how many runs those are."""

    events: int
    runs: int


def run_name(rows: list[_Due]) -> str:
    """The flow run's name, set once here where the run is created, from the row's clear columns (no patient
    data, nothing decoded): `rescheduled 4d5088e6 rev 2 (event 7)`, `sms-reply-8`, `email-events-9-40`."""
    first, last = rows[0], rows[-1]
    if first.source in {"wix", "wix-reconcile"}:
        action = wix.action_for(first.event_type)
        if len(rows) > 1:
            return f"booking-events-{first.id}-{last.id} ({len(rows)})"
        if first.subject is None or action is None:
            return f"booking-event-{first.id}"
        revision = f" rev {first.revision}" if first.revision is not None else ""
        return f"{action.value} {first.subject[:8]}{revision} (event {first.id})"
    if first.source == "mobilemessage":
        return f"sms-reply-{first.id}"
    if first.source == "mobilemessage-status":
        return f"delivery-receipts-{first.id}"
    if first.source == "sendgrid":
        return f"email-events-{first.id}-{last.id}" if len(rows) > 1 else f"email-events-{first.id}"
    return (
        f"{first.source}-event-{first.id}"
        if len(rows) == 1
        else f"{first.source}-events-{first.id}-{last.id}"
    )


@dataclass(frozen=True)
class _Dispatched:
    id: int
    flow_run_id: str
    redispatches: int


class Dispatcher:
    """Creates one Prefect flow run per inbox row; `deployments` maps an inbox source to a deployment name."""

    def __init__(
        self,
        engine: Engine,
        client: PrefectClient,
        deployments: Mapping[str, str],
        *,
        poll_seconds: float = 2.0,
        max_backoff_seconds: float = 300.0,
        batched: Collection[str] = (),
        batched_in_backlog: Collection[str] = (),
        backlog_threshold: int = 8,
        backlog_batch: int = 10,
        backlog_runs: int = 8,
        recovery_seconds: float = 30.0,
        stuck: StuckLimits = _STUCK,
        max_runs: int = 3,
        claim_seconds: float = 60.0,
        background: Mapping[str, BackgroundTask] | None = None,
    ) -> None:
        self._engine = engine
        self._client = client
        self._deployments = dict(deployments)
        self._background = dict(background or {})  # source -> the task its lone events' first runs use
        self._batched = frozenset(batched)
        self._batched_in_backlog = frozenset(batched_in_backlog)
        self._backlog_threshold = backlog_threshold  # 0: never batch them
        self._backlog_batch = max(1, backlog_batch)
        self._backlog_runs = max(1, backlog_runs)
        self._poll_seconds = poll_seconds
        # Prefect unreachable: 1 s doubling per failed round (and per row's attempt), at most max_backoff.
        self._backoff = Backoff(1.0, max_backoff_seconds, jitter="half")
        self._wakeup = asyncio.Event()
        self._deployment_ids: dict[str, UUID] = {}
        self._failed_rounds = 0
        self._last_failure = ""
        self._running = False
        self._recovery_seconds = recovery_seconds
        self._stuck = stuck
        self._max_runs = max_runs
        self._claim = timedelta(seconds=claim_seconds)
        self._next_recovery = 0.0  # monotonic: the first round looks at once
        self._holding = False  # the last round held rows back (a backlog waits for runs to finish)
        self._automation_ready = False
        # For `/metrics`: dispatches put back to retry, and events handed back because their run died.
        self.retries = 0
        self.redispatches = 0

    @property
    def failed_rounds(self) -> int:
        """Dispatch rounds failed in a row (Prefect unreachable or refusing); 0 once one succeeds."""
        return self._failed_rounds

    @property
    def readiness_deployment(self) -> str:
        """The deployment whose readiness says whether a runner is serving (the booking one if any)."""
        return self._deployments.get("wix") or next(iter(self._deployments.values()))

    def status(self) -> str:
        """For `/readyz`: `ok`, `stopped`, or why the last dispatch failed while it is backing off."""
        if not self._running:
            return "stopped"
        if self._failed_rounds:
            return f"retrying ({self._failed_rounds} failed rounds): {self._last_failure}"
        return "ok"

    def _pause_after_failure(self) -> float:
        """While Prefect is down, new webhooks must not each trigger another doomed attempt."""
        return self._backoff.delay(self._failed_rounds, rng=_jitter)

    def wake(self) -> None:
        self._wakeup.set()

    async def run_forever(self) -> None:
        # Prefect's own client retries (2 s, 4 s … on a 503 or a refused connection) are off in this task
        # only: `_create_run` retries a busy server quickly, and an unreachable one is the per-row backoff's.
        self._running = True
        try:
            with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
                await self._loop()
        finally:
            self._running = False

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() >= self._next_recovery:
                self._next_recovery = loop.time() + self._recovery_seconds
                try:
                    await self.recover_dead_runs()
                except Exception as exc:  # Prefect down: the next round looks again
                    logger.warning("could not look for dead flow runs: %s", _reason(exc))
            try:
                await self.dispatch_due()
            except Exception:  # the loop must outlive any one bad round (DB briefly locked, etc.)
                logger.exception("dispatch round failed; will retry")
            if self._failed_rounds:
                await asyncio.sleep(self._pause_after_failure())
                continue
            if self._holding:  # the webhooks arriving meanwhile are woken together, a round later
                await asyncio.sleep(_HOLDING_PAUSE)
            timeout = min(self._poll_seconds, max(0.0, self._next_recovery - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
            self._wakeup.clear()

    async def dispatch_due(self) -> int:
        """Dispatch every row that is due; returns how many now have a flow run."""
        dispatched = 0
        self._holding = False
        while True:
            due = await to_thread.run_sync(self._select_due)
            if not due:
                return dispatched
            pending, held = self._group(due, await to_thread.run_sync(self._in_flight, due))
            while pending:
                rows = pending.pop(0)
                try:
                    flow_run_id = await self._start(rows)
                except Exception as exc:
                    self._failed_rounds += 1
                    self._last_failure = _reason(exc)
                    await to_thread.run_sync(self._record_failure, rows, self._last_failure)
                    # The rest of the claim is due again at once; the failed-round pause decides when.
                    await to_thread.run_sync(
                        self._release, [row for group in pending for row in group] + held
                    )
                    return dispatched  # Prefect is probably down: back off instead of hammering it
                self._failed_rounds = 0
                dispatched += await to_thread.run_sync(self._record_success, rows, flow_run_id)
            if held:  # due again at once, dispatched in a later round once runs have finished
                await to_thread.run_sync(self._release, held)
                self._holding = True
                return dispatched
            if len(due) < _BATCH:
                return dispatched

    def _group(
        self, due: list[_Due], in_flight: Mapping[str, InFlight]
    ) -> tuple[list[list[_Due]], list[_Due]]:
        """The runs this round's rows go out in, and the rows held back: a batch per batched source, a run
        per event otherwise, and runs of `backlog_batch` for a backlog of a source batched in backlogs (its
        rows due now plus those `in_flight`, dispatched to runs not done with them), as many runs as keep
        `backlog_runs` under way; the rest of that backlog is held."""
        groups: dict[str, list[_Due]] = {}
        for row in due:
            if row.source in self._batched:
                groups.setdefault(row.source, []).append(row)
            elif row.source in self._batched_in_backlog:
                groups.setdefault(f"backlog:{row.source}", []).append(row)
            else:
                groups[f"event:{row.id}"] = [row]
        runs: list[list[_Due]] = []
        held: list[_Due] = []
        for key, rows in groups.items():
            busy = in_flight.get(rows[0].source, InFlight(0, 0))
            if not key.startswith("backlog:"):
                runs.append(rows)
            elif self._backlog_threshold and len(rows) + busy.events >= self._backlog_threshold:
                size = self._backlog_batch
                batches = [rows[start : start + size] for start in range(0, len(rows), size)]
                room = max(0, self._backlog_runs - busy.runs)
                runs += batches[:room]
                held += [row for batch in batches[room:] for row in batch]
            else:
                runs += [[row] for row in rows]
        return runs, held

    async def recover_dead_runs(self) -> int:
        """Hand back every dispatched row whose flow run is dead; returns how many were handed back/failed."""
        if not self._automation_ready:
            try:
                await ensure_zombie_automation(self._client)
                self._automation_ready = True
            except PrefectHTTPStatusError as exc:  # not for want of it must dead runs go unnoticed
                logger.warning("could not put the zombie flow-run automation in place: %s", _reason(exc))
        handled, after = 0, 0
        while True:
            rows = await to_thread.run_sync(self._select_dispatched, after)
            if not rows:
                return handled
            after = rows[-1].id
            runs = await self._read_runs({row.flow_run_id for row in rows})
            tasks = await self._read_task_runs({row.flow_run_id for row in rows} - set(runs))
            now, window = utcnow(), heartbeat_window()
            silent = await self._silent([r for r in runs.values() if needs_heartbeat_check(r, now, window)])
            dead: list[tuple[_Dispatched, str]] = []
            crashed: set[str] = set()
            for row in rows:
                run_id = row.flow_run_id
                if run_id in tasks:
                    reason, crash_first = dead_task_reason(tasks[run_id], now, self._stuck)
                else:
                    reason, crash_first = dead_reason(
                        runs.get(run_id), now, self._stuck, window, run_id in silent
                    )
                if reason is None:
                    continue
                if crash_first and run_id not in crashed:
                    # So the Prefect UI says what happened, and a run that was only slow cannot finish later.
                    if run_id in tasks:
                        await self._client.set_task_run_state(
                            UUID(run_id), Crashed(message=reason), force=True
                        )
                    else:
                        await self._client.set_flow_run_state(
                            UUID(run_id), Crashed(message=reason), force=True
                        )
                    crashed.add(run_id)
                dead.append((row, reason))
            handled += await to_thread.run_sync(self._hand_back, dead)

    async def _read_runs(self, ids: set[str]) -> dict[str, FlowRun]:
        runs = await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in ids])), limit=len(ids)
        )
        return {str(run.id): run for run in runs}

    async def _read_task_runs(self, ids: set[str]) -> dict[str, TaskRun]:
        """The background task runs among run ids that are no flow run (`background.py`)."""
        if not ids:
            return {}
        runs = await self._client.read_task_runs(
            task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=[UUID(i) for i in ids])), limit=len(ids)
        )
        return {str(run.id): run for run in runs}

    async def _silent(self, runs: list[FlowRun]) -> set[str]:
        """Those of `runs` with no heartbeat event within the heartbeat window (Prefect's events API)."""
        window = heartbeat_window()
        if not runs or window is None:
            return set()
        resources = {f"prefect.flow-run.{run.id}": str(run.id) for run in runs}
        page = await self._client.read_events(
            filter=EventFilter(
                occurred=EventOccurredFilter(since=utcnow() - window),
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=list(resources), distinct=True),
            ),
            limit=len(resources),
        )
        beating = {resources.get(event.resource.id) for event in page.events}
        return set(resources.values()) - beating

    async def _start(self, rows: list[_Due]) -> UUID:
        """The run of these rows: a background task run for a lone event's first run where a task worker
        serves its source (`background.py`), else a flow run."""
        first = rows[0]
        background = self._background.get(first.source)
        if (
            background is not None
            and len(rows) == 1
            and first.redispatches == 0
            and first.source not in self._batched
        ):
            try:
                served = await background.served(self._client)
            except Exception as exc:  # Prefect busy or down: the flow run's own retries decide
                logger.warning("could not ask Prefect for task workers: %s", _reason(exc))
                served = False
            if served:
                name = run_name(rows)
                try:
                    task_run_id = await background.submit(first.id, name)
                except Exception as exc:  # e.g. its parameters could not be stored: a flow run never fails so
                    logger.warning("inbox event %s to a flow run, not a task run: %s", first.id, _reason(exc))
                else:
                    logger.info("inbox event %s (%s) -> task run %s", name, first.event_type, task_run_id)
                    return task_run_id
        return await self._create_run(rows)

    async def _create_run(self, rows: list[_Due]) -> UUID:
        source = rows[0].source
        deployment_name = self._deployments.get(source)
        if deployment_name is None:
            raise LookupError(f"no deployment handles source {source!r}")
        deployment_id = self._deployment_ids.get(deployment_name)
        if deployment_id is None:
            deployment = await self._client.read_deployment_by_name(deployment_name)
            deployment_id = self._deployment_ids[deployment_name] = deployment.id
        # A new run for an event whose previous run died needs a new key (the old one names the dead run).
        attempt = max(row.redispatches for row in rows)
        suffix = f":run{attempt + 1}" if attempt else ""
        if source in self._batched or len(rows) > 1:
            ids = [row.id for row in rows]
            parameters: dict[str, object] = {"event_ids": ids}
            key = f"{source}:batch:{ids[0]}-{ids[-1]}{suffix}"
        else:
            row = rows[0]
            parameters = {"event_id": row.id}
            key = f"{row.source}:{row.dedupe_key}{suffix}"
        name = run_name(rows)
        for attempt in range(1, _BUSY.attempts + 1):
            try:  # safe to repeat: the idempotency key makes a second create return the first run
                flow_run = await self._client.create_flow_run_from_deployment(
                    deployment_id,
                    parameters=parameters,
                    idempotency_key=key,
                    name=name,
                    tags=[f"source:{source}"],
                )
                break
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code not in _BUSY.retryable or attempt == _BUSY.attempts:
                    raise
            await asyncio.sleep(_BUSY.delay(attempt, rng=_jitter))
        logger.info("inbox event(s) %s (%s) -> flow run %s", name, rows[0].event_type, flow_run.id)
        return flow_run.id

    # --- database side (run in a worker thread) ------------------------------------------------------

    def _select_due(self) -> list[_Due]:
        """Claim up to a batch of due rows (see the module docstring): locked rows another dispatcher is
        claiming are skipped, and the claimed ones stay out of everyone's way for `claim_seconds`."""
        query = (
            select(
                _TABLE.c.id,
                _TABLE.c.source,
                _TABLE.c.dedupe_key,
                _TABLE.c.event_type,
                _TABLE.c.dispatch_attempts,
                _TABLE.c.redispatches,
                _TABLE.c.subject,
                _TABLE.c.revision,
            )
            .where(_TABLE.c.status == InboxStatus.RECEIVED, _TABLE.c.next_dispatch_at <= utcnow())
            .order_by(_TABLE.c.id)
            .limit(_BATCH)
            .with_for_update(skip_locked=True)
        )
        with self._engine.begin() as connection:
            due = [_Due(*row) for row in connection.execute(query)]
            if due:
                connection.execute(
                    update(_TABLE)
                    .where(_TABLE.c.id.in_([row.id for row in due]))
                    .values(next_dispatch_at=utcnow() + self._claim)
                )
            return due

    def _in_flight(self, due: list[_Due]) -> dict[str, InFlight]:
        """What runs hold of the backlog-batched sources among `due` and have not finished."""
        sources = {row.source for row in due} & self._batched_in_backlog
        if not sources or not self._backlog_threshold:
            return {}
        query = (
            select(_TABLE.c.source, func.count(), func.count(distinct(_TABLE.c.flow_run_id)))
            .where(_TABLE.c.status == InboxStatus.DISPATCHED, _TABLE.c.source.in_(sorted(sources)))
            .group_by(_TABLE.c.source)
        )
        with self._engine.connect() as connection:
            return {source: InFlight(events, runs) for source, events, runs in connection.execute(query)}

    def _release(self, rows: list[_Due]) -> None:
        """Give back claimed rows this round did not get to: due again now, for whoever comes first."""
        if not rows:
            return
        with self._engine.begin() as connection:
            connection.execute(
                update(_TABLE)
                .where(_TABLE.c.id.in_([row.id for row in rows]), _TABLE.c.status == InboxStatus.RECEIVED)
                .values(next_dispatch_at=utcnow())
            )

    def _select_dispatched(self, after: int) -> list[_Dispatched]:
        query = (
            select(_TABLE.c.id, _TABLE.c.flow_run_id, _TABLE.c.redispatches)
            .where(
                _TABLE.c.status == InboxStatus.DISPATCHED,
                _TABLE.c.flow_run_id.is_not(None),
                _TABLE.c.id > after,
            )
            .order_by(_TABLE.c.id)
            .limit(_RECOVERY_PAGE)
        )
        with self._engine.connect() as connection:
            return [_Dispatched(*row) for row in connection.execute(query)]

    def _hand_back(self, dead: list[tuple[_Dispatched, str]]) -> int:
        """Back to `received` for a new run, or `failed` once it has had `max_runs`; only if the row is still
        `dispatched` to that run (it may have finished in the meantime, or been handed back already)."""
        handled = 0
        with self._engine.begin() as connection:
            for row, reason in dead:
                runs = row.redispatches + 1
                if runs >= self._max_runs:
                    values: dict[str, object] = {
                        "status": InboxStatus.FAILED,
                        "processed_at": utcnow(),
                        "last_error": f"gave up after {runs} flow runs; the last: {reason}"[:1000],
                    }
                    logger.error("inbox event %s failed: %s flow runs died; last: %s", row.id, runs, reason)
                else:
                    values = {
                        "status": InboxStatus.RECEIVED,
                        "redispatches": runs,
                        "next_dispatch_at": utcnow(),
                        "last_error": reason[:1000],
                    }
                    logger.warning("inbox event %s gets flow run %s: %s", row.id, runs + 1, reason)
                result = connection.execute(
                    update(_TABLE)
                    .where(
                        _TABLE.c.id == row.id,
                        _TABLE.c.status == InboxStatus.DISPATCHED,
                        _TABLE.c.flow_run_id == row.flow_run_id,
                    )
                    .values(**values)
                )
                handled += result.rowcount
                if values["status"] == InboxStatus.RECEIVED:
                    self.redispatches += result.rowcount
        if handled:
            self.wake()
        return handled

    def _record_success(self, rows: list[_Due], flow_run_id: UUID) -> int:
        """Record the run on the rows; returns how many took it. The run may already have finished and marked
        a row processed: never move it backwards. A row whose claim ran out and that meanwhile had a run die
        and was handed back (`redispatches` moved on) belongs to its next run: left alone."""
        with self._engine.begin() as connection:
            result = connection.execute(
                update(_TABLE)
                .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.redispatches == bindparam("b_runs"))
                .values(
                    flow_run_id=str(flow_run_id),
                    dispatched_at=utcnow(),
                    last_error=None,
                    status=case(
                        (_TABLE.c.status == InboxStatus.RECEIVED, InboxStatus.DISPATCHED),
                        else_=_TABLE.c.status,
                    ),
                ),
                [{"b_id": row.id, "b_runs": row.redispatches} for row in rows],
            )
            return result.rowcount

    def _record_failure(self, rows: list[_Due], reason: str) -> None:
        self.retries += len(rows)
        with self._engine.begin() as connection:
            for row in rows:
                attempts = row.dispatch_attempts + 1
                delay = self._backoff.delay(attempts, rng=_jitter)
                logger.warning(
                    "could not dispatch inbox event %s (attempt %s): %s; next try in %.0fs",
                    row.id,
                    attempts,
                    reason,
                    delay,
                )
                connection.execute(
                    update(_TABLE)
                    .where(_TABLE.c.id == row.id, _TABLE.c.status == InboxStatus.RECEIVED)
                    .values(
                        dispatch_attempts=attempts,
                        next_dispatch_at=utcnow() + timedelta(seconds=delay),
                        last_error=reason[:500],
                    )
                )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500]
