"""The Prefect automations that start `ops-alerts` at once, declared here and installed idempotently.

- **a deployment's run fails**: any run of a deployment in prefect.yaml (ops-alerts itself excepted, so a
  failing ops-alerts cannot start itself in a loop) entering Failed or Crashed runs `ops-alerts` with the
  failed run's resource id; the notice names the deployment and the run, nothing else.
- **reminder-sweep has not completed in ALERT_REMINDER_SWEEP_MINUTES** (proactive): no
  `prefect.flow-run.Completed` event from a reminder-sweep run within the window runs `ops-alerts`.

The minute schedule of `ops-alerts` measures the other conditions (rates, backlog, Google, reconciliation)
and notices when these clear. Installed by the flow runner `make up` starts, after it has registered the
deployments the automations name, and by `avatar-crm alerts install` in production. An automation an
operator paused stays paused on the next start; `alerts install` enables it again.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from models import Settings
from operations.conditions import REMINDER_SWEEP_STALE

logger = logging.getLogger(__name__)

OPS_ALERTS = "ops-alerts"
REMINDER_SWEEP = "reminder-sweep"
FAILED_RUNS_AUTOMATION = "avatar-crm: alert when a deployment's flow run fails"
SWEEP_AUTOMATION = "avatar-crm: alert when reminder-sweep has not completed"
AUTOMATIONS = (FAILED_RUNS_AUTOMATION, SWEEP_AUTOMATION)


def _deployment_runs(deployment_ids: list[UUID]) -> ResourceSpecification:
    """Events of flow runs related to one of these deployments."""
    return ResourceSpecification(
        {
            "prefect.resource.role": "deployment",
            "prefect.resource.id": [f"prefect.deployment.{i}" for i in deployment_ids],
        }
    )


def alert_automations(
    ops_alerts_id: UUID, watched: dict[str, UUID], settings: Settings
) -> dict[str, AutomationCore]:
    """The automations wanted, by name: `watched` is every deployment by name (ops-alerts' own excluded)."""
    wanted = {
        FAILED_RUNS_AUTOMATION: AutomationCore(
            name=FAILED_RUNS_AUTOMATION,
            description="A run of an avatar-crm deployment failed or crashed: ops-alerts tells a person "
            "(docs/alerts.md).",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
                match_related=_deployment_runs(sorted(watched.values())),
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                RunDeployment(
                    source="selected",
                    deployment_id=ops_alerts_id,
                    parameters={"failed_flow_run": "{{ event.resource.id }}", "reason": "a flow run failed"},
                )
            ],
        )
    }
    if REMINDER_SWEEP in watched:
        minutes = settings.alert_reminder_sweep_minutes
        wanted[SWEEP_AUTOMATION] = AutomationCore(
            name=SWEEP_AUTOMATION,
            description=f"No reminder-sweep run completed in {minutes} min: ops-alerts tells a person "
            "(docs/alerts.md).",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Completed"},
                match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
                match_related=_deployment_runs([watched[REMINDER_SWEEP]]),
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(minutes=minutes),
            ),
            actions=[
                RunDeployment(
                    source="selected",
                    deployment_id=ops_alerts_id,
                    parameters={"reason": REMINDER_SWEEP_STALE.name},
                )
            ],
        )
    return wanted


def _normal(value: Any) -> Any:
    """A dumped automation without generated ids, its sets in a fixed order: comparable across reads."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return sorted((_normal(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _same(current: AutomationCore, wanted: AutomationCore) -> bool:
    fields = {"description", "trigger", "actions"}
    dumped = (_normal(a.model_dump(mode="json", include=fields)) for a in (current, wanted))
    return next(dumped) == next(dumped)


async def install_alert_automations(
    client: PrefectClient, settings: Settings, *, enable: bool = False
) -> dict[str, str]:
    """Create the automations, or bring them in line with the deployments and settings; says what it did.

    Needs the `ops-alerts` deployment (served or deployed first). `enable`: also resume a paused one.
    """
    deployments = {d.name: d.id for d in await client.read_deployments()}
    if OPS_ALERTS not in deployments:
        raise LookupError(f"no `{OPS_ALERTS}` deployment on this Prefect server: serve or deploy it first")
    ops_alerts_id = deployments.pop(OPS_ALERTS)
    done: dict[str, str] = {}
    for name, wanted in alert_automations(ops_alerts_id, deployments, settings).items():
        existing = await client.read_automations_by_name(name)
        if not existing:
            await client.create_automation(wanted)
            done[name] = "created"
            continue
        current, *duplicates = existing
        for duplicate in duplicates:  # two installs racing: keep one
            await client.delete_automation(duplicate.id)
        if not _same(current, wanted):
            wanted.enabled = current.enabled or enable
            await client.update_automation(current.id, wanted)
            done[name] = "updated"
        elif enable and not current.enabled:
            await client.resume_automation(current.id)
            done[name] = "enabled"
        else:
            done[name] = "unchanged" if current.enabled else "unchanged (paused)"
    for name, what in done.items():
        logger.info("alert automation %r: %s", name, what)
    return done
