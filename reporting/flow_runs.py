"""Flow runs finished in a window, per deployment and terminal state, from the Prefect API: the flow run
failure rate KPI (reporting/kpis.py). Prefect holds the runs, so they are counted there, not copied.

Per deployment and window, two counts (`count_flow_runs`): runs that ended (`end_time` in the window) in
Completed, Failed or Crashed, and of those the Failed or Crashed ones; Cancelled runs are counted apart. A
few dozen small requests for the report's three windows. Any error reaching Prefect: None, "not measured".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from reporting.kpis import FlowRunCounts, Window

logger = logging.getLogger(__name__)

_FAILED = [StateType.FAILED, StateType.CRASHED]
_GROUPS = {
    "completed": [StateType.COMPLETED],
    "failed": _FAILED,
    "cancelled": [StateType.CANCELLED],
}


async def _count(
    client: PrefectClient, deployment_id: object, window: Window, states: list[StateType]
) -> int:
    return await client.count_flow_runs(
        flow_run_filter=FlowRunFilter(
            end_time=FlowRunFilterEndTime(
                after_=window.start, before_=window.end - timedelta(microseconds=1)
            ),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
        ),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
    )


async def flow_run_counts(
    windows: Sequence[Window], client: PrefectClient | None = None
) -> list[dict[str, FlowRunCounts]] | None:
    """Per window, `{"flow/deployment": counts}` for every deployment with a finished run in it; None when
    Prefect cannot be read."""
    try:
        if client is None:
            async with get_client() as own:
                return await _read(own, windows)
        return await _read(client, windows)
    except Exception as exc:  # unreachable, refused, timed out: the KPI is not measured, the report goes on
        logger.warning("flow run failure rate not measured: Prefect API error (%s)", type(exc).__name__)
        return None


async def _read(client: PrefectClient, windows: Sequence[Window]) -> list[dict[str, FlowRunCounts]]:
    deployments = await client.read_deployments()
    flows = {flow.id: flow.name for flow in await client.read_flows(limit=200)} if deployments else {}
    results: list[dict[str, FlowRunCounts]] = []
    for window in windows:
        found: dict[str, FlowRunCounts] = {}
        for deployment in deployments:
            counts = {
                group: await _count(client, deployment.id, window, states)
                for group, states in _GROUPS.items()
            }
            if any(counts.values()):
                name = f"{flows.get(deployment.flow_id, '?')}/{deployment.name}"
                found[name] = FlowRunCounts(**counts)
        results.append(found)
    return results
