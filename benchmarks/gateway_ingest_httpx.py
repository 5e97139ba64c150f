"""Gateway ingest, driven by httpx: signed Wix webhooks verified and durably stored per second, beside a bare
Litestar endpoint measured in the same run.

Why the baseline: this machine has 2 cores shared by the load generator, the gateway and whatever else is
running (tests, other benchmarks). An absolute req/s figure mixes our cost with that noise and with the
client's own cost. A bare Litestar app that reads the body and answers the same JSON, served the same way
(uvicorn, one worker, its own process, access log off) and loaded by the same client seconds apart, shows
the ceiling of the stack on this machine right now; the gateway/baseline ratio is the price of what the
gateway adds (RS256 verify, parsing, body encryption, a fsynced SQLite group commit before answering).

The gateway runs exactly as `avatar-crm up` starts it (`uvicorn --factory webhook_gateway.app:create_app`),
on a fresh SQLite database in a temp directory. Prefect is not needed: its API URL points at a closed
loopback port and the dispatcher's poll interval is an hour, so rows stay `received`. Every "accepted"
answer must then be exactly one inbox row; the script checks that and exits 1 if not.

    .venv/bin/python benchmarks/gateway_ingest_httpx.py [--duration 10] [--concurrency 1,16,64] [--clients 1]

`--clients N` spreads the load over N client processes (each one httpx.AsyncClient on one event loop), for
when one Python client process is the bottleneck; the client and server CPU columns show which side is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from litestar import Litestar

PATH = "/webhooks/wix/bookings"
EVENT_TYPE = "wix.bookings.v2.booking_created"
TARGET_CONCURRENCY, TARGET_RPS, TARGET_P99_MS = 16, 1000.0, 25.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the baseline app (imported by its uvicorn process as `gateway_ingest_httpx:baseline_app`) -----------


def baseline_app() -> Litestar:
    from litestar import Litestar, Request, get, post

    @post(PATH, status_code=200)
    async def accept(request: Request) -> dict[str, str]:
        await request.body()
        return {"status": "accepted"}

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([accept, healthz], openapi_config=None)


# --- servers --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads, including the inbox writer)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_server(name: str, factory: str, env: dict[str, str], scratch: Path, app_dir: Path) -> Server:
    import httpx

    port = free_port()
    log = scratch / f"{name}.log"
    command = [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--app-dir", str(app_dir),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{name}: /healthz not 200 after 60 s:\n{server.log_tail()}")
        time.sleep(0.2)


# --- signing (before any timing, in a process per core) --------------------------------------------------

_signer_keys: object = None


def _init_signer(private_pem: str) -> None:
    global _signer_keys
    from tests.fakes.wix import WixKeys

    _signer_keys = WixKeys.from_private_pem(private_pem)


def _sign_batch(count: int) -> list[bytes]:
    """Distinct booking_created webhooks: a fresh event id and booking id each, so none is a duplicate."""
    from tests.fakes.wix import booking_payload, sign_wix_jwt, wix_event

    start = datetime.now(UTC) + timedelta(days=3)
    return [
        sign_wix_jwt(
            _signer_keys,  # type: ignore[arg-type]
            wix_event(EVENT_TYPE, booking_payload(booking_id=str(uuid.uuid4()), start=start)),
            EVENT_TYPE,
            exp_seconds=3600,  # outlives the run; Wix's own are short-lived, the gateway checks only exp
        )
        for _ in range(count)
    ]


def sign(pool: Executor, count: int, workers: int) -> list[bytes]:
    sizes = [count // workers + (i < count % workers) for i in range(workers)]
    return list(itertools.chain.from_iterable(pool.map(_sign_batch, [s for s in sizes if s])))


# --- load -----------------------------------------------------------------------------------------------


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    accepted: int = 0
    other_2xx: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    exhausted: bool = False


async def _drive(
    url: str, bodies: Iterator[bytes], connections: int, start_at: float, duration: float
) -> ClientResult:
    import httpx

    result = ClientResult()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Content-Type": "text/plain"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        # Open every connection before the clock starts.
        await asyncio.gather(*(client.get("/healthz") for _ in range(connections)))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_started, started = time.process_time(), time.perf_counter()
        stop_at = started + duration

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                body = next(bodies, None)
                if body is None:
                    result.exhausted = True
                    return
                sent = time.perf_counter()
                try:
                    response = await client.post(PATH, content=body, headers=headers)
                except httpx.HTTPError:
                    result.errors += 1
                    continue
                latency = time.perf_counter() - sent
                if 200 <= response.status_code < 300:
                    result.latencies.append(latency)
                    if b'"accepted"' in response.content:
                        result.accepted += 1
                    else:
                        result.other_2xx += 1
                else:
                    result.errors += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        result.elapsed = time.perf_counter() - started
        result.cpu = time.process_time() - cpu_started
    return result


def _run_loop(coro: object) -> ClientResult:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


def run_client(
    url: str, bodies: Sequence[bytes], cycle: bool, connections: int, start_at: float, duration: float
) -> ClientResult:
    source = itertools.cycle(bodies) if cycle else iter(bodies)
    return _run_loop(_drive(url, source, connections, start_at, duration))


@dataclass
class Phase:
    target: str
    concurrency: int
    results: list[ClientResult]
    server_cpu: float

    @property
    def requests(self) -> int:
        return sum(len(r.latencies) for r in self.results)

    @property
    def seconds(self) -> float:
        return max(r.elapsed for r in self.results)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.results)

    @property
    def client_cpu(self) -> float:
        return sum(r.cpu for r in self.results) / self.seconds

    @property
    def exhausted(self) -> bool:
        return any(r.exhausted for r in self.results)

    def pct(self, p: float) -> float:
        ordered = sorted(itertools.chain.from_iterable(r.latencies for r in self.results))
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def run_phase(
    server: Server,
    bodies: list[bytes],
    cycle: bool,
    concurrency: int,
    duration: float,
    clients: Executor | None,
    n_clients: int,
) -> Phase:
    cpu_before = server.cpu_seconds()
    if clients is None or n_clients == 1 or concurrency == 1:
        results = [run_client(server.url, bodies, cycle, concurrency, time.time(), duration)]
    else:
        n = min(n_clients, concurrency)
        shares = [concurrency // n + (i < concurrency % n) for i in range(n)]
        slices = [bodies[i::n] for i in range(n)]  # disjoint: no event is sent twice
        start_at = time.time() + 2.0  # every client process connected before the clock starts
        futures = [
            clients.submit(run_client, server.url, part, cycle, share, start_at, duration)
            for part, share in zip(slices, shares, strict=True)
        ]
        results = [f.result() for f in futures]
    phase = Phase(server.name, concurrency, results, 0.0)
    phase.server_cpu = (server.cpu_seconds() - cpu_before) / phase.seconds
    return phase


# --- the run --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target and concurrency")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated concurrency levels")
    parser.add_argument("--clients", type=int, default=1, help="client processes (default: one event loop)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    cores = os.cpu_count() or 1

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    scratch = Path(tempfile.mkdtemp(prefix="crm-ingest-httpx-"))
    try:
        return run(args, levels, cores, scratch)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, levels: list[int], cores: int, scratch: Path) -> int:
    servers: list[Server] = []
    spawn = multiprocessing.get_context("spawn")
    signers: ProcessPoolExecutor | None = None
    clients: ProcessPoolExecutor | None = None
    try:
        from models import WebhookEvent, get_settings
        from models.crypto import generate_key
        from models.migrate import upgrade
        from tests.fakes.wix import WixKeys

        keys = WixKeys()
        database = scratch / "crm.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WIX_", "MOBILEMESSAGE_"))}
        env |= {
            "CRM_DATA_DIR": str(scratch),
            "CRM_DATABASE_URL": f"sqlite:///{database}",
            "CRM_ENCRYPTION_KEY": generate_key(),
            "WIX_PUBLIC_KEY": keys.public_pem,
            "SMS_PROVIDER": "sandbox",
            "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",  # nothing listens there
            "PREFECT_HOME": str(scratch / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DISPATCH_POLL_SECONDS": "3600",
            "DISPATCH_MAX_BACKOFF_SECONDS": "3600",
        }
        os.environ.update({k: env[k] for k in ("CRM_DATA_DIR", "CRM_DATABASE_URL", "CRM_ENCRYPTION_KEY")})
        get_settings.cache_clear()
        upgrade(env["CRM_DATABASE_URL"])

        signers = ProcessPoolExecutor(
            cores, mp_context=spawn, initializer=_init_signer, initargs=(keys.private_pem,)
        )
        # The baseline stores nothing, so it may repeat these; the gateway gets fresh ones for every phase.
        baseline_bodies = sign(signers, 1000, cores)
        if args.clients > 1:
            clients = ProcessPoolExecutor(args.clients, mp_context=spawn)
            list(clients.map(abs, range(args.clients)))  # start the processes now, not inside a timed phase

        servers = [
            start_server("baseline", "gateway_ingest_httpx:baseline_app", env, scratch, REPO / "benchmarks"),
            start_server("gateway", "webhook_gateway.app:create_app", env, scratch, REPO),
        ]
        baseline, gateway = servers
        load_before = os.getloadavg()
        print(
            f"{cores} cores shared by the load generator ({args.clients} client process(es), httpx), "
            f"the baseline and the gateway; load average {load_before[0]:.2f} before the run",
            flush=True,
        )

        # Warm both servers up (imports, first connections, caches); the gateway's warm-up rows are counted.
        warm = sign(signers, 200, cores)
        run_phase(baseline, baseline_bodies, True, 4, 1.0, None, 1)
        accepted = run_phase(gateway, warm, False, 4, 1.0, None, 1).accepted

        phases: list[Phase] = []
        best_gateway = 0.0
        for concurrency in levels:
            base = run_phase(
                baseline, baseline_bodies, True, concurrency, args.duration, clients, args.clients
            )
            phases.append(base)
            _progress(base)
            # Fresh events for the gateway, signed now (untimed): it cannot outrun the bare endpoint by much.
            ceiling = min(base.rps * 1.3, max(3 * best_gateway, 1500.0)) if best_gateway else base.rps * 1.3
            bodies = sign(signers, int(ceiling * args.duration) + 500, cores)
            gate = run_phase(gateway, bodies, False, concurrency, args.duration, clients, args.clients)
            phases.append(gate)
            accepted += gate.accepted
            best_gateway = max(best_gateway, gate.rps)
            _progress(gate)
        load_after = os.getloadavg()
    finally:
        for server in reversed(servers):
            server.stop()  # the gateway has stopped (its writer thread joined) before the rows are counted
        for pool in (signers, clients):
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    with contextlib.closing(sqlite3.connect(database)) as connection:
        table = WebhookEvent.__tablename__
        stored = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    report(phases, levels, stored, accepted, args, load_before, load_after)
    return 0 if stored == accepted else 1


def _progress(phase: Phase) -> None:
    print(
        f"  {phase.target:<8} c={phase.concurrency:<3} {phase.rps:7.0f} req/s  p50 {phase.pct(50):6.1f} ms"
        f"  p99 {phase.pct(99):6.1f} ms  errors {phase.errors}",
        flush=True,
    )


def report(
    phases: list[Phase],
    levels: list[int],
    stored: int,
    accepted: int,
    args: argparse.Namespace,
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
) -> None:
    print(
        f"\n{'target':<9}{'c':>4}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'srv cpu':>9}{'cli cpu':>9}"
    )
    for p in phases:
        flag = "  (ran out of pre-signed events)" if p.exhausted else ""
        print(
            f"{p.target:<9}{p.concurrency:>4}{p.requests:>10}{p.rps:>9.0f}{p.pct(50):>9.1f}{p.pct(99):>9.1f}"
            f"{p.errors:>8}{p.server_cpu:>9.2f}{p.client_cpu:>9.2f}{flag}"
        )
    print("(srv/cli cpu: cores used by the server process / by the load generator during the phase)")

    print("\ngateway / baseline req/s:")
    for concurrency in levels:
        base, gate = (
            next(p for p in phases if p.target == t and p.concurrency == concurrency)
            for t in ("baseline", "gateway")
        )
        print(f"  c={concurrency:<3} {gate.rps / base.rps:.2f}" if base.rps else f"  c={concurrency:<3} n/a")

    verdict = "OK" if stored == accepted else "MISMATCH"
    print(f"\ninbox rows {stored} vs 'accepted' answers {accepted} (incl. warm-up): {verdict}")

    at = next((p for p in phases if p.target == "gateway" and p.concurrency == TARGET_CONCURRENCY), None)
    target = (
        f"target: ≥ {TARGET_RPS:.0f} verified, durably stored webhooks/s at c={TARGET_CONCURRENCY} "
        f"with p99 ≤ {TARGET_P99_MS:.0f} ms on SQLite"
    )
    if at is None:
        print(f"{target}: not measured (c={TARGET_CONCURRENCY} not in --concurrency)")
    else:
        met = at.rps >= TARGET_RPS and at.pct(99) <= TARGET_P99_MS and at.errors == 0 and stored == accepted
        print(f"{target}: {at.rps:.0f}/s, p99 {at.pct(99):.1f} ms -> {'MET' if met else 'NOT MET'}")
    print(
        f"load generator: {args.clients} process(es) on the same {os.cpu_count()} cores as both servers; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (other jobs add noise)"
    )


if __name__ == "__main__":
    sys.exit(main())
