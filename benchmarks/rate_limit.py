"""Rate limit under a flood: genuine webhooks from one address all get in while forged ones from another
are throttled, and `/readyz` stays fast.

The gateway runs as `make up` runs it (its own process, uvicorn with the gateway's server options, the
default limits: RATE_LIMIT_PER_SECOND, RATE_LIMIT_FAILURE_WEIGHT) on a fresh SQLite database; Prefect is a
closed port. 2,000 HMAC-signed Wix webhooks from 127.0.0.1 at c=16 and, at the same time, 2,000 forged ones
from 127.0.0.2 at c=16, while `/readyz` is asked every 100 ms from the forging address.

    .venv/bin/python benchmarks/rate_limit.py [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from providers.wix_simulator import sign_hmac, simple_event  # noqa: E402
from webhook_gateway.errors import server_cli_options  # noqa: E402

SECRET = b"benchmark-secret"
URL = "/webhooks/wix/bookings"


async def flood(base: str, source: str, n: int, concurrency: int, forged: bool) -> tuple[Counter[int], float]:
    start = datetime.now(UTC) + timedelta(days=3)
    bodies = [simple_event("bookings/created", booking_id=str(uuid.uuid4()), start=start) for _ in range(n)]
    answers: Counter[int] = Counter()
    transport = httpx.AsyncHTTPTransport(local_address=source)
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as client:

        async def worker() -> None:
            while bodies:
                body = bodies.pop()
                signature = sign_hmac(body, b"forged" if forged else SECRET)
                response = await client.post(
                    URL, content=body, headers={"X-Wix-Webhook-Signature": signature}
                )
                answers[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers, time.monotonic() - began


async def probe(base: str, stop: asyncio.Event) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as client:
        while not stop.is_set():
            began = time.monotonic()
            response = await client.get(f"{base}/readyz", timeout=10)
            results.append((response.status_code, (time.monotonic() - began) * 1000))
            await asyncio.sleep(0.1)
    return results


def describe(probes: list[tuple[int, float]]) -> str:
    latencies = [ms for _, ms in probes]
    return (
        f"{len(probes)} probes, statuses {dict(Counter(s for s, _ in probes))}, "
        f"p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )


async def run(base: str, n: int, concurrency: int) -> None:
    stop = asyncio.Event()
    idle = asyncio.create_task(probe(base, stop))
    await asyncio.sleep(2)
    stop.set()
    print(f"/readyz idle (Prefect is a closed port here, which its client retries): {describe(await idle)}")
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(base, stop))
    (genuine, g_seconds), (forged, f_seconds) = await asyncio.gather(
        flood(base, "127.0.0.1", n, concurrency, forged=False),
        flood(base, "127.0.0.2", n, concurrency, forged=True),
    )
    stop.set()
    probes = await prober
    print(f"genuine from 127.0.0.1: {dict(genuine)} in {g_seconds:.1f} s ({n / g_seconds:.0f}/s)")
    print(f"forged  from 127.0.0.2: {dict(forged)} in {f_seconds:.1f} s")
    print(f"/readyz from 127.0.0.2 during the floods: {describe(probes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-limit", action="store_true", help="the same run, no rate limit")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="rate-limit-bench-"))
    env = {
        **os.environ,
        "CRM_DATA_DIR": str(data_dir),
        "CRM_ENCRYPTION_KEY": "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=",
        "WIX_WEBHOOK_SECRET": SECRET.decode(),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "DISPATCH_POLL_SECONDS": "60",
    }
    for name in ("CRM_DATABASE_URL", "RATE_LIMIT_PER_SECOND", "RATE_LIMIT_FAILURE_WEIGHT", "REDIS_URL"):
        env.pop(name, None)
    if args.no_limit:
        env["RATE_LIMIT_PER_SECOND"] = "0"
    python = sys.executable
    subprocess.run([python, "-m", "deployments.cli", "db", "upgrade"], env=env, cwd=REPO, check=True)
    port = 18790
    command = [python, "-m", "uvicorn", "--factory", "webhook_gateway.app:create_app", "--port", str(port)]
    gateway = subprocess.Popen(
        [*command, "--no-access-log", "--log-level", "warning", *server_cli_options()], env=env, cwd=REPO
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        asyncio.run(run(base, args.requests, args.concurrency))
        rows = sqlite3.connect(data_dir / "crm.db").execute("SELECT count(*) FROM webhookevent").fetchone()[0]
        print(f"inbox rows: {rows} (genuine sent: {args.requests})")
    finally:
        gateway.terminate()
        gateway.wait(timeout=15)


if __name__ == "__main__":
    main()
