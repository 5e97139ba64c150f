"""Webhook-to-SMS latency through the whole `make up` stack, and where that time goes.

Starts `avatar-crm up` (Prefect server on SQLite, the deployment-serving runner, the gateway) in a scratch
data directory with a fake MobileMessage that timestamps every request, then posts signed Wix
`booking_created` webhooks at one per second and measures, for each booking, the time from posting the
webhook to the provider receiving the confirmation SMS.

The end-to-end figure alone says little on a shared 2-core machine, so each booking's latency is split
into the stages the system controls, measured in the same run: the gateway's acknowledgement, the
dispatcher creating the Prefect flow run, the runner picking it up (Prefect's own polling floor), and the
flow doing the CRM work and the send.

    .venv/bin/python benchmarks/e2e_latency.py [--bookings 100] [--rate 1.0]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stats import percentile  # noqa: E402

from models.data_dir import read_prefect_login  # noqa: E402
from providers.wix_simulator import WixKeys, booking_payload, sign_wix_jwt, wix_event  # noqa: E402
from tests.fakes.mobilemessage import FakeMobileMessage  # noqa: E402
from tests.servers import free_port  # noqa: E402

USER, PASSWORD = "bench", "bench-password"
TARGET_P50, TARGET_P99 = 3.0, 10.0


@dataclass
class Sample:
    booking_id: str
    posted: float
    acked: float
    event_id: int | None = None
    run_created: float | None = None
    run_started: float | None = None
    sms_at: float | None = None


def start_stack(
    data_dir: Path, sms: FakeMobileMessage, keys: WixKeys, arguments: tuple[str, ...] = ("up",)
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`avatar-crm up` (or `arguments`, e.g. `up --scaled ...`) with the fake provider, once it is ready."""
    prefect_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "CRM_DATA_DIR": str(data_dir),
        "PREFECT_PORT": str(prefect_port),
        "GATEWAY_PORT": str(gateway_port),
        "SMS_PROVIDER": "mobilemessage",
        "MOBILEMESSAGE_API_URL": sms.url,
        "MOBILEMESSAGE_API_USERNAME": USER,
        "MOBILEMESSAGE_API_PASSWORD": PASSWORD,
        "MOBILEMESSAGE_FROM_NUMBER": "61400000010",
        "WIX_PUBLIC_KEY": keys.public_pem,
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = (data_dir / "stack.log").open("wb")
    stack = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", *arguments],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gateway = f"http://127.0.0.1:{gateway_port}"
    api = f"http://127.0.0.1:{prefect_port}/api"
    deadline = time.monotonic() + 300
    while True:
        if stack.poll() is not None:
            raise RuntimeError(f"stack exited: see {data_dir / 'stack.log'}")
        try:
            ready = httpx.get(f"{gateway}/readyz", timeout=2).status_code == 200
            deployed = httpx.get(
                f"{api}/deployments/name/booking-intake/booking-intake",
                timeout=2,
                auth=prefect_auth(data_dir),
            )
            if ready and deployed.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_stack(stack)  # not left running behind the benchmark (it would skew every later figure)
            raise RuntimeError("stack did not become ready within 300 s")
        time.sleep(0.5)
    time.sleep(3)  # let the runner finish its first poll of the freshly registered deployments
    return stack, gateway, api


def prefect_auth(data_dir: Path) -> tuple[str, str] | None:
    """The login `up` wrote for its Prefect server (every API call but /health needs it)."""
    login = read_prefect_login(data_dir)
    if login is None:
        return None
    user, _, password = login.partition(":")
    return user, password


def stop_stack(stack: subprocess.Popen[bytes]) -> None:
    if stack.poll() is None:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)


def post_bookings(gateway: str, keys: WixKeys, count: int, rate: float) -> list[Sample]:
    samples: list[Sample] = []
    start = datetime.now(UTC) + timedelta(days=3)
    with httpx.Client(timeout=10) as client:
        t0 = time.monotonic()
        for i in range(count):
            booking_id = str(uuid.uuid4())
            event_type = "wix.bookings.v2.booking_created"
            payload = booking_payload(
                booking_id=booking_id, revision=1, start=start + timedelta(minutes=15 * i)
            )
            body = sign_wix_jwt(keys, wix_event(event_type, payload, event_id=str(uuid.uuid4())), event_type)
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            posted = time.time()
            response = client.post(
                f"{gateway}/webhooks/wix/bookings", content=body, headers={"Content-Type": "text/plain"}
            )
            response.raise_for_status()
            sample = Sample(booking_id, posted, time.time(), event_id=response.json().get("event_id"))
            samples.append(sample)
    return samples


