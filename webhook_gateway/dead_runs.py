"""Telling a flow run whose process died from one still at work, so its event gets another run.

Prefect's own mechanism comes first: every flow-run process emits a heartbeat event
(`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, 30 s under `make up`), and the automation Prefect documents for zombie
flow runs ("Detect and respond to zombie flows") marks a Running run whose heartbeats stop as Crashed. The
gateway makes sure that automation exists. It does not reach a run whose last heartbeats were lost with a
killed server (its trigger never saw them), nor one that never got past Pending (no heartbeats yet): for
those the dispatcher reads the heartbeat events itself, with the same window, and takes Pending past a limit
as dead. With heartbeats off, a run Running past a long limit is taken as dead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.settings import get_current_settings

logger = logging.getLogger(__name__)

ZOMBIE_AUTOMATION = "avatar-crm: crash flow runs whose heartbeats stopped"
_CRASH_MESSAGE = "Marked Crashed: no heartbeat from the flow run's process (it died)"


def zombie_automation(heartbeat_seconds: int) -> AutomationCore:
    """Prefect's documented zombie-run automation, with the window of `heartbeat_window`."""
    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="Flow runs emit a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds; a Running "
        "run that stops is marked Crashed, and the webhook gateway gives its event a new run.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=heartbeat_seconds * 5 // 2),  # as `heartbeat_window`
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=_CRASH_MESSAGE)],
    )


async def ensure_zombie_automation(client: PrefectClient) -> None:
    """Create the automation, or bring it in line with the heartbeat frequency the flow runs use."""
    heartbeat = get_current_settings().flows.heartbeat_frequency
    if heartbeat is None:
        logger.warning("flow-run heartbeats are off: dead runs are found only by their age")
        return
    wanted = zombie_automation(heartbeat)
    existing = await client.read_automations_by_name(ZOMBIE_AUTOMATION)
    if not existing:
        await client.create_automation(wanted)
        logger.info("created the zombie flow-run automation (heartbeat every %ss)", heartbeat)
        return
    current = existing[0]
    within = getattr(current.trigger, "within", None)
    if within != wanted.trigger.within or not current.enabled:  # type: ignore[attr-defined]
        await client.update_automation(current.id, wanted)
        logger.info("updated the zombie flow-run automation (heartbeat every %ss)", heartbeat)


@dataclass(frozen=True)
class StuckLimits:
    pending: timedelta  # a run's process moves it to Running within seconds of the runner claiming it
    running: timedelta  # only while heartbeats are off
    task_running: timedelta = timedelta(minutes=2)  # a background task run (no heartbeats at all)


def heartbeat_window() -> timedelta | None:
    """How long a live run may go without a heartbeat: two and a half periods (one lost event is no death)."""
    heartbeat = get_current_settings().flows.heartbeat_frequency
    return None if heartbeat is None else timedelta(seconds=heartbeat * 5 // 2)


def needs_heartbeat_check(run: FlowRun, now: datetime, window: timedelta | None) -> bool:
    """Running for longer than the window: its heartbeats say whether its process still lives."""
    state = run.state
    return bool(window and state and state.type == StateType.RUNNING and now - state.timestamp > window)


def dead_reason(
    run: FlowRun | None, now: datetime, limits: StuckLimits, window: timedelta | None, silent: bool
) -> tuple[str | None, bool]:
    """Why `run` can no longer give its event an outcome, or None while it still may; and whether it must be
    marked Crashed first (it is not final yet). `silent`: no heartbeat from it within `window`. Only called
    for events still `dispatched`: a run that ended without marking its event ended without an outcome,
    whatever its final state."""
    if run is None or run.state is None or run.state.is_final():
        return _gone("flow", run), False
    state = run.state
    age = now - state.timestamp
    if state.type == StateType.PENDING and age > limits.pending:
        return f"flow run {run.id} stuck in Pending for {age.total_seconds():.0f}s", True
    if state.type == StateType.RUNNING:
        if window is not None and silent and needs_heartbeat_check(run, now, window):
            return f"flow run {run.id} Running with no heartbeat for {window.total_seconds():.0f}s", True
        if window is None and age > limits.running:
            return f"flow run {run.id} Running for {age.total_seconds():.0f}s without finishing", True
    return None, False


def dead_task_reason(run: TaskRun | None, now: datetime, limits: StuckLimits) -> tuple[str | None, bool]:
    """As `dead_reason`, for a lone booking event's background task run: final without an outcome, never
    taken by a task worker (Scheduled or Pending past `limits.pending`), or Running past `limits.task_running`
    (its task worker died: task runs send no heartbeats, so age is all there is)."""
    if run is None or run.state is None or run.state.is_final():
        return _gone("task", run), False
    state = run.state
    age = now - state.timestamp
    if state.type in (StateType.SCHEDULED, StateType.PENDING) and age > limits.pending:
        return f"task run {run.id} not taken by a task worker for {age.total_seconds():.0f}s", True
    if state.type == StateType.RUNNING and age > limits.task_running:
        return f"task run {run.id} Running for {age.total_seconds():.0f}s: its task worker died", True
    return None, False


def _gone(kind: str, run: FlowRun | TaskRun | None) -> str:
    """Why a run unknown to Prefect, or final while its event still waits, gave that event no outcome."""
    if run is None or run.state is None:
        return f"its {kind} run is unknown to Prefect"
    state = run.state
    message = (state.message or "").strip().splitlines()[0][:200] if state.message else ""
    return f"{kind} run {run.id} ended {state.name} without an outcome" + (f": {message}" if message else "")
