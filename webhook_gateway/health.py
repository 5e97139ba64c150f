"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that it can do its job."""

from __future__ import annotations

import asyncio

from anyio import to_thread
from litestar import Controller, Response, get
from litestar.datastructures import State
from sqlalchemy import text

from webhook_gateway.schemas import Health

_PROBE_TIMEOUT_SECONDS = 3.0


class HealthController(Controller):
    tags = ["health"]

    @get("/healthz", summary="The gateway process is up")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get("/readyz", summary="The database and Prefect are reachable")
    async def readyz(self, state: State) -> Response[Health]:
        checks = {
            "database": await _probe(_database_ok(state)),
            "prefect": await _probe(_prefect_ok(state)),
        }
        ready = all(value == "ok" for value in checks.values())
        return Response(
            Health(status="ready" if ready else "not ready", checks=checks), status_code=200 if ready else 503
        )


async def _database_ok(state: State) -> None:
    def _ping() -> None:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    await to_thread.run_sync(_ping)


async def _prefect_ok(state: State) -> None:
    error = await state.prefect.api_healthcheck()
    if error is not None:
        raise error


async def _probe(check) -> str:  # type: ignore[no-untyped-def]
    try:
        await asyncio.wait_for(check, timeout=_PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"
