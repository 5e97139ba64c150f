"""Liveness and readiness: `/healthz` says the process answers, `/readyz` what works and what does not.

Readiness is about taking webhooks: they are stored in the inbox before they are acknowledged, so only the
database decides whether the gateway is ready (200) or not (503). Prefect, the flow runner and the dispatcher
being down delays processing but not acceptance: the answer is then still 200, status `degraded`, and the
checks name the part that is down.
"""

from __future__ import annotations

import asyncio

from anyio import to_thread
from litestar import Controller, Response, get
from litestar.datastructures import State
from prefect.client.schemas.objects import DeploymentStatus
from sqlalchemy import text

from webhook_gateway.schemas import Health

_PROBE_TIMEOUT_SECONDS = 3.0


class HealthController(Controller):
    tags = ["health"]

    @get("/healthz", summary="The gateway process is up")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        summary="Whether webhooks are accepted (database), and whether they are being processed",
        description="200 while the database answers (webhooks are stored and acknowledged), `degraded` "
        "when Prefect, the flow runner or the dispatcher is down (processing waits); 503 when the database "
        "is down.",
    )
    async def readyz(self, state: State) -> Response[Health]:
        checks = {
            "database": await _probe(_database_ok(state)),
            "prefect": await _probe(_prefect_ok(state)),
        }
        checks["runner"] = await _probe(_runner_ok(state)) if checks["prefect"] == "ok" else "unknown"
        checks["dispatcher"] = state.dispatcher.status()
        if checks["database"] != "ok":
            return Response(Health(status="not ready", checks=checks), status_code=503)
        ok = all(value == "ok" for value in checks.values())
        return Response(Health(status="ready" if ok else "degraded", checks=checks), status_code=200)


async def _database_ok(state: State) -> None:
    def _ping() -> None:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    await to_thread.run_sync(_ping)


async def _prefect_ok(state: State) -> None:
    error = await state.prefect.api_healthcheck()
    if error is not None:
        raise error


async def _runner_ok(state: State) -> None:
    """Prefect marks a deployment not ready once no runner or worker has polled for it for a minute."""
    deployment = await state.prefect.read_deployment_by_name(state.dispatcher.readiness_deployment)
    if deployment.status != DeploymentStatus.READY:
        raise _Down("no flow runner has polled for a minute")


class _Down(Exception):
    """A check's own finding, safe to show as it is (other exceptions show only their type)."""


async def _probe(check) -> str:  # type: ignore[no-untyped-def]
    try:
        await asyncio.wait_for(check, timeout=_PROBE_TIMEOUT_SECONDS)
    except _Down as exc:
        return f"down: {exc}"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"
