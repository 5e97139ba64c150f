"""Gateway ingest: signed Wix webhooks verified and stored durably per second, beside a bare Litestar app.

The gateway's work per webhook is an RS256 signature check, parsing, encryption of the body and a fsynced
SQLite commit (group-committed across concurrent requests) before it answers. The baseline is a bare
Litestar endpoint that reads the body and answers the same JSON, served the same way (one uvicorn worker
in its own process) and loaded by the same client in the same run, so the ratio isolates our cost from
whatever else this shared 2-core machine is doing — including the load generator itself, which competes
for the same cores.

Prefect is not involved: the gateway's Prefect URL points at a closed port, so the dispatcher fails fast,
backs off, and leaves the rows `received` (that path has its own integration test). Every accepted
webhook must then be a row in the inbox, which the script checks at the end.

    .venv/bin/python benchmarks/gateway_ingest.py [--duration 10] [--concurrency 1,16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stats import percentile  # noqa: E402

from tests.servers import free_port  # noqa: E402

TARGET_RPS, TARGET_P99_MS = 1000.0, 25.0


# --- the two servers (each runs in its own process: `--serve gateway|baseline PORT`) -----------------


def serve(kind: str, port: int) -> None:
    import uvicorn

    if kind == "gateway":
        from webhook_gateway.app import create_app

        app = create_app(prefect_api_url=os.environ["PREFECT_API_URL"])
    else:
        from litestar import Litestar, Request, post

        @post("/webhooks/wix/bookings", status_code=200)
        async def accept(request: Request) -> dict[str, str]:
            await request.body()
            return {"status": "accepted"}

        app = Litestar([accept], openapi_config=None)
    from webhook_gateway.errors import SERVER_OPTIONS  # as `make up` serves the gateway: h11, bounded heads

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **SERVER_OPTIONS)  # type: ignore[arg-type]


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def start_server(kind: str, env: dict[str, str]) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, str(port)], env=env, cwd=REPO, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited with {process.returncode}")
        try:
            httpx.post(f"{url}/webhooks/wix/bookings", content=b"", timeout=1)
            return Server(kind, url, process)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start") from None
            time.sleep(0.2)


# --- load -----------------------------------------------------------------------------------------


@dataclass
class Result:
    target: str
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    accepted: int = 0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


async def load(server: Server, bodies: Iterator[bytes], concurrency: int, duration: float) -> Result:
    """Keep-alive HTTP/1.1 on raw asyncio streams (under uvloop): httpx's pool, not the servers, was the
    bottleneck beyond a few hundred requests a second on this machine."""
    result = Result(server.name, concurrency, duration)
    next_body = bodies
    host, port = server.url.removeprefix("http://").split(":")
    head = f"POST /webhooks/wix/bookings HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop_at:
                body = next(next_body, None)
                if body is None:
                    raise SystemExit("ran out of pre-signed webhooks: raise --bodies")
                started = time.perf_counter()
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                headers = await reader.readuntil(b"\r\n\r\n")
                length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                answer = await reader.readexactly(length)
                elapsed = time.perf_counter() - started
                if headers.startswith(b"HTTP/1.1 200"):
                    result.latencies.append(elapsed)
                    result.accepted += b'"accepted"' in answer
                else:
                    result.errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def presign(count: int) -> tuple[list[bytes], str]:
    """Distinct signed booking_created webhooks (unique event ids), made before any timing starts."""
    from providers.wix_simulator import WixKeys, booking_payload, sign_wix_jwt, wix_event

    keys = WixKeys()
    event_type = "wix.bookings.v2.booking_created"
    start = datetime.now(UTC) + timedelta(days=3)
    bodies = [
        sign_wix_jwt(
            keys,
            wix_event(event_type, booking_payload(booking_id=str(uuid.uuid4()), revision=1, start=start)),
            event_type,
        )
        for _ in range(count)
    ]
    return bodies, keys.public_pem


def _count_rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM webhookevent").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument(
        "--bodies", type=int, default=80_000, help="pre-signed webhooks (must outlast the run)"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    scratch = Path(tempfile.mkdtemp(prefix="crm-ingest-"))
    database = scratch / "crm.db"
    print(f"pre-signing {args.bodies} webhooks …", flush=True)
    bodies, public_pem = presign(args.bodies)

    from models.crypto import generate_key
    from models.migrate import upgrade

    env = {
        **os.environ,
        "CRM_DATA_DIR": str(scratch),
        "CRM_DATABASE_URL": f"sqlite:///{database}",
        "CRM_ENCRYPTION_KEY": generate_key(),
        "WIX_PUBLIC_KEY": public_pem,
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",  # nothing listens there
        "DISPATCH_POLL_SECONDS": "3600",
        "SMS_PROVIDER": "sandbox",
    }
    os.environ.update({k: env[k] for k in ("CRM_DATA_DIR", "CRM_DATABASE_URL", "CRM_ENCRYPTION_KEY")})
    upgrade(env["CRM_DATABASE_URL"])

    servers = []
    results: list[Result] = []
    try:
        servers = [start_server("baseline", env), start_server("gateway", env)]
        offset = 0
        for concurrency in levels:
            for server in servers:
                # Only the gateway needs fresh events (a repeat would be a duplicate); the baseline can cycle.
                chunk = iter(bodies[offset:]) if server.name == "gateway" else itertools.cycle(bodies[:1000])
                result = uvloop.run(load(server, chunk, concurrency, args.duration))
                if server.name == "gateway":
                    offset += len(result.latencies) + result.errors
                results.append(result)
                print(
                    f"  {server.name:<8} c={concurrency:<3} {result.rps:8.0f} req/s"
                    f"  p50 {result.pct(50):6.1f} ms  p99 {result.pct(99):6.1f} ms  errors {result.errors}",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
    stored = _count_rows(database)
    shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n{'target':<9}{'c':>4}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for r in results:
        print(
            f"{r.target:<9}{r.concurrency:>4}{len(r.latencies):>10}{r.rps:>9.0f}{r.pct(50):>9.1f}"
            f"{r.pct(99):>9.1f}{r.errors:>8}"
        )
    print("\ngateway / baseline req/s:")
    for concurrency in levels:
        base = next(r for r in results if r.target == "baseline" and r.concurrency == concurrency)
        gate = next(r for r in results if r.target == "gateway" and r.concurrency == concurrency)
        print(f"  c={concurrency:<3} {gate.rps / base.rps:.2f}")

    accepted = sum(r.accepted for r in results if r.target == "gateway")
    print(
        f"\ninbox rows {stored}, 'accepted' answers {accepted}: {'OK' if stored == accepted else 'MISMATCH'}"
    )

    ok = stored == accepted
    at16 = next((r for r in results if r.target == "gateway" and r.concurrency == 16), None)
    if at16 is not None:
        met = at16.rps >= TARGET_RPS and at16.pct(99) <= TARGET_P99_MS and at16.errors == 0
        print(
            f"target at c=16: ≥ {TARGET_RPS:.0f} verified, stored webhooks/s, p99 ≤ {TARGET_P99_MS:.0f} ms — "
            f"{at16.rps:.0f}/s, p99 {at16.pct(99):.1f} ms: {'MET' if met else 'NOT MET'}"
        )
    print("(load generator, gateway and baseline share this machine's cores)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
