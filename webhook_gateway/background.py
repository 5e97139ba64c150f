"""Lone booking events handed to Prefect background task workers (`avatar-crm task-worker`) as task runs.

A flow run per booking costs the box about a second of CPU (a process worker's hand-over, a process, the
flow run's orchestration); a background task run a small fraction of it, and a task worker that is already
running starts it within ~0.1 s. The dispatcher uses a task run for an event's *first* run only, and only
while Prefect reports a task worker serving the task's key (asked at most every `CHECK_SECONDS`): with no
task worker (none started, all dead, or at another release, whose key differs) the event goes to a flow run
as before. A task run that dies is found by the dispatcher's recovery (`dead_runs.dead_task_reason`) and its
event gets a flow run, so a crash delays a booking, never drops or doubles it (the per-event rules make any
run safe).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from uuid import UUID

from anyio import to_thread
from prefect import Task
from prefect.client.orchestration import PrefectClient

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0


@dataclass
class BackgroundTask:
    """How the dispatcher hands one source's lone events to a background task: `task(event_id)`."""

    task: Task[..., object]
    _served_until: float = field(default=0.0, init=False)
    _checked_at: float = field(default=float("-inf"), init=False)

    async def served(self, client: PrefectClient) -> bool:
        """Whether a task worker serves this task now (Prefect's record of task workers' subscriptions)."""
        now = time.monotonic()
        if now - self._checked_at < CHECK_SECONDS:
            return now < self._served_until
        self._checked_at = now
        response = await client.request(
            "POST",
            "/task_workers/filter",
            json={"task_worker_filter": {"task_keys": [self.task.task_key]}},
        )
        response.raise_for_status()
        workers = response.json()
        self._served_until = now + CHECK_SECONDS if workers else 0.0
        if not workers:
            logger.info("no task worker serves %s: booking events go to flow runs", self.task.name)
        return bool(workers)

    async def submit(self, event_id: int, name: str) -> UUID:
        """A task run for the event, named as its flow run would be; its parameters go to Prefect's
        task-scheduling storage, where the task worker reads them."""
        named = self.task.with_options(task_run_name=name)
        future = await to_thread.run_sync(partial(named.apply_async, (event_id,)))
        return future.task_run_id
