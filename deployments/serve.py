"""Serve every deployment declared in `prefect.yaml` from one long-running process (the embedded default).

Reading `prefect.yaml` here keeps one definition of each deployment: the same names, schedules, tags and
limits whether the clinic runs `make up` on one machine or `prefect deploy --all` onto a work pool.

Prefect's runner starts every flow run in a fresh *spawned* interpreter that imports Prefect and our code
again: 3–5 s of CPU per run on this 2-core machine class, so at one booking a second runs queue up for
tens of seconds (measured with `benchmarks/e2e_latency.py`). The flows are therefore registered as
in-memory flows (`Runner.add_flow`, so no code is re-loaded from storage), and the runner's process start
is pointed at a `forkserver` that has imported them once: each run is then a fork of a warm process,
still isolated from the runner and from other runs. Runs start within about a second of being created
when `PREFECT_RUNNER_POLL_FREQUENCY=1` (set by `up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.forkserver
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prefect.flow_engine
import yaml
from prefect.flows import Flow
from prefect.runner import Runner
from prefect.schedules import Cron, Interval, RRule, Schedule

from models import get_settings
from models.log_format import configure_logging

logger = logging.getLogger(__name__)
PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"
RUN_LIMIT = 8  # flow runs at once: each is a subprocess, and this machine class has 2 cores


def load_definitions(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["deployments"]


def _load_flow(entrypoint: str) -> Flow[..., Any]:
    module = importlib.import_module(module_of(entrypoint))
    return getattr(module, entrypoint.partition(":")[2])


def _schedule(spec: dict[str, Any], timezone: str) -> Schedule:
    """A schedule of prefect.yaml, its clock the clinic's (CLINIC_TIMEZONE): "07:00" is 07:00 where the clinic
    is, daylight saving included, whatever prefect.yaml's default zone says."""
    common = {key: spec[key] for key in ("active", "parameters") if key in spec}
    common["timezone"] = timezone
    if "cron" in spec:
        return Cron(spec["cron"], **common)
    if "interval" in spec:
        return Interval(spec["interval"], **common)
    if "rrule" in spec:
        return RRule(spec["rrule"], **{k: v for k, v in common.items() if k != "timezone"})
    raise ValueError(f"unsupported schedule {spec!r}")


async def add_deployments(
    runner: Runner, path: Path = PREFECT_YAML, timezone: str | None = None
) -> list[str]:
    """Register each deployment with its flow object, so runs execute the code already imported here."""
    timezone = timezone or get_settings().clinic_timezone
    names = []
    for spec in load_definitions(path):
        flow = _load_flow(spec["entrypoint"])
        await runner.aadd_flow(
            flow,
            name=spec["name"],
            description=spec.get("description"),
            tags=spec.get("tags"),
            parameters=spec.get("parameters"),
            schedules=[_schedule(s, timezone) for s in spec.get("schedules", [])],
            concurrency_limit=spec.get("concurrency_limit"),
        )
        names.append(f"{flow.name}/{spec['name']}")
    return names


def use_preloaded_forkserver(modules: list[str]) -> None:
    """Start flow-run processes by forking a server that has imported `modules`, instead of spawning.

    `prefect.flow_engine.run_flow_in_subprocess` asks `multiprocessing` for the "spawn" context; it gets the
    forkserver context instead. The forkserver itself is a single-threaded process started on first use,
    so forking it is safe (unlike forking the runner, which has threads and open connections).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(modules)
    multiprocessing.forkserver.ensure_running()  # pay the imports now, not on the first patient's booking
    prefect.flow_engine.multiprocessing = SimpleNamespace(  # type: ignore[attr-defined]
        get_context=lambda method=None: context, context=multiprocessing.context
    )


async def install_automations() -> None:
    """The alert automations name deployments, so they are put in place once those are registered; a
    failure to do so is logged and never stops the runner (`avatar-crm alerts install` tries again)."""
    from prefect import get_client

    from deployments.automations import install_alert_automations
    from models import get_settings

    try:
        async with get_client() as client:
            await install_alert_automations(client, get_settings())
    except Exception as exc:
        logger.warning("could not install the alert automations (%s: %s)", type(exc).__name__, exc)


async def run() -> None:
    runner = Runner(name="avatar-crm", limit=RUN_LIMIT, pause_on_shutdown=True)
    await add_deployments(runner)
    await install_automations()
    await runner.start()


def module_of(entrypoint: str) -> str:
    """`flows/booking_intake.py:booking_intake` → `flows.booking_intake`."""
    return entrypoint.partition(":")[0].removesuffix(".py").replace("/", ".")


def main() -> None:
    from blocks.settings_source import install

    install()  # this process's settings, and (flow_process) every run's, from the blocks first
    configure_logging()
    use_preloaded_forkserver(
        [
            "deployments.flow_process",
            "prefect.flow_engine",
            *(module_of(spec["entrypoint"]) for spec in load_definitions()),
        ]
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
