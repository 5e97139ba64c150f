"""`avatar-crm up`: the whole system on one machine with embedded defaults, stopped with one Ctrl-C.

Starts, in order: the database migrations, a Prefect server on SQLite (UI on 127.0.0.1:4200), a process that
serves every deployment, and the webhook gateway on 127.0.0.1:8000. Secrets it needs and nobody gave it
(the encryption key; demo Wix signing keys) are generated once into the data directory, and it says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from models import get_settings
from models.crypto import generate_key
from models.migrate import upgrade

DEMO_PRIVATE_KEY = "wix-demo-private.pem"
DEMO_PUBLIC_KEY = "wix-demo-public.pem"


def _say(message: str) -> None:
    print(f"[avatar-crm] {message}", flush=True)


def ensure_encryption_key(data_dir: Path) -> str:
    """The key from the environment, else from the data directory, else a new one written there."""
    if os.environ.get("CRM_ENCRYPTION_KEY"):
        return os.environ["CRM_ENCRYPTION_KEY"]
    key_file = data_dir / "encryption.key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = generate_key()
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n")
    _say(f"generated a new encryption key in {key_file} (it encrypts patient phone and email).")
    _say("  Back it up: without it stored contact details cannot be read. CRM_ENCRYPTION_KEY overrides it.")
    return key


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
        _say(f"no WIX_PUBLIC_KEY configured: generated a demo key pair in {data_dir} for `avatar-crm demo`.")
    return public_path.read_text()


SERVER_WRITE_BATCHING = {
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "2",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def stack_environment() -> dict[str, str]:
    settings = get_settings()
    data_dir = settings.crm_data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CRM_DATA_DIR"] = str(data_dir)
    env["CRM_DATABASE_URL"] = settings.crm_database_url
    env["CRM_ENCRYPTION_KEY"] = ensure_encryption_key(data_dir)
    if not settings.wix_public_key and settings.wix_webhook_secret is None:
        env["WIX_PUBLIC_KEY"] = ensure_demo_wix_keys(data_dir)
    env["PREFECT_HOME"] = str(settings.prefect_home.resolve())
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{settings.prefect_port}/api"
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # Fewer, larger writes from the server's event persister and task-run recorder (defaults: a transaction
    # per 20 events, and per task-run event): on the embedded SQLite they queue behind each other and in front
    # of the flow runs the gateway creates. Measured with benchmarks/e2e_latency.py (README, Benchmarks).
    for name, value in SERVER_WRITE_BATCHING.items():
        env.setdefault(name, value)
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


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop in reverse start order, each before the next, so nothing outlives what it talks to."""
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def up() -> int:
    settings = get_settings()
    env = stack_environment()
    os.environ.update(env)  # so the migrations below see the same database and key as the children
    get_settings.cache_clear()
    upgrade(env["CRM_DATABASE_URL"])
    _say(f"database ready: {_redact(env['CRM_DATABASE_URL'])}")

    python = sys.executable
    prefect_url = f"http://127.0.0.1:{settings.prefect_port}"
    commands = [
        ("prefect server", [python, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                            "--port", str(settings.prefect_port)], f"{prefect_url}/api/health", 120),
        ("flow runner", [python, "-m", "deployments.serve"], None, 0),
        ("gateway", [python, "-m", "uvicorn", "--factory", "webhook_gateway.app:create_app",
                     "--host", settings.gateway_host, "--port", str(settings.gateway_port),
                     "--no-access-log", "--log-level", "info"],
         f"http://{settings.gateway_host}:{settings.gateway_port}/healthz", 60),
    ]  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    # Ctrl-C and SIGTERM both stop everything, even when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for name, command, health_url, timeout in commands:
            _say(f"starting {name} …")
            process = subprocess.Popen(command, env=env, start_new_session=True)  # noqa: S603 (our own argv)
            processes.append(process)
            if health_url:
                _wait_healthy(health_url, process, timeout)
        _say(f"Prefect UI:      {prefect_url}")
        _say(f"webhook gateway: http://{settings.gateway_host}:{settings.gateway_port}  (OpenAPI: /schema)")
        _say(f"SMS provider:    {settings.sms_provider}")
        _say("try it:          .venv/bin/avatar-crm demo      (Ctrl-C here stops everything)")
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        dead = [name for (name, *_), p in zip(commands, processes, strict=False) if p.poll() is not None]
        _say(f"{', '.join(dead)} stopped unexpectedly; shutting down")
        return 1
    except KeyboardInterrupt:
        _say("stopping …")
        return 0
    except RuntimeError as exc:
        _say(f"could not start: {exc}")
        return 1
    finally:
        _stop(processes)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
