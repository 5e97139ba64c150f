"""`avatar-crm up`: the whole system on one machine with embedded defaults, stopped with one Ctrl-C.

Starts, in order: the database migrations, a Prefect server on SQLite (UI on 127.0.0.1:4200), a process that
serves every deployment, and the webhook gateway on 127.0.0.1:8000. Secrets it needs and nobody gave it
(the encryption key; demo Wix signing keys) are generated once into the data directory, and it says so.
A part that dies is started again, with backoff, and the others keep serving meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from blocks import settings_source
from blocks.settings_source import BlockRead
from models import Settings, get_settings
from models.crypto import generate_key
from models.data_dir import PREFECT_LOGIN_FILE, make_private, read_prefect_login
from models.migrate import upgrade
from webhook_gateway.errors import server_cli_options

DEMO_PRIVATE_KEY = "wix-demo-private.pem"
DEMO_PUBLIC_KEY = "wix-demo-public.pem"


def say(message: str) -> None:
    print(f"[avatar-crm] {message}", flush=True)


def ensure_encryption_key(data_dir: Path, configured: str | None) -> str | None:
    """The key to hand the children in CRM_ENCRYPTION_KEY: none when one is configured (the environment or a
    block, which the children read themselves), else the data directory's, else a new one written there."""
    if configured:
        return None
    key_file = data_dir / "encryption.key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = generate_key()
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n")
    say(f"generated a new encryption key in {key_file} (it encrypts patient phone and email).")
    say("  Back it up: without it stored contact details cannot be read. CRM_ENCRYPTION_KEY overrides it.")
    return key


def ensure_prefect_auth(data_dir: Path) -> str:
    """The login that `make up`'s Prefect server asks of every client and of the UI: the data directory's,
    else a new one written there (0600) and said once. Without it anyone who reaches the port would see every
    run and start any deployment."""
    if (existing := read_prefect_login(data_dir)) is not None:
        return existing
    auth_file = data_dir / PREFECT_LOGIN_FILE
    login = f"avatar-crm:{secrets.token_urlsafe(24)}"
    auth_file.touch(mode=0o600)
    auth_file.write_text(login + "\n")
    say(f"generated the Prefect UI's login in {auth_file}; the UI asks for it once per browser:")
    say(f"  {login}")
    return login


def ensure_demo_wix_keys(data_dir: Path) -> str:
    """A local RSA key pair standing in for Wix's, so `avatar-crm demo` can sign webhooks the gateway trusts.

    Only made when no Wix key or secret is configured; real Wix webhooks need the app's own public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_path, public_path = data_dir / DEMO_PRIVATE_KEY, data_dir / DEMO_PUBLIC_KEY
    if not private_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_path.touch(mode=0o600)
        private_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        public_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        say(f"no WIX_PUBLIC_KEY configured: generated a demo key pair in {data_dir} for `avatar-crm demo`.")
    return public_path.read_text()


SERVER_WRITE_BATCHING = {
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "2",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


class Boot(BaseSettings):
    """What starting Prefect needs, read before anything else can be (the full settings may need blocks,
    which live in that Prefect server: SMS_PROVIDER=mobilemessage with its password only in a block)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")
    crm_data_dir: Path = Settings.model_fields["crm_data_dir"].default
    prefect_port: int = Settings.model_fields["prefect_port"].default


