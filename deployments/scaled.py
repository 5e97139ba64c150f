"""`avatar-crm up --scaled`: the production topology of docs/production.md, one command away on one machine.

What `make up` runs as one process of each, here as separate, supervised processes on PostgreSQL and Redis:
Prefect's migrations run once, then its API server (`--no-services`) and its background services as two
processes, with messaging, cache, event ordering, concurrency leases and the services' coordination in Redis
(prefect-redis, as Prefect's guide to scaling a self-hosted server says); the CRM on PostgreSQL; N process
workers on the `avatar-crm` work pool running the deployments `prefect deploy --all` made from
`prefect.yaml` (each run clones the pinned commit, as a worker on another host would); and several gateways,
each with its dispatcher, on consecutive ports, sharing the inbox (`FOR UPDATE SKIP LOCKED` claims).

It is the way to try the scaled set-up, and what the topology test runs; in production the same processes are
systemd units on several hosts (deployments/systemd/).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from blocks import settings_source
from deployments.engine_command import SOCKET_ENV
from deployments.release import run_git
from deployments.stack import (
    Boot,
    Child,
    Supervisor,
    blocks_said,
    crm_environment,
    prefect_environment,
    redact,
    say,
)
from models import Settings, get_settings
from models.db import normalize_url
from models.migrate import upgrade
from webhook_gateway.errors import server_cli_options

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_POOL = "avatar-crm"
APP = "webhook_gateway.app:create_served_app"
WORKER_RUN_LIMIT = 4  # flow runs at once per worker, as deployments/systemd/avatar-crm-worker@.service


@dataclass(frozen=True)
class Topology:
    """Where the scaled stack keeps its state and how many of each process it runs."""

    postgres: str = "postgresql://postgres@127.0.0.1:5432/postgres"  # the server; its database is unused
    crm_database: str = "avatar_crm"  # unless CRM_DATABASE_URL already names a PostgreSQL database
    prefect_database: str = "avatar_crm_prefect"
    redis: str = "redis://127.0.0.1:6379/0"  # Prefect messaging in db n, its docket in n+1, rate limits n+2
    workers: int = 2
    gateways: int = 2

    def database_url(self, name: str, driver: str) -> URL:
        return make_url(normalize_url(self.postgres)).set(drivername=driver, database=name)


def redis_environment(redis_url: str) -> dict[str, str]:
    """Prefect's Redis settings for one Redis URL: messaging in its database, the docket in the next one."""
    url = make_url(redis_url.replace("redis://", "redis+x://", 1))  # any scheme sqlalchemy's parser accepts
    host, port, db = url.host or "127.0.0.1", url.port or 6379, int(url.database or 0)
    auth = f":{url.password}@" if url.password else ""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": host,
        "PREFECT_REDIS_MESSAGING_PORT": str(port),
        "PREFECT_REDIS_MESSAGING_DB": str(db),
        **({"PREFECT_REDIS_MESSAGING_PASSWORD": url.password} if url.password else {}),
        "PREFECT_SERVER_DOCKET_URL": f"redis://{auth}{host}:{port}/{db + 1}",
        "REDIS_URL": f"redis://{auth}{host}:{port}/{db + 2}",  # the gateways' shared rate-limit counts
    }


def ensure_database(topology: Topology, name: str) -> None:
    """Create the database on the PostgreSQL server unless it exists (a first start)."""
    admin = create_engine(
        topology.database_url("postgres", "postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
                say(f"created PostgreSQL database {name}")
    finally:
        admin.dispose()


def _run(command: list[str], env: dict[str, str], what: str, timeout: float = 300) -> None:
    """A one-shot step (migrations, deploy); its output is shown only when it fails."""
    done = subprocess.run(  # noqa: S603 (our own programs)
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")


def engine_socket_path(data_dir: Path, n: int) -> str:
    """Worker n's warm-engine socket, in the data directory unless that path is too long for a Unix
    socket (108 bytes on Linux): then in the temporary directory, named after the data directory."""
    path = str(data_dir / f"engine-{n}.sock")
    if len(path.encode()) <= 100:
        return path
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"avatar-crm-{digest}-engine-{n}.sock")


async def _prepare_work_pool() -> None:
    """The process work pool, made once; then every deployment's schedule on (a stop pauses them)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        with contextlib.suppress(ObjectAlreadyExists):
            await client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))


async def _resume_schedules() -> None:
    from prefect import get_client

    async with get_client() as client:
        for deployment in await client.read_deployments():
            if deployment.paused:
                await client.resume_deployment(deployment.id)


@contextlib.contextmanager
def _this_prefect(env: dict[str, str]) -> Iterator[None]:
    """Prefect's client in this process talks to the stack's server (its settings were read at import)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    login = env["PREFECT_API_AUTH_STRING"]
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: login}):
        yield


def deploy(env: dict[str, str], settings: Settings) -> str:
    """`prefect deploy --all` from this checkout, as a deployer would: the commit every worker runs."""
    env = dict(env)
    if not settings.avatar_crm_git_url:  # one machine: the workers clone this checkout
        env["AVATAR_CRM_GIT_URL"] = str(REPO_ROOT)
    commit = settings.avatar_crm_git_commit or run_git(REPO_ROOT, "rev-parse", "HEAD")
    env["AVATAR_CRM_GIT_COMMIT"] = commit
    with _this_prefect(env):
        asyncio.run(_prepare_work_pool())
    python = sys.executable
    _run([python, "-m", "prefect", "--no-prompt", "deploy", "--all"], env, "prefect deploy --all")
    with _this_prefect(env):
        asyncio.run(_resume_schedules())
    return commit


