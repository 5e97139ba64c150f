"""The hand-over between a process worker's command and the host's warm engine, with real processes.

A Prefect API that accepts a run's lookup and never answers holds the forked run mid-way, so what happens
to it when its command is signalled or killed can be watched: the run must go with the command, as it did
when the run was the command itself. Without an engine, or with one that cannot vouch for the run's code,
the command must be Prefect's own engine, run cold.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployments.engine_command import SOCKET_ENV
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]


class _HangingPrefect(BaseHTTPRequestHandler):
    """Every lookup of a flow run hangs (as a Prefect API stuck behind a lock); anything else is 404."""

    release = threading.Event()

    def _answer(self) -> None:
        if "/flow_runs/" in self.path:
            self.release.wait(60)
        body = b'{"detail": "Not Found"}'
        self.send_response(404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hanging_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangingPrefect)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    _HangingPrefect.release.set()
    server.shutdown()
    _HangingPrefect.release.clear()


def _env(api: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CRM_"))}
    return {
        **env,
        "PREFECT_API_URL": api,
        "PREFECT_CLIENT_MAX_RETRIES": "0",
        "CRM_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }


@pytest.fixture
def engine(hanging_api: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    path = tmp_path / "engine.sock"
    server = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "engine", "--socket", str(path), "--commit", "a" * 40],
        env=_env(hanging_api, tmp_path),
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: path.exists() or server.poll() is not None, timeout=120, interval=0.2)
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        yield server, path, hanging_api
    finally:
        server.terminate()
        server.wait(timeout=30)


def _command(api: str, tmp_path: Path, socket_path: Path, run_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.engine_command"],
        env=_env(api, tmp_path, **{SOCKET_ENV: str(socket_path), "PREFECT__FLOW_RUN_ID": run_id}),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _runs_of(server: subprocess.Popen[bytes]) -> list[int]:
    """The runs the engine has forked and not yet reaped (a dead, unreaped one is a zombie: not running)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    alive = []
    for pid in children:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        if state != "Z":
            alive.append(int(pid))
    return alive


def test_a_command_killed_with_sigkill_takes_its_run_with_it(engine, tmp_path: Path) -> None:
    server, path, api = engine
    command = _command(api, tmp_path, path, str(uuid.uuid4()))
    runs = wait_until(lambda: _runs_of(server), timeout=30, interval=0.1)
    assert len(runs) == 1
    time.sleep(0.5)
    assert _runs_of(server) == runs  # held by the hanging API: the run is under way
    command.kill()
    command.wait(timeout=10)
    gone = time.monotonic()
    wait_until(lambda: not _runs_of(server), timeout=5, interval=0.05)
    assert time.monotonic() - gone < 5


def test_a_signal_to_the_command_reaches_its_run_and_the_command_exits_with_it(engine, tmp_path) -> None:
    server, path, api = engine
    command = _command(api, tmp_path, path, str(uuid.uuid4()))
    wait_until(lambda: _runs_of(server), timeout=30, interval=0.1)
    command.send_signal(signal.SIGTERM)
    # The command only forwards the signal: it ends because its run ended.
    assert command.wait(timeout=10) != 0
    assert "ended without an exit code" in command.stderr.read().decode()
    wait_until(lambda: not _runs_of(server), timeout=5, interval=0.05)


def test_a_run_the_engine_cannot_vouch_for_runs_cold_in_prefects_own_engine(engine, tmp_path) -> None:
    server, path, api = engine
    _HangingPrefect.release.set()  # the API answers at once: this run is not found
    command = _command(api, tmp_path, path, str(uuid.uuid4()))
    assert command.wait(timeout=120) == 1
    said = command.stderr.read().decode()
    assert "runs cold (ObjectNotFound" in said, said[-2000:]
    # then Prefect's engine itself, started cold by the command, looked the run up and reported it missing
    assert "Traceback" in said and "prefect/engine.py" in said, said[-2000:]
    assert server.poll() is None and not _runs_of(server)


def test_without_a_warm_engine_the_command_is_prefects_engine(tmp_path: Path) -> None:
    nobody = tmp_path / "nobody.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(nobody))
    listener.close()  # a stale socket file, as a stopped engine leaves: nothing listens
    command = _command("http://127.0.0.1:9/api", tmp_path, nobody, "not-a-flow-run-id")
    assert command.wait(timeout=120) == 1
    assert "Invalid flow run id" in command.stderr.read().decode()