def prefect_environment(data_dir: Path, prefect_port: int) -> dict[str, str]:
    """The environment of every child, first of the Prefect server: where Prefect keeps its files and how
    the others reach it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CRM_DATA_DIR"] = str(data_dir)
    env["PREFECT_HOME"] = str((data_dir / "prefect").resolve())
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
    # The server asks it of every request but its health check; every child and the CLI send it.
    env["PREFECT_SERVER_API_AUTH_STRING"] = env["PREFECT_API_AUTH_STRING"] = ensure_prefect_auth(data_dir)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # Every flow run's process says it is alive this often; the gateway's zombie automation marks a run that
    # stops as Crashed after two and a half periods, and its event gets a new run (webhook_gateway/dead_runs).
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    # Fewer, larger writes from the server's event persister and task-run recorder (defaults: a transaction
    # per 20 events, and per task-run event): on the embedded SQLite they queue behind each other and in front
    # of the flow runs the gateway creates. Measured with benchmarks/e2e_latency.py (README, Benchmarks).
    for name, value in SERVER_WRITE_BATCHING.items():
        env.setdefault(name, value)
    return env


def crm_environment(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """What the runner and gateway need beyond Prefect's: the database, and the embedded defaults for what
    nobody configured (the encryption key file; demo Wix keys). Secrets read from blocks are not copied into
    the environment: those processes read the blocks themselves."""
    data_dir = Path(env["CRM_DATA_DIR"])
    make_private(data_dir, settings.crm_database_url)
    env = dict(env)
    env["CRM_DATABASE_URL"] = settings.crm_database_url
    configured = settings.crm_encryption_keys or settings.crm_encryption_key
    configured_key = configured.get_secret_value() if configured else None
    if (key := ensure_encryption_key(data_dir, configured_key)) is not None:
        env["CRM_ENCRYPTION_KEY"] = key
    if not settings.wix_public_key and settings.wix_webhook_secret is None:
        env["WIX_PUBLIC_KEY"] = ensure_demo_wix_keys(data_dir)
    return env


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f}s")


RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STABLE_AFTER_SECONDS = 60.0  # a child that ran this long is healthy again: its next crash restarts at once


@dataclass
class Child:
    """One supervised process: started again with backoff whenever it dies, so the others keep serving."""

    name: str
    command: list[str]
    health_url: str | None = None
    startup_timeout: float = 0.0
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0  # in a row, without a stable run in between
    restart_at: float | None = None
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            self.command, env={**env, **self.env}, start_new_session=True
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self, env: dict[str, str], now: float) -> None:
        """Restart a dead child once its backoff has passed; say so each time."""
        assert self.process is not None
        if self.restart_at is None:
            code = self.process.poll()
            if code is None:
                return
            _kill_group(self.process, signal.SIGTERM)  # what it left behind (forkserver, flow runs) goes too
            if now - self.started_at >= STABLE_AFTER_SECONDS:
                self.restarts = 0
            delay = RESTART_BACKOFF_SECONDS[min(self.restarts, len(RESTART_BACKOFF_SECONDS) - 1)]
            self.restarts += 1
            self.restart_at = now + delay
            say(
                f"{self.name} exited with code {code}; restarting it in {delay:.0f}s "
                f"(restart {self.restarts})"
            )
        elif now >= self.restart_at:
            self.start(env)
            say(f"{self.name} restarted (pid {self.process.pid})")


def _kill_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _stop_group(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    _kill_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process, signal.SIGKILL)
        process.wait()


IDLE_CONFIRM_SECONDS = 2.0  # twice the runner's poll (PREFECT_RUNNER_POLL_FREQUENCY=1): nothing due is left


def _wait_for_flow_runs(prefect_api_url: str, grace: float) -> None:
    """Let the runs already under way finish (bounded), so a Ctrl-C does not leave them Crashed.

    The gateway is stopped first, so no new event runs are created, and the schedules are paused here (as the
    runner itself does on shutdown; it resumes them when it starts), which deletes the runs not yet due; the
    runner starts any already due within a poll, so idle for two polls means idle. A second Ctrl-C stops
    waiting.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    if grace <= 0:
        return
    under_way = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING]))
    )
    deadline = time.monotonic() + grace
    announced = False
    try:
        login = os.environ.get("PREFECT_API_AUTH_STRING")
        updates = {PREFECT_API_URL: prefect_api_url, PREFECT_API_AUTH_STRING: login}
        with temporary_settings(updates), get_client(sync_client=True) as client:
            for deployment in client.read_deployments():
                client.pause_deployment(deployment.id)
            idle_since: float | None = None
            while (now := time.monotonic()) < deadline:
                active = client.count_flow_runs(flow_run_filter=under_way)
                if not active:
                    idle_since = idle_since or now
                    if now - idle_since >= IDLE_CONFIRM_SECONDS:
                        return
                else:
                    idle_since = None
                    if not announced:
                        say(
                            f"waiting up to {grace:.0f}s for {active} flow run(s) under way to finish "
                            "(Ctrl-C again stops them now)"
                        )
                        announced = True
                time.sleep(0.5)
            say(f"flow runs still under way after {grace:.0f}s: stopping them")
    except KeyboardInterrupt:
        say("not waiting: stopping the runs under way")
    except Exception as exc:  # Prefect unreachable or failing: there is nothing we can wait for
        say(f"could not ask Prefect about runs under way ({type(exc).__name__}); stopping")


RUNS_FLOWS = ("flow runner", "worker")  # the children whose flow runs get the grace period (`up --scaled`)


