"""A worker on another host runs the production deployments: `prefect deploy` from one checkout (the
deployer's) onto a real Prefect server, that checkout then deleted, and a process worker started from a fresh
clone in another folder, with its own environment built from the lock file, runs a flow from those
deployments: its pull step clones the pinned commit from the repository, and the flow does its work on the
CRM database (a stored webhook body past its retention period is purged)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import select

from models import InboxStatus, WebhookEvent, session_scope
from tests.inbox_events import store_event
from tests.servers import free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UV = REPO_ROOT / ".uv" / "bin" / "uv"


def _git(directory: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)


def _environment(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    """This session's CRM settings (database, key, data directory), a Prefect home of the "host's" own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.pop("PYTHONPATH", None)
    return {**env, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home), **extra}


@contextlib.contextmanager
def _process(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"the Prefect server never answered:\n{log.read_text()[-3000:]}")


def test_a_worker_started_from_another_clone_runs_the_deployed_flows(db: str, tmp_path: Path) -> None:
    if not (REPO_ROOT / ".git").exists() or not UV.exists():
        pytest.skip("needs a git checkout and `make install`'s uv")
    origin, deployer, host = tmp_path / "origin.git", tmp_path / "deployer", tmp_path / "worker-host"
    _git(tmp_path, "clone", "--quiet", "--bare", str(REPO_ROOT), str(origin))
    _git(tmp_path, "clone", "--quiet", str(origin), str(deployer))
    _git(tmp_path, "clone", "--quiet", str(origin), str(host))
    # The other host's environment, from the lock file (packages come from uv's cache).
    subprocess.run(
        [str(UV), "sync", "--frozen", "--no-dev", "--quiet", "--python", sys.executable],
        cwd=host,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(host / ".venv"), "UV_PYTHON_DOWNLOADS": "never"},
        check=True,
    )

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = _environment(api_url, tmp_path / "server-home")
    server_command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with _process(
        [*server_command, "--no-services", "--no-ui"], tmp_path, server_env, tmp_path / "server.log"
    ) as server:
        _wait_healthy(api_url, server, tmp_path / "server.log")

        # The deployer: the work pool, then `prefect deploy` of the retention deployment from its checkout.
        deploy_env = _environment(api_url, tmp_path / "deployer-home", AVATAR_CRM_GIT_URL=str(origin))
        prefect = str(BIN / "prefect")
        for command in (
            [prefect, "work-pool", "create", "avatar-crm", "--type", "process"],
            [prefect, "--no-prompt", "deploy", "--name", "retention"],
        ):
            done = subprocess.run(
                command, cwd=deployer, env=deploy_env, capture_output=True, text=True, timeout=180
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        shutil.rmtree(deployer)  # nothing of the deployer's checkout is needed any more

        event_id = store_event("wix", b"a patient's booking", "wix.bookings.v2.booking_created")
        with session_scope() as session:  # processed long ago: its body is past the retention period
            stored = session.get(WebhookEvent, event_id)
            assert stored is not None
            stored.status, received = InboxStatus.PROCESSED, stored.received_at
            session.add(stored)
        worker_env = _environment(api_url, tmp_path / "worker-home", PREFECT_WORKER_QUERY_SECONDS="1")
        worker_env["PATH"] = f"{host / '.venv' / 'bin'}{os.pathsep}{worker_env['PATH']}"  # as its unit sets
        worker_command = [str(host / ".venv" / "bin" / "prefect"), "worker", "start", "--pool", "avatar-crm"]
        with (
            _process(worker_command, host, worker_env, tmp_path / "worker.log"),
            temporary_settings({PREFECT_API_URL: api_url}),
            get_client(sync_client=True) as client,
        ):
            deployment = client.read_deployment_by_name("retention/retention")
            assert deployment.pull_steps and "git_clone" in str(deployment.pull_steps)
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"now": (received + timedelta(days=60)).isoformat()}
            )
            deadline = time.monotonic() + 240
            while not (state := client.read_flow_run(run.id).state) or not state.is_final():
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-4000:]
                time.sleep(1)
            assert state.is_completed(), f"{state!r}\n" + (tmp_path / "worker.log").read_text()[-4000:]
            # The flow run's own logs reach the server in batches, after its state may already be final: the
            # worker's two lines alone were read once (a CI run). Ask again for a while.
            deadline = time.monotonic() + 60
            while True:
                logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
                if any("pull step" in log.message for log in logs) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert any("pull step" in log.message for log in logs), [log.message for log in logs]

    with session_scope() as session:
        row = session.exec(select(WebhookEvent).where(WebhookEvent.id == event_id)).one()
        assert row.purged_at is not None  # the flow, run by the other host's worker, did its work here
