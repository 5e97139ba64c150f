"""`ops-alerts`: evaluate every alert condition and tell a person about each change, once.

Scheduled every minute, and started by the Prefect automations in `deployments/automations.py` the moment a
deployment's run fails (`failed_flow_run` names it) or reminder-sweep has not completed for too long. The
conditions and their thresholds are `operations/conditions.py`; who is told and the de-duplication (once
when it fires, again an hour later while it lasts, once when it clears) are `operations/alerts.py`. This flow
reads what only Prefect knows (each deployment's latest finished run, the last completed reminder sweep),
sends the notices it queued, and emits a Prefect event per change (`avatar-crm.alert.fired`, `.repeated`,
`.resolved`) for anyone who wants to build on them. docs/alerts.md.
"""

# No `from __future__ import annotations`: Prefect builds the parameter model from these annotations in
# the run's process (see reminder_sweep.py).
import asyncio
from uuid import UUID

from prefect import flow, get_client
from prefect.artifacts import acreate_table_artifact
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events import emit_event

from flows.tasks.send import send_message
from models import get_settings, session_scope
from models.run_logger import run_logger
from models.types import utcnow
from operations.alerts import Notice, apply_readings
from operations.conditions import PrefectFacts, Reading, evaluate

OPS_ALERTS = "ops-alerts"
REMINDER_SWEEP = "reminder-sweep"
_FAILING = [StateType.FAILED, StateType.CRASHED]
_FINISHED = [StateType.COMPLETED, *_FAILING]


def _failing(run: FlowRun) -> str | None:
    if run.state is None or run.state.type not in _FAILING:
        return None
    return f"flow run {run.name} ({run.id}) ended {run.state.name}"


async def _latest(client: PrefectClient, deployment_id: UUID, states: list[StateType]) -> FlowRun | None:
    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states))),
        sort=FlowRunSort.END_TIME_DESC,
        limit=1,
    )
    return runs[0] if runs else None


async def prefect_facts(failed_flow_run: str | None) -> PrefectFacts:
    """Each deployment's latest finished run, and the last completed reminder sweep (names and ids only)."""
    facts = PrefectFacts()
    async with get_client() as client:
        for deployment in await client.read_deployments():
            latest = await _latest(client, deployment.id, _FINISHED)
            if latest is not None:
                facts.failing[deployment.name] = _failing(latest)
            if deployment.name == REMINDER_SWEEP:
                completed = latest if latest and latest.state_type == StateType.COMPLETED else None
                completed = completed or await _latest(client, deployment.id, [StateType.COMPLETED])
                facts = PrefectFacts(
                    facts.failing,
                    completed.end_time if completed else None,
                    deployment.created,
                )
        if failed_flow_run:
            # The run the automation reported fails its deployment now, even if a later run has passed
            # since: the notice is never lost, and the next evaluation says it cleared.
            run = await client.read_flow_run(UUID(failed_flow_run.removeprefix("prefect.flow-run.")))
            why = _failing(run)
            if why is not None and run.deployment_id is not None:
                deployment = await client.read_deployment(run.deployment_id)
                facts.failing[deployment.name] = why
    return facts


def _evaluate_and_queue(facts: PrefectFacts | None) -> tuple[list[Reading], list[Notice]]:
    settings, now = get_settings(), utcnow()
    with session_scope() as session:
        readings = evaluate(session, settings, now, facts)
        return readings, apply_readings(session, settings, readings, now)


@flow(name=OPS_ALERTS, flow_run_name=OPS_ALERTS, description=__doc__.split("\n\n")[0])
async def ops_alerts(failed_flow_run: str | None = None, reason: str | None = None) -> dict[str, str]:
    """Evaluate the alert conditions and notify on changes; `failed_flow_run` (a flow-run id or resource id)
    and `reason` are set by the automations that start it. Returns each condition's state."""
    logger = run_logger(__name__)
    if reason:
        logger.info("started by automation: %s", reason)
    try:
        facts: PrefectFacts | None = await prefect_facts(failed_flow_run)
    except Exception as exc:  # the database conditions still matter while Prefect's API hiccups
        logger.warning(
            "could not read deployment runs from Prefect (%s): those conditions keep their state", exc
        )
        facts = None
    readings, notices = await asyncio.to_thread(_evaluate_and_queue, facts)
    for notice in notices:
        logger.warning(
            "alert %s %s: %s (SMS %s)", notice.name, notice.change.value, notice.detail, notice.sms
        )
        for message_id in notice.message_ids:
            await send_message(message_id)
        emit_event(
            event=f"avatar-crm.alert.{notice.change.value}",
            resource={
                "prefect.resource.id": f"avatar-crm.alert.{notice.name}",
                "prefect.resource.name": notice.name,
            },
            payload={"detail": notice.detail},
        )
    states = {r.name: "firing" if r.firing else "ok" for r in readings}
    if notices or any(r.firing for r in readings):  # not a new artifact version every quiet minute
        await acreate_table_artifact(
            key="ops-alerts",
            table=[{"condition": r.name, "state": states[r.name], "detail": r.detail} for r in readings],
            description=f"{sum(r.firing for r in readings)} of {len(readings)} conditions firing",
        )
    return states