def stop_children(children: list[Child], prefect_api_url: str, grace: float) -> None:
    """Stop in reverse start order, each before the next, so nothing outlives what it talks to.

    The gateway goes first (it stops creating runs; webhooks are then refused and the providers retry them);
    runs already under way get `grace` seconds to finish; then the runner (or each worker) alone is told to
    stop (it cancels whatever is left, through Prefect), then the rest of its process group and the Prefect
    server.
    """
    by_name = {child.name: child.process for child in children if child.process is not None}
    waited = False
    for name in reversed([child.name for child in children]):
        process = by_name.get(name)
        if process is None:
            continue
        if name.startswith(RUNS_FLOWS) and process.poll() is None:
            if not waited:  # once, before the first runner or worker: every run under way, wherever
                _wait_for_flow_runs(prefect_api_url, grace)
                waited = True
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)  # the runner only: its runs must not get it directly
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        _stop_group(process)


def blocks_said(read: BlockRead) -> str:
    if read.state == "read":
        return f"read from Prefect ({', '.join(read.found)})" if read.found else "none pushed (env only)"
    return f"not read ({read.state}): settings from the environment only"


@dataclass
class Supervisor:
    """Runs a stack's processes until Ctrl-C or SIGTERM: `up` and `up --scaled` say what to start, this
    keeps it running (one part dying must not take the others down: the gateway keeps storing webhooks while
    Prefect or the runner is away, and the dispatcher hands them over once it is back) and stops it all."""

    prefect_api_url: str
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    grace: float = Settings.model_fields["stop_grace_seconds"].default  # until the settings are read

    def start(self, child: Child) -> None:
        self.children.append(child)
        start_child(child, self.env)

    def run(self, boot: Callable[[Supervisor], None]) -> int:
        """`boot` starts the stack through `start`; then every child is watched until Ctrl-C; 0, or 1 if
        the stack could not start (a child that never became healthy; settings that do not hold)."""
        # Ctrl-C and SIGTERM both stop everything, even when started from a shell that ignores SIGINT.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            boot(self)
            while True:
                time.sleep(0.5)
                now = time.monotonic()
                for child in self.children:
                    child.check(self.env, now)
        except KeyboardInterrupt:
            say("stopping …")
            return 0
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            say(f"could not start: {exc}")
            return 1
        finally:
            stop_children(self.children, self.prefect_api_url, self.grace)


def up() -> int:
    boot = Boot()
    env = prefect_environment(boot.crm_data_dir.resolve(), boot.prefect_port)
    os.environ.update(env)  # this process reads the blocks from that server once it is up
    prefect_url = f"http://127.0.0.1:{boot.prefect_port}"

    def start(stack: Supervisor) -> None:
        python = sys.executable
        stack.start(
            Child("prefect server", [python, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                     "--port", str(boot.prefect_port)], f"{prefect_url}/api/health", 120)
        )  # fmt: skip
        # Prefect is up: the settings can now be read from its blocks first (secrets need not be in the
        # environment), and the runner and gateway read them the same way.
        get_settings.cache_clear()
        settings = get_settings()
        stack.grace = settings.stop_grace_seconds
        say(f"secrets blocks:  {blocks_said(settings_source.last_read)}")
        stack.env = crm_environment(stack.env, settings)
        os.environ.update(stack.env)  # so the migrations below see the same database and key as the children
        get_settings.cache_clear()
        upgrade(stack.env["CRM_DATABASE_URL"])
        say(f"database ready: {redact(stack.env['CRM_DATABASE_URL'])}")
        stack.start(Child("flow runner", [python, "-m", "deployments.serve"]))
        stack.start(
            Child("gateway", [python, "-m", "uvicorn", "--factory", "webhook_gateway.app:create_served_app",
                              "--host", settings.gateway_host, "--port", str(settings.gateway_port),
                              "--no-access-log", "--log-level", "info", *server_cli_options()],
                  f"http://{settings.gateway_host}:{settings.gateway_port}/healthz", 60)
        )  # fmt: skip
        say(f"Prefect UI:      {prefect_url}")
        say(f"webhook gateway: http://{settings.gateway_host}:{settings.gateway_port}  (OpenAPI: /schema)")
        say(f"SMS provider:    {settings.sms_provider}")
        say("try it:          .venv/bin/avatar-crm demo      (Ctrl-C here stops everything)")

    return Supervisor(f"{prefect_url}/api", env).run(start)


def start_child(child: Child, env: dict[str, str]) -> None:
    say(f"starting {child.name} …")
    child.start(env)
    if child.health_url:
        assert child.process is not None
        _wait_healthy(child.health_url, child.process, child.startup_timeout)


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
