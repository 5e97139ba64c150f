"""Hands committed inbox rows to Prefect as flow runs, and keeps trying until Prefect has them.

One loop creates the runs (a SQLite-backed Prefect server locks under concurrent writes), woken as soon as
a new event is stored and otherwise polling. The flow-run idempotency key is derived from the inbox row, so
whatever happens — a crash between creating the run and recording it, two gateways racing — Prefect holds
at most one run per event.

Sources named in `batched` (delivery receipts: thousands a minute during a campaign) get one run per batch of
due rows instead (`event_ids`), keyed by the batch's first and last row; their flows are idempotent per row,
so a batch that is re-dispatched with different neighbours does no harm.
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
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from sqlalchemy import Engine, case, select, update

from models import InboxStatus, WebhookEvent
from models.types import utcnow

logger = logging.getLogger(__name__)

_TABLE = WebhookEvent.__table__  # type: ignore[attr-defined]
_BATCH = 50
# A SQLite-backed Prefect server answers 503 while another writer holds its lock, usually for tens of
# milliseconds. Prefect's client would wait 2 s (then 4, 8 …) before asking again; the dispatcher asks again
# sooner, and leaves longer outages to its own per-row backoff. Seconds, before jitter.
_BUSY_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
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
    ) -> None:
        self._engine = engine
        self._client = client
        self._deployments = dict(deployments)
        self._batched = frozenset(batched)
        self._poll_seconds = poll_seconds
        self._max_backoff = max_backoff_seconds
        self._wakeup = asyncio.Event()
        self._deployment_ids: dict[str, UUID] = {}
        self._failed_rounds = 0
        self._last_failure = ""
        self._running = False

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
        return min(self._max_backoff, 2.0 ** min(self._failed_rounds, 16)) * _jitter.uniform(0.5, 1.0)

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
        while True:
            try:
                await self.dispatch_due()
            except Exception:  # the loop must outlive any one bad round (DB briefly locked, etc.)
                logger.exception("dispatch round failed; will retry")
            if self._failed_rounds:
                await asyncio.sleep(self._pause_after_failure())
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_seconds)
            self._wakeup.clear()

    async def dispatch_due(self) -> int:
        """Dispatch every row that is due; returns how many now have a flow run."""
        dispatched = 0
        while True:
            due = await to_thread.run_sync(self._select_due)
            if not due:
                return dispatched
            groups: dict[str, list[_Due]] = {}
            for row in due:
                if row.source in self._batched:
                    groups.setdefault(row.source, []).append(row)
                else:
                    groups[f"event:{row.id}"] = [row]
            for rows in groups.values():
                try:
                    flow_run_id = await self._create_run(rows)
                except Exception as exc:
                    self._failed_rounds += 1
                    self._last_failure = _reason(exc)
                    await to_thread.run_sync(self._record_failure, rows, self._last_failure)
                    return dispatched  # Prefect is probably down: back off instead of hammering it
                self._failed_rounds = 0
                await to_thread.run_sync(self._record_success, [row.id for row in rows], flow_run_id)
                dispatched += len(rows)
            if len(due) < _BATCH:
                return dispatched

    async def _create_run(self, rows: list[_Due]) -> UUID:
        source = rows[0].source
        deployment_name = self._deployments.get(source)
        if deployment_name is None:
            raise LookupError(f"no deployment handles source {source!r}")
        deployment_id = self._deployment_ids.get(deployment_name)
        if deployment_id is None:
            deployment = await self._client.read_deployment_by_name(deployment_name)
            deployment_id = self._deployment_ids[deployment_name] = deployment.id
        if source in self._batched:
            ids = [row.id for row in rows]
            parameters: dict[str, object] = {"event_ids": ids}
            key, name = f"{source}:batch:{ids[0]}-{ids[-1]}", f"{source}-events-{ids[0]}-{ids[-1]}"
        else:
            row = rows[0]
            parameters = {"event_id": row.id}
            key, name = f"{row.source}:{row.dedupe_key}", f"{row.source}-event-{row.id}"
        for pause in (*_BUSY_PAUSES, None):
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
                if exc.response.status_code != 503 or pause is None:
                    raise
            await asyncio.sleep(pause * _jitter.uniform(0.5, 1.0))
        logger.info("inbox event(s) %s (%s) -> flow run %s", name, rows[0].event_type, flow_run.id)
        return flow_run.id

    # --- database side (run in a worker thread) ------------------------------------------------------

    def _select_due(self) -> list[_Due]:
        query = (
            select(
                _TABLE.c.id,
                _TABLE.c.source,
                _TABLE.c.dedupe_key,
                _TABLE.c.event_type,
                _TABLE.c.dispatch_attempts,
            )
            .where(_TABLE.c.status == InboxStatus.RECEIVED, _TABLE.c.next_dispatch_at <= utcnow())
            .order_by(_TABLE.c.id)
            .limit(_BATCH)
        )
        with self._engine.connect() as connection:
            return [_Due(*row) for row in connection.execute(query)]

    def _record_success(self, event_ids: list[int], flow_run_id: UUID) -> None:
        # The run may already have finished and marked the row processed: never move it backwards.
        with self._engine.begin() as connection:
            connection.execute(
                update(_TABLE)
                .where(_TABLE.c.id.in_(event_ids))
                .values(
                    flow_run_id=str(flow_run_id),
                    dispatched_at=utcnow(),
                    last_error=None,
                    status=case(
                        (_TABLE.c.status == InboxStatus.RECEIVED, InboxStatus.DISPATCHED),
                        else_=_TABLE.c.status,
                    ),
                )
            )

    def _record_failure(self, rows: list[_Due], reason: str) -> None:
        with self._engine.begin() as connection:
            for row in rows:
                attempts = row.dispatch_attempts + 1
                delay = min(self._max_backoff, 2 ** min(attempts, 16)) * _jitter.uniform(0.5, 1.0)
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
