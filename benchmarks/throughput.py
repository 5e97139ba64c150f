"""A burst of bookings drained by the embedded stack (`avatar-crm up`): how long until every patient has their
confirmation, and each booking's webhook → SMS latency while it drains.

Two stacks in one run, each fresh (scratch data directory, fake MobileMessage that timestamps requests):
the baseline with backlog batching off (`DISPATCH_BACKLOG_THRESHOLD=0`: one flow run per booking, as before
batching), given a smaller burst since it drains at about a booking a second; then the default (a run per
booking while they trickle in, runs of `DISPATCH_BACKLOG_BATCH` once a backlog builds) with the full burst.
The bookings are posted as fast as 16 senders can (every webhook acknowledged before timing the drain). After
the burst, lone bookings one every 2 s show the latency of a booking when nothing is queued.

    .venv/bin/python benchmarks/throughput.py [--bookings 3000] [--baseline-bookings 150] [--lone 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from e2e_latency import PASSWORD, USER, start_stack, stop_stack  # noqa: E402
from stats import percentile  # noqa: E402

from providers.wix_simulator import WixKeys, booking_payload, sign_wix_jwt, wix_event  # noqa: E402
from tests.fakes.mobilemessage import FakeMobileMessage  # noqa: E402

PLAIN = {"Content-Type": "text/plain"}
TARGET_SECONDS_FOR_3000 = 180.0  # issue 18: 3,000 bookings confirmed in ≤ 3 minutes (≥ 17 bookings/s)


@dataclass
class Booked:
    booking_id: str
    posted: float
    status: int | None = None
    sms_at: float | None = None


def _body(keys: WixKeys, booking_id: str, n: int) -> bytes:
    event_type = "wix.bookings.v2.booking_created"
    start = datetime.now(UTC) + timedelta(days=3, minutes=15 * n)
    payload = booking_payload(booking_id=booking_id, revision=1, start=start, phone=f"+6141{n:07d}")
    return sign_wix_jwt(keys, wix_event(event_type, payload, event_id=str(uuid.uuid4())), event_type)


def burst(gateway: str, keys: WixKeys, count: int, first: int = 0) -> list[Booked]:
    bodies = [(str(uuid.uuid4()), n) for n in range(first, first + count)]
    signed = [(booking_id, _body(keys, booking_id, n)) for booking_id, n in bodies]

    def post(item: tuple[str, bytes]) -> Booked:
        booking_id, body = item
        booked = Booked(booking_id, time.time())
        with httpx.Client(timeout=30) as client:
            for _ in range(5):  # as Wix retries an unanswered webhook
                try:
                    response = client.post(
                        f"{gateway}/webhooks/wix/bookings",
                        content=body,
                        headers={"Content-Type": "text/plain"},
                    )
                    booked.status = response.status_code
                    if response.status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
        return booked

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(post, signed))


def lone(gateway: str, keys: WixKeys, count: int, first: int) -> list[Booked]:
    made = []
    for n in range(first, first + count):
        made += burst(gateway, keys, 1, n)
        time.sleep(2.0)
    return made


def wait_for_sms(booked: list[Booked], sms: FakeMobileMessage, timeout: float) -> None:
    by_key = {f"booking:{b.booking_id}:confirmation:rev1": b for b in booked}
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        requests = sms.requests
        for request in requests[seen:]:
            b = by_key.get(request["headers"].get("idempotency-key", ""))
            if b is not None and b.sms_at is None and request.get("status") == 200:
                b.sms_at = request["received_at"]
        seen = len(requests)
        if all(b.sms_at is not None for b in booked):
            return
        time.sleep(0.5)


def measure(label: str, count: int, lone_count: int, env: dict[str, str]) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="crm-throughput-"))
    keys = WixKeys()
    sms = FakeMobileMessage(USER, PASSWORD).start()
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    stack = None
    try:
        stack, gateway, _ = start_stack(scratch, sms, keys)
        started = time.time()
        booked = burst(gateway, keys, count)
        acked = time.time()
        wait_for_sms(booked, sms, timeout=max(600.0, count * 2.0))
        done = [b for b in booked if b.sms_at is not None]
        last = max((b.sms_at for b in done), default=started)  # type: ignore[type-var]
        latencies = [b.sms_at - b.posted for b in done]  # type: ignore[operator]
        lone_booked = lone(gateway, keys, lone_count, count) if lone_count else []
        wait_for_sms(lone_booked, sms, timeout=60)
        lone_latencies = [b.sms_at - b.posted for b in lone_booked if b.sms_at is not None]  # type: ignore[operator]
        duplicates = len(sms.sent) - len({m["idempotency_key"] for m in sms.sent})
    finally:
        if stack is not None:
            stop_stack(stack)
        sms.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)
    drained = last - started
    figures = {
        "count": count,
        "acked": sum(b.status == 200 for b in booked),
        "confirmed": len(done),
        "ack_seconds": acked - started,
        "drain_seconds": drained,
        "rate": len(done) / drained if drained > 0 else 0.0,
        "p50": percentile(latencies, 50) if latencies else float("nan"),
        "p95": percentile(latencies, 95) if latencies else float("nan"),
        "p99": percentile(latencies, 99) if latencies else float("nan"),
        "lone_p50": percentile(lone_latencies, 50) if lone_latencies else float("nan"),
        "lone_max": max(lone_latencies) if lone_latencies else float("nan"),
        "duplicates": duplicates,
    }
    print(
        f"{label:<34} {count:>5} posted, {figures['acked']:>5} acked in {figures['ack_seconds']:5.1f} s, "
        f"{len(done):>5} confirmed in {drained:6.1f} s = {figures['rate']:5.1f} bookings/s; latency while "
        f"draining p50 {figures['p50']:6.1f} s p95 {figures['p95']:6.1f} s p99 {figures['p99']:6.1f} s; "
        f"lone bookings after: p50 {figures['lone_p50']:.2f} s (max {figures['lone_max']:.2f} s); "
        f"duplicate sends {duplicates}",
        flush=True,
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=3000)
    parser.add_argument("--baseline-bookings", type=int, default=150)
    parser.add_argument("--lone", type=int, default=10, help="lone bookings after the burst (latency)")
    args = parser.parse_args()

    base = measure(
        "baseline: a run per booking", args.baseline_bookings, 0, {"DISPATCH_BACKLOG_THRESHOLD": "0"}
    )
    batched = measure("backlog batching (default)", args.bookings, args.lone, {})
    ratio = batched["rate"] / base["rate"] if base["rate"] else float("nan")
    print(f"\nthroughput ratio batched / baseline: {ratio:.1f}x")
    if args.bookings >= 3000:
        seconds = batched["drain_seconds"] * 3000 / max(1, batched["confirmed"])
        met = batched["confirmed"] == args.bookings and seconds <= TARGET_SECONDS_FOR_3000
        verdict = "MET" if met else "NOT MET"
        print(f"target: 3,000 bookings confirmed in ≤ {TARGET_SECONDS_FOR_3000:.0f} s: {verdict}")