def collect(
    samples: list[Sample], sms: FakeMobileMessage, api: str, wait: float, auth: tuple[str, str] | None = None
) -> None:
    by_key = {f"booking:{s.booking_id}:confirmation:rev1": s for s in samples}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for request in list(sms.requests):
            sample = by_key.get(request["headers"].get("idempotency-key", ""))
            if sample and sample.sms_at is None and request.get("status") == 200:
                sample.sms_at = request["received_at"]
        if all(s.sms_at is not None for s in samples):
            break
        time.sleep(0.5)

    # Flow-run timestamps from Prefect, keyed by the inbox event id the gateway returned.
    runs: dict[int, dict[str, object]] = {}
    with httpx.Client(timeout=30, auth=auth) as client:
        offset = 0
        while True:
            page = client.post(f"{api}/flow_runs/filter", json={"limit": 200, "offset": offset}).json()
            for run in page:
                event_id = (run.get("parameters") or {}).get("event_id")
                if event_id is not None:
                    runs[int(event_id)] = run
            if len(page) < 200:
                break
            offset += 200
    for sample in samples:
        run = runs.get(sample.event_id or -1)
        if run:
            sample.run_created = _ts(run.get("created"))
            sample.run_started = _ts(run.get("start_time"))


def _ts(value: object) -> float | None:
    return datetime.fromisoformat(str(value)).timestamp() if value else None


def _ms(a: float | None, b: float | None) -> str:
    return f"{(b - a) * 1000:.0f}" if a is not None and b is not None else "-"


def report(samples: list[Sample], sms: FakeMobileMessage, verbose: bool = False) -> bool:
    def stage(name: str, values: list[float]) -> None:
        if values:
            print(
                f"  {name:<34} n={len(values):>3}  p50 {percentile(values, 50) * 1000:8.0f} ms"
                f"  p99 {percentile(values, 99) * 1000:8.0f} ms  max {max(values) * 1000:8.0f} ms"
            )

    if verbose:
        print("\n   #  ack ms  dispatch ms  pick-up ms  flow ms  total ms")
        for i, s in enumerate(samples):
            print(
                f"{i:>4} {_ms(s.posted, s.acked):>7} {_ms(s.posted, s.run_created):>12} "
                f"{_ms(s.run_created, s.run_started):>11} {_ms(s.run_started, s.sms_at):>8} "
                f"{_ms(s.posted, s.sms_at):>9}"
            )
    complete = [s for s in samples if s.sms_at is not None]
    print(f"\nbookings posted: {len(samples)}; confirmations received by the fake provider: {len(complete)}")
    print("stages (each booking, wall clock; one machine so clocks agree):")
    stage("gateway ack (post → 200)", [s.acked - s.posted for s in samples])
    stage("dispatch (post → flow run created)", [s.run_created - s.posted for s in samples if s.run_created])
    stage(
        "runner pick-up (created → started)",
        [s.run_started - s.run_created for s in samples if s.run_started and s.run_created],
    )
    stage("flow work (started → SMS received)", [s.sms_at - s.run_started for s in complete if s.run_started])
    latencies = [s.sms_at - s.posted for s in complete]  # type: ignore[operator]
    stage("END TO END (post → SMS received)", latencies)
    if not latencies:
        print("no SMS arrived: FAIL")
        return False
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    met = len(complete) == len(samples) and p50 <= TARGET_P50 and p99 <= TARGET_P99
    print(
        f"\ntarget: p50 ≤ {TARGET_P50:.0f} s, p99 ≤ {TARGET_P99:.0f} s, every booking confirmed — "
        f"p50 {p50:.2f} s, p99 {p99:.2f} s, mean {statistics.fmean(latencies):.2f} s: "
        f"{'MET' if met else 'NOT MET'}"
    )
    duplicates = len(sms.sent) - len({m["idempotency_key"] for m in sms.sent})
    print(f"duplicate sends seen by the provider: {duplicates}")
    return met


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.0, help="bookings per second")
    parser.add_argument("--verbose", action="store_true", help="print every booking's stages")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data directory")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="crm-e2e-"))
    keys = WixKeys()
    sms = FakeMobileMessage(USER, PASSWORD).start()
    stack = None
    try:
        print(f"starting the stack in {scratch} …", flush=True)
        started = time.monotonic()
        stack, gateway, api = start_stack(scratch, sms, keys)
        print(
            f"stack ready in {time.monotonic() - started:.1f} s; "
            f"posting {args.bookings} bookings at {args.rate}/s"
        )
        samples = post_bookings(gateway, keys, args.bookings, args.rate)
        collect(samples, sms, api, wait=60, auth=prefect_auth(scratch))
        ok = report(samples, sms, args.verbose)
    finally:
        if stack is not None:
            stop_stack(stack)
        sms.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(0 if ok else 1)
