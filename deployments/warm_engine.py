"""A worker host's warm engine: Prefect's flow-run engine, forked from a process that has imported it once.

A process worker starts each flow run as a new interpreter (`python -m prefect.engine`) that clones the
pinned commit and imports Prefect and the CRM: ~0.5 s of clone and 2–4 s of CPU before a booking's
0.4–0.9 s of work, so one core runs fewer than one booking a second (docs/benchmarks.md). The worker's
command is instead `python -m deployments.engine_command`, a few milliseconds of interpreter that hands its
run to this server over a Unix socket (`AVATAR_CRM_ENGINE_SOCKET`); the server forks a copy of itself with
the command's environment, working directory and standard streams, and that copy runs Prefect's own engine
(`prefect.engine`, as `python -m` would) on the flow already imported here. Settings are the server's, read
once when it started (as `make up`'s forked runs' are): restart it after changing them.

Only when this process has imported the very code the deployment pins: the run's deployment clones a
commit (prefect.yaml's pull step) and this checkout was clean at that commit when the server started.
Anything else (another commit, a checkout with changes, a deployment this host does not import, the
Prefect API not answering) is handed back, and the command runs the engine cold as before. With no server
listening the command does the same, so a worker host without one still works.

The forked run keeps the worker's view of it: its output goes to the worker, its exit code is the
command's, a signal sent to the command is forwarded, and if the command is killed (a worker killed with
its process tree) the run kills itself at once.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any
from uuid import UUID

from deployments.engine_command import COLD, HEADER
from deployments.release import run_git
from deployments.serve import load_definitions, module_of

REPO_ROOT = Path(__file__).resolve().parent.parent
GIT_CLONE_STEP = "prefect.deployments.steps.git_clone"
MAX_REQUEST = 4 << 20  # a command's environment and working directory


def checkout_commit(directory: Path = REPO_ROOT) -> str | None:
    """The commit this checkout's code is, or None when its tracked files differ from any commit."""
    try:
        if run_git(directory, "status", "--porcelain", "--untracked-files=no"):
            return None
        return run_git(directory, "rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return None


class RunCold(Exception):
    """This run is not for the code imported here; the message says why."""


def warm_entrypoint(deployment: Any, commit: str | None, modules: set[str]) -> str:
    """The entrypoint to run from the imported code; RunCold when that would not be the deployed code."""
    if deployment is None:
        raise RunCold("the flow run has no deployment")
    if commit is None:
        raise RunCold("this engine's code is at no known commit")
    steps = deployment.pull_steps or []
    if len(steps) != 1 or GIT_CLONE_STEP not in steps[0]:
        raise RunCold("the deployment does not pin a commit")
    pinned = steps[0][GIT_CLONE_STEP].get("commit_sha")
    if pinned != commit:
        raise RunCold(f"the deployment pins {str(pinned)[:12]}, this engine has {commit[:12]}")
    entrypoint = deployment.entrypoint or ""
    if module_of(entrypoint) not in modules or ":" not in entrypoint:
        raise RunCold(f"{entrypoint} is not imported here")
    return f"{module_of(entrypoint)}:{entrypoint.partition(':')[2]}"


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the engine command went away")
        data += chunk
    return bytes(data)


def _watch_command(connection: socket.socket) -> None:
    """The command's signals are this run's; the command gone means the run goes too."""
    while True:
        try:
            data = connection.recv(1)
        except OSError:
            data = b""
        if not data:
            os.kill(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), data[0])


def _deployment_of(flow_run_id: str) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
        if flow_run.deployment_id is None:
            return None
        return client.read_deployment(flow_run.deployment_id)


def run_forked(connection: socket.socket, commit: str | None, modules: set[str]) -> None:
    """In the fork: take over the command's streams and environment, then run the engine or hand it back."""
    code = 1
    try:
        (length,), fds = _request_header(connection)
        request = json.loads(_read_exactly(connection, length))
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.setsid()  # its own process group: stopping this server leaves runs under way alone
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        threading.Thread(target=_watch_command, args=(connection,), daemon=True).start()
        flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID", "")
        try:
            entrypoint = warm_entrypoint(_deployment_of(flow_run_id), commit, modules)
        except Exception as exc:  # RunCold, the API unreachable, no run id: the cold engine runs it
            reason = str(exc) if isinstance(exc, RunCold) else f"{type(exc).__name__}: {exc}"
            print(f"warm engine: flow run {flow_run_id} runs cold ({reason})", file=sys.stderr, flush=True)
            code = COLD
        else:
            print(f"warm engine: flow run {flow_run_id} runs warm ({entrypoint})", file=sys.stderr)
            os.environ["PREFECT__FLOW_ENTRYPOINT"] = entrypoint  # no pull step: this code is that commit's
            sys.argv = ["prefect.engine"]
            # Running an imported module as __main__ is the point (it is imported so that forks are warm).
            warnings.filterwarnings("ignore", "'prefect.engine' found in sys.modules", RuntimeWarning)
            try:
                runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            connection.sendall(HEADER.pack(code))
        os._exit(code if code != COLD else 0)


def _request_header(connection: socket.socket) -> tuple[tuple[int], list[int]]:
    data, fds, _flags, _address = socket.recv_fds(connection, HEADER.size, 3)
    if len(data) != HEADER.size or len(fds) != 3:
        raise ConnectionError("not an engine command's request")
    return struct.unpack(HEADER.format, data), fds


def preload(entrypoints: list[str]) -> set[str]:
    """Import what every run needs, once: settings (from the blocks), log format, Prefect's engine, flows."""
    importlib.import_module("deployments.flow_process")
    importlib.import_module("prefect.engine")
    importlib.import_module("prefect.flow_engine")
    modules = {module_of(entrypoint) for entrypoint in entrypoints}
    for module in modules:
        importlib.import_module(module)
    return modules


def serve(path: Path, commit: str | None) -> None:
    """Accept commands and fork one run each, single-threaded (a fork of a threaded process is unsafe)."""
    modules = preload([spec["entrypoint"] for spec in load_definitions()])
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # only this user may hand it runs
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    listener.listen(128)
    said = f"commit {commit[:12]}" if commit else "no known commit: every run cold"
    print(f"warm engine listening on {path} ({said})", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            ready, _, _ = select.select([listener], [], [], 1.0)
            _reap()
            if not ready:
                continue
            connection, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                run_forked(connection, commit, modules)
            connection.close()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
