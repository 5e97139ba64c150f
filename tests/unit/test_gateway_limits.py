"""A request's head is bounded: the gateway, started the way `make up` and `avatar-crm gateway` start it,
stops reading a header past the limit instead of buffering it (the review saw four 50 MB headers take the
gateway from 150 to 507 MiB); too many headers are refused before any route runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from models import Settings
from tests.servers import free_port
from webhook_gateway.app import create_app
from webhook_gateway.errors import MAX_HEADER_BYTES, MAX_HEADERS, server_cli_options

pytestmark = pytest.mark.db

HEADER_BYTES = 1024 * 1024  # a 1 MiB header, sent on each of 4 connections at once


@pytest.fixture(scope="module")
def served_gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The gateway in its own process, with the server options `make up` passes (Prefect: a closed port)."""
    port = free_port()
    env = {
        **os.environ,
        "CRM_DATABASE_URL": database_url,
        "CRM_DATA_DIR": str(tmp_path_factory.mktemp("gateway-data")),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "webhook_gateway.app:create_app",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        [*command, "--no-access-log", "--log-level", "warning", *server_cli_options()],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def _send_huge_header(port: int, answers: list[bytes]) -> None:
    """Stream a 1 MiB header; record what the server answered (b"" if it only closed the connection)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Filler: "
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        try:
            connection.sendall(head)
            chunk = b"a" * 16384
            for _ in range(HEADER_BYTES // len(chunk)):
                connection.sendall(chunk)
            connection.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: what we want
        try:
            answers.append(connection.recv(4096))
        except (ConnectionResetError, TimeoutError):
            answers.append(b"")


def test_a_huge_header_is_refused_without_being_buffered(served_gateway: tuple[str, int]) -> None:
    url, pid = served_gateway
    port = int(url.rsplit(":", 1)[1])
    before = _rss_kib(pid)
    answers: list[bytes] = []
    threads = [threading.Thread(target=_send_huge_header, args=(port, answers)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 4
    for answer in answers:  # never served: refused (400) or cut off
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
        assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:100]
    grown = _rss_kib(pid) - before
    assert grown < 8 * 1024, f"gateway RSS grew {grown} KiB"
    # ... and it still serves ordinary requests, with ordinary headers.
    ok = httpx.get(f"{url}/healthz", headers={"X-Filler": "a" * (MAX_HEADER_BYTES // 2)}, timeout=5)
    assert ok.status_code == 200


async def test_too_many_headers_are_refused_with_431(db: str) -> None:
    settings = Settings(crm_database_url=db, dispatch_poll_seconds=60.0)  # type: ignore[call-arg]
    app = create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as client:
        many = {f"X-H{i}": "1" for i in range(MAX_HEADERS + 1)}
        refused = await client.post("/webhooks/wix/bookings", content=b"x", headers=many)
        fine = await client.get("/healthz", headers={f"X-H{i}": "1" for i in range(MAX_HEADERS - 20)})
    assert refused.status_code == 431
    assert refused.json() == {"status": "error", "detail": "request headers too large"}
    assert fine.status_code == 200