def up_scaled(topology: Topology) -> int:
    """Start the scaled topology and supervise it (a process that dies is started again) until Ctrl-C."""
    boot = Boot()
    env = prefect_environment(boot.crm_data_dir.resolve(), boot.prefect_port)
    prefect_db = topology.database_url(topology.prefect_database, "postgresql+asyncpg")
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_db.render_as_string(hide_password=False)
    env["PREFECT_API_DATABASE_MIGRATE_ON_START"] = "false"  # once, below; never by each server
    env.update(redis_environment(topology.redis))
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")  # a booking's run is picked up within 1 s
    # The workers' flow runs start `python -m deployments.engine_command` (prefect.yaml): this environment's
    # python, which hands them to the warm engine or becomes `python -m prefect.engine`.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    os.environ.update(env)
    prefect_url = f"http://127.0.0.1:{boot.prefect_port}"

    def start(stack: Supervisor) -> None:
        python = sys.executable
        ensure_database(topology, topology.prefect_database)
        say("migrating Prefect's database …")
        _run(
            [python, "-m", "prefect", "server", "database", "upgrade", "-y"], stack.env, "Prefect migrations"
        )
        stack.start(
            Child("prefect server", [python, "-m", "prefect", "server", "start", "--no-services",
                                     "--host", "127.0.0.1", "--port", str(boot.prefect_port)],
                  f"{prefect_url}/api/health", 120)
        )  # fmt: skip
        stack.start(Child("prefect services", [python, "-m", "prefect", "server", "services", "start"]))
        get_settings.cache_clear()
        settings = get_settings()
        stack.grace = settings.stop_grace_seconds
        say(f"secrets blocks:  {blocks_said(settings_source.last_read)}")
        if not settings.crm_database_url.startswith("postgres"):
            ensure_database(topology, topology.crm_database)
            crm_url = topology.database_url(topology.crm_database, "postgresql+psycopg")
            stack.env["CRM_DATABASE_URL"] = os.environ["CRM_DATABASE_URL"] = crm_url.render_as_string(
                hide_password=False
            )
            get_settings.cache_clear()
            settings = get_settings()
        stack.env = crm_environment(stack.env, settings)
        os.environ.update(stack.env)
        get_settings.cache_clear()
        upgrade(stack.env["CRM_DATABASE_URL"])
        say(f"CRM database ready: {redact(stack.env['CRM_DATABASE_URL'])}")
        commit = deploy(stack.env, settings)
        say(f"deployed every deployment of prefect.yaml on work pool {WORK_POOL} at commit {commit[:12]}")
        from deployments.serve import install_automations

        with _this_prefect(stack.env):
            asyncio.run(install_automations())
        for n in range(1, topology.workers + 1):
            # Each worker hands its runs to a warm engine of its own (as one per host in production), so a
            # worker and its runs can be given a core of their own.
            engine_socket = engine_socket_path(boot.crm_data_dir.resolve(), n)
            stack.start(
                Child(f"engine {n}", [python, "-m", "deployments.cli", "engine", "--socket", engine_socket])
            )
            stack.start(
                Child(f"worker {n}", [python, "-m", "prefect", "worker", "start", "--pool", WORK_POOL,
                                      "--type", "process", "--name", f"scaled-{n}",
                                      "--limit", str(WORKER_RUN_LIMIT)],
                      env={SOCKET_ENV: engine_socket})
            )  # fmt: skip
            # Lone bookings run as background task runs (webhook_gateway/background.py); the task
            # parameters are kept under PREFECT_HOME, which every process of this one machine shares.
            stack.start(
                Child(
                    f"task worker {n}",
                    [python, "-m", "deployments.cli", "task-worker", "--name", f"scaled-{n}"],
                )
            )
        stack.env.setdefault("BOOKING_TASK_WORKERS", "true")
        ports = [settings.gateway_port + n for n in range(topology.gateways)]
        for port in ports:
            stack.start(
                Child(f"gateway {port}", [python, "-m", "uvicorn", "--factory", APP,
                                          "--host", settings.gateway_host,
                                          "--port", str(port), "--no-access-log", "--log-level", "info",
                                          *server_cli_options()],
                      f"http://{settings.gateway_host}:{port}/healthz", 60)
            )  # fmt: skip
        say(f"Prefect UI:      {prefect_url}")
        for port in ports:
            say(f"webhook gateway: http://{settings.gateway_host}:{port}")
        say(f"workers:         {topology.workers} on pool {WORK_POOL} (up to {WORKER_RUN_LIMIT} runs each)")
        lone = stack.env["BOOKING_TASK_WORKERS"]
        say(f"task workers:    {topology.workers} (lone bookings to them: BOOKING_TASK_WORKERS={lone})")
        say("Ctrl-C here stops everything")

    return Supervisor(f"{prefect_url}/api", env).run(start)
