"""Serve every deployment declared in `prefect.yaml` from one long-running process (the embedded default).

Reading `prefect.yaml` here keeps one definition of each deployment: the same names, schedules, tags and
limits whether the clinic runs `make up` on one machine or `prefect deploy --all` onto a work pool.
Runs start within about a second of being created when `PREFECT_RUNNER_POLL_FREQUENCY=1` (set by `up`).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import Flow
from prefect.schedules import Cron, Interval, RRule, Schedule

from flows.tasks.sms import CONCURRENCY_LIMIT_NAME
from models import get_settings

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"
RUN_LIMIT = 8  # flow runs at once: each is a subprocess, and this machine class has 2 cores


def load_definitions(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["deployments"]


def _load_flow(entrypoint: str) -> Flow[..., Any]:
    file_path, _, attribute = entrypoint.partition(":")
    module = importlib.import_module(file_path.removesuffix(".py").replace("/", "."))
    return getattr(module, attribute)


def _schedule(spec: dict[str, Any]) -> Schedule:
    common = {key: spec[key] for key in ("timezone", "active", "parameters") if key in spec}
    if "cron" in spec:
        return Cron(spec["cron"], **common)
    if "interval" in spec:
        return Interval(spec["interval"], **common)
    if "rrule" in spec:
        return RRule(spec["rrule"], **{k: v for k, v in common.items() if k != "timezone"})
    raise ValueError(f"unsupported schedule {spec!r}")


def build_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    deployments = []
    for spec in load_definitions(path):
        flow = _load_flow(spec["entrypoint"])
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters"),
                schedules=[_schedule(s) for s in spec.get("schedules", [])],
                concurrency_limit=spec.get("concurrency_limit"),
            )
        )
    return deployments


async def ensure_concurrency_limits() -> None:
    """Provider limits shared by every process (MobileMessage allows 5 simultaneous requests)."""
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(
            CONCURRENCY_LIMIT_NAME, get_settings().mobilemessage_max_in_flight
        )


def main() -> None:
    asyncio.run(ensure_concurrency_limits())
    serve(*build_deployments(), limit=RUN_LIMIT, print_starting_message=False)


if __name__ == "__main__":
    main()
