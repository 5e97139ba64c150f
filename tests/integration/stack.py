"""`avatar-crm up` as a subprocess, for the fault tests: its own Prefect server, runner and gateway on free
loopback ports, its own data directory, the session's CRM database and provider fakes (from the environment
the integration rig set). It can be killed whole (SIGKILL to every process it started, however deep) or in
parts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from models.data_dir import read_prefect_login
from providers.wix_simulator import WixKeys
from tests.integration.helpers import booking, local_slot, new_booking_id, post_wix, signed_event
from tests.servers import free_port

AVATAR_CRM = Path(sys.executable).parent / "avatar-crm"


def descendants(pid: int) -> list[int]:
    """Every process under `pid`, however deep (Prefect's runner starts each flow run in a session of its own,
    so a run is in no process group of the stack's)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def freeze_tree(pid: int) -> list[int]:
    """SIGSTOP `pid` and everything under it, until no new process appears (a frozen process forks nothing,
    so nothing escapes); the frozen pids."""
    frozen: list[int] = []
    while fresh := [p for p in [pid, *descendants(pid)] if p not in frozen]:
        for victim in fresh:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGSTOP)
        frozen += fresh
    return frozen


def thaw(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def kill_tree(pid: int) -> int:
    """SIGKILL `pid` and everything under it, frozen first; how many processes died. A flow run that outlived
    its "dead" host would finish its work and hide the loss the caller means to cause."""
    frozen = freeze_tree(pid)
    for victim in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return len(frozen)


@dataclass
class Stack:
    data_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    env_removed: frozenset[str] = frozenset()  # names left out of the stack's environment
    arguments: tuple[str, ...] = ("up",)  # `avatar-crm up`, or `up --scaled …`
    prefect_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def prefect_login(self) -> str:
        """The Prefect login `up` wrote in its data directory (every API call but /health needs it)."""
        login = read_prefect_login(self.data_dir)
        assert login is not None, "up has not made its Prefect login yet"
        return login

    def prefect(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the stack's Prefect API, logged in."""
        user, _, password = self.prefect_login.partition(":")
        return httpx.request(method, f"{self.prefect_api}{path}", auth=(user, password), timeout=10, **kwargs)

    def start(self, timeout: float = 120.0) -> None:
        left_out = {"PREFECT_API_URL", "PREFECT_HOME", *self.env_removed}
        env = {key: value for key, value in os.environ.items() if key not in left_out}
        env.update(
            CRM_DATA_DIR=str(self.data_dir),
            PREFECT_PORT=str(self.prefect_port),
            GATEWAY_PORT=str(self.gateway_port),
            PREFECT_LOGGING_LEVEL="WARNING",
            **self.env_overrides,
        )
        log = (self.data_dir / "up.log").open("ab")
        self.process = subprocess.Popen(
            [str(AVATAR_CRM), *self.arguments],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill_all()  # a stack that never became ready must not outlive the test
            raise

    def wait_ready(self, timeout: float) -> None:
        """Until `/readyz` says every part works (the runner has polled Prefect for its deployments)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                if httpx.get(f"{self.gateway_url}/readyz", timeout=5).json().get("status") == "ready":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"stack not ready after {timeout:.0f}s\n{self.log_tail()}")

    def children(self) -> dict[str, int]:
        """The supervisor's children by what they run: `prefect`, `runner`, `gateway`."""
        assert self.process is not None
        pids = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        found = {}
        for pid in map(int, pids):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            name = "prefect" if "server start" in command else "runner" if "serve" in command else "gateway"
            found[name] = pid
        return found

    def freeze_all_but_prefect(self) -> list[int]:
        """SIGSTOP the supervisor and every process under it but the Prefect server, which stays up to be
        asked what it holds; the frozen pids (`thaw` them). Nothing the stack does moves on meanwhile."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)  # it restarts nothing while its children are looked at
        frozen = [self.process.pid]
        for name, pid in self.children().items():
            if name != "prefect":
                frozen += freeze_tree(pid)
        return frozen

    def flow_run_ids(self, state: str) -> set[str]:
        """The ids of the flow runs Prefect holds in state type `state` (e.g. RUNNING) now."""
        response = self.prefect(
            "POST",
            "/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": [state]}}}, "limit": 200},
        )
        response.raise_for_status()
        return {run["id"] for run in response.json()}

    def kill_all(self) -> None:
        """SIGKILL the supervisor and every process under it, flow runs included, as when the host dies."""
        assert self.process is not None
        kill_tree(self.process.pid)
        self.process.wait()
        time.sleep(0.5)

    def signal_child(self, name: str, sig: signal.Signals) -> int:
        pid = self.children()[name]
        os.killpg(pid, sig)
        return pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_all()

    def log_tail(self, lines: int | None = 60) -> str:
        """The last `lines` of the stack's output (None: all of it)."""
        path = self.data_dir / "up.log"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(text[-lines:] if lines else text)

    def running_flow_runs(self) -> int:
        """How many flow runs Prefect holds as Running now (0 when it cannot say)."""
        try:
            response = self.prefect(
                "POST", "/flow_runs/count", json={"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}
            )
            return int(response.json()) if response.status_code == 200 else 0
        except (httpx.HTTPError, ValueError):
            return 0


@dataclass
class Posted:
    booking_id: str
    phone: str
    status: int | None
    answer: dict[str, Any] | None


def post_bookings(gateway_url: str, keys: WixKeys, first: int, count: int, workers: int = 8) -> list[Posted]:
    """`count` new bookings, each its own patient (phone +614000<n>), posted concurrently."""

    def post(n: int) -> Posted:
        booking_id, phone = new_booking_id(), f"+61400{n:06d}"
        body = signed_event(
            keys,
            "wix.bookings.v2.booking_created",
            booking(
                booking_id, 1, local_slot(5, 9 + n % 8), phone=phone, email=None, contact_id=str(uuid4())
            ),
        )
        try:
            response = post_wix(gateway_url, body)
            return Posted(booking_id, phone, response.status_code, response.json())
        except (httpx.HTTPError, ValueError):
            return Posted(booking_id, phone, None, None)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(post, range(first, first + count)))
