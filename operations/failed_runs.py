"""The flow runs that failed or crashed lately, read from the Prefect API (Prefect holds the runs; nothing is
copied), each with its link into the Prefect UI. Prefect not answering is an answer too: `FailedRuns.error`
says so and the caller shows it, it is never an exception."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

from models.types import utcnow

logger = logging.getLogger(__name__)

FAILED_STATES = [StateType.FAILED, StateType.CRASHED]
LIMIT = 100
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class FailedRun:
    id: UUID
    name: str
    flow: str
    deployment: str | None
    state: str  # Failed, Crashed
    message: str | None  # Prefect's state message (an exception's type and text, as the run logged it)
    start: datetime | None
    end: datetime | None
    url: str | None  # the run in the Prefect UI


@dataclass(frozen=True)
class FailedRuns:
    runs: list[FailedRun]
    since: datetime
    error: str | None = None  # Prefect could not be read: why (the runs list is then empty)
    ui: str | None = None


def ui_base(client: PrefectClient) -> str | None:
    """The Prefect UI for the API this client reads: PREFECT_UI_URL when the client reads the configured API
    (it knows Prefect Cloud's UI, or what was set), else the API's own server with `/api` dropped."""
    api = str(client.api_url).rstrip("/")
    configured = (PREFECT_API_URL.value() or "").rstrip("/")
    if configured and api == configured and PREFECT_UI_URL.value():
        return str(PREFECT_UI_URL.value()).rstrip("/")
    return api.removesuffix("/api") or None


async def failed_runs(
    client: PrefectClient, *, days: int = 7, limit: int = LIMIT, wait_seconds: float = 10.0
) -> FailedRuns:
    """The newest `limit` runs meant to start in the last `days` days (a run that crashed before it started
    has no start time) that ended Failed or Crashed; Prefect has
    `wait_seconds` to answer."""
    since = utcnow() - timedelta(days=days)
    ui = ui_base(client)
    try:
        runs = await asyncio.wait_for(_read(client, since, limit), wait_seconds)
    except Exception as exc:  # unreachable, refused, timed out, an error status: the page says so
        logger.warning("failed flow runs not read: Prefect API error (%s)", type(exc).__name__)
        reason = "in time" if isinstance(exc, TimeoutError) else f"({type(exc).__name__})"
        return FailedRuns([], since, f"the Prefect API at {client.api_url} did not answer {reason}", ui)
    return FailedRuns(
        [
            FailedRun(
                id=run.id,
                name=run.name,
                flow=flow,
                deployment=deployment,
                state=run.state.name if run.state else "?",
                message=(run.state.message or "")[:_MESSAGE_CHARS] or None if run.state else None,
                start=run.start_time,
                end=run.end_time,
                url=f"{ui}/runs/flow-run/{run.id}" if ui else None,
            )
            for run, flow, deployment in runs
        ],
        since,
        None,
        ui,
    )


async def _read(client: PrefectClient, since: datetime, limit: int) -> list[tuple[FlowRun, str, str | None]]:
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=FAILED_STATES)),
            expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit,
    )
    flows = {flow.id: flow.name for flow in await client.read_flows(limit=200)} if runs else {}
    deployments = (
        {d.id: d.name for d in await client.read_deployments(limit=200)}
        if any(run.deployment_id for run in runs)
        else {}
    )
    return [
        (
            run,
            flows.get(run.flow_id, "?"),
            deployments.get(run.deployment_id) if run.deployment_id else None,
        )
        for run in runs
    ]
