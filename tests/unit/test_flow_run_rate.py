"""The flow run failure rate per deployment: flow runs created in terminal states through the Prefect client
(the test's Prefect server) are counted per deployment and state over the window; Prefect unreachable is
"not measured", and the report says so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.states import Cancelled, Completed, Crashed, Failed, State

from reporting.flow_runs import flow_run_counts
from reporting.kpis import FlowRunCounts, Kpis, Tally, Window


async def _deployment(client: PrefectClient, flow: str, name: str) -> uuid.UUID:
    flow_id = await client.create_flow_from_name(flow)
    return await client.create_deployment(flow_id=flow_id, name=name)


async def _runs(client: PrefectClient, deployment_id: uuid.UUID, state: State, n: int) -> None:
    for _ in range(n):
        await client.create_flow_run_from_deployment(deployment_id, state=state.model_copy())


async def test_runs_are_counted_per_deployment_and_terminal_state() -> None:
    tag = uuid.uuid4().hex[:8]
    intake, sweep = f"probe-intake-{tag}", f"probe-sweep-{tag}"
    start = datetime.now(UTC) - timedelta(seconds=1)
    async with get_client() as client:
        a = await _deployment(client, intake, "a")
        b = await _deployment(client, sweep, "b")
        await _runs(client, a, Completed(), 7)
        await _runs(client, a, Failed(), 2)
        await _runs(client, a, Crashed(), 1)
        await _runs(client, a, Cancelled(), 1)
        await _runs(client, b, Completed(), 4)
        end = datetime.now(UTC) + timedelta(seconds=1)
        before = Window(start - timedelta(days=1), start)
        now, earlier = await flow_run_counts([Window(start, end), before], client) or [{}, {}]
    mine = {name: counts for name, counts in now.items() if tag in name}
    assert mine == {
        f"{intake}/a": FlowRunCounts(completed=7, failed=3, cancelled=1),
        f"{sweep}/b": FlowRunCounts(completed=4, failed=0, cancelled=0),
    }
    assert mine[f"{intake}/a"].failure_rate == pytest.approx(3 / 10)
    assert mine[f"{sweep}/b"].failure_rate == 0.0
    assert not [name for name in earlier if tag in name]
    k = Kpis(Window(start, end), Tally(), 0, None, flow_runs=mine)
    assert k.flow_run_failure_rate == pytest.approx(3 / 14)


async def test_not_measured_when_prefect_does_not_answer() -> None:
    async with PrefectClient(api="http://127.0.0.1:9/api") as client:
        now = datetime.now(UTC)
        assert await flow_run_counts([Window(now - timedelta(days=1), now)], client) is None
    assert Kpis(Window(now, now), Tally(), 0, None).flow_run_failure_rate is None
