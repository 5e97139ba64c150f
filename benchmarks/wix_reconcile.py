"""Reconciliation of 10,000 Wix bookings: read them from the fake Wix API, compare each with the CRM, feed
the differences into the inbox.

The fake Wix API (tests/fakes/wix_api.py, its own process) holds `--bookings` Booking V2 objects changed in
the last hour; the CRM (a fresh SQLite file) already holds most of them at the same revision, `--stale` at an
older one, and lacks `--missing`. Measured: `bookings.reconcile.reconcile` as the `wix-reconcile` flow runs
it (cursor paging 100 a request, parse, one CRM query and one inbox insert per page, the run recorded). The
baseline, in the same run against the same fake: the same client paging through the same window and doing
nothing with the bookings — Wix's (here the fake's) share of the time; it pages once before and once after
the reconciliation and the quicker of the two is printed.

    .venv/bin/python benchmarks/wix_reconcile.py [--bookings 10000] [--missing 500] [--stale 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

API_KEY, SITE_ID = "IST.bench-key", "0d5a6c2e-0000-4000-8000-00000000bench"
TARGET_SECONDS = 30.0
NOW = datetime.now(UTC).replace(microsecond=0)
NAMESPACE = uuid.UUID("5e1f2d3c-4b5a-4968-8776-655443322110")


def wix_bookings(count: int) -> list[dict[str, Any]]:
    """The site's bookings, each at revision 2, changed in the last hour (the same in both processes)."""
    from providers.wix_simulator import booking_payload

    return [
        booking_payload(
            booking_id=str(uuid.uuid5(NAMESPACE, str(i))),
            revision=2,
            start=NOW + timedelta(days=1, minutes=15 * i),
            created=NOW - timedelta(minutes=50) + timedelta(seconds=i * 0.1),
            phone=f"+614{i:08d}",
        )
        for i in range(count)
    ]


def serve_fake(count: int) -> None:
    from tests.fakes.wix_api import FakeWixApi

    fake = FakeWixApi(API_KEY, SITE_ID).start()
    fake.put(*wix_bookings(count))
    print(fake.url, flush=True)
    sys.stdin.read()


def seed_crm(bookings: list[dict[str, Any]], missing: int, stale: int) -> None:
    """The CRM holds every booking but the first `missing`; the next `stale` at revision 1."""
    from sqlalchemy import insert

    from models import Booking, session_scope
    from providers import wix

    now = datetime.now(UTC)
    rows = []
    for i, raw in enumerate(bookings[missing:], start=missing):
        parsed = wix._v2_booking(raw, fallback_id=None)
        rows.append(
            {
                "wix_booking_id": parsed.booking_id,
                "status": parsed.status.value,
                "revision": 1 if i < missing + stale else 2,
                "start_at": parsed.start_at,
                "created_at": now,
                "updated_at": now,
            }
        )
    if rows:
        with session_scope() as session:
            session.execute(insert(Booking), rows)


async def page_only(url: str) -> tuple[float, int, int]:
    from providers.wix_api import WixBookingsClient

    started = time.perf_counter()
    async with WixBookingsClient(url, API_KEY, SITE_ID) as client:
        seen = 0
        async for page in client.bookings_updated(NOW - timedelta(hours=1), NOW + timedelta(minutes=1)):
            seen += len(page)
        return time.perf_counter() - started, seen, client.requests


async def reconcile_all(url: str) -> tuple[float, Any]:
    from bookings.reconcile import reconcile
    from providers.wix_api import WixBookingsClient

    started = time.perf_counter()
    async with WixBookingsClient(url, API_KEY, SITE_ID) as client:
        run, _ = await reconcile(client, NOW - timedelta(hours=1), NOW + timedelta(minutes=1))
    return time.perf_counter() - started, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--missing", type=int, default=500)
    parser.add_argument("--stale", type=int, default=500)
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-wix-reconcile-"))
    os.environ.update(
        {
            "CRM_DATA_DIR": str(workdir),
            "CRM_DATABASE_URL": f"sqlite:///{workdir / 'crm.db'}",
            "CRM_ENCRYPTION_KEY": "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=",
        }
    )
    fake = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake", str(args.bookings)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        from models.migrate import upgrade

        upgrade()
        seed_crm(wix_bookings(args.bookings), args.missing, args.stale)
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()

        before, seen, requests = asyncio.run(page_only(url))
        elapsed, run = asyncio.run(reconcile_all(url))
        after, _, _ = asyncio.run(page_only(url))
        baseline = min(before, after)  # paged before and after: the machine's noise, not ours
        expected_fed = args.missing + args.stale
        ok = run.wix_total == seen == args.bookings and run.fed == expected_fed and elapsed <= TARGET_SECONDS
        print(f"bookings at the fake Wix API: {seen} ({requests} requests of up to 100)")
        print(f"baseline, paging only:        {baseline:6.2f} s")
        print(
            f"reconciliation:               {elapsed:6.2f} s  ({elapsed / baseline:.2f}× the baseline; "
            f"matching {run.matching}, missing {run.missing}, stale {run.stale}, fed {run.fed}, "
            f"sync rate {run.sync_rate:.2%})"
        )
        print(f"target ≤ {TARGET_SECONDS:.0f} s: {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        if fake.stdin:
            fake.stdin.close()
        fake.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
