"""The daily report for a day with 10,000 bookings and 50,000 messages: target ≤ 5 s, SQLite and PostgreSQL.

A fresh database (a SQLite file; with `--postgres URL` also a new PostgreSQL database on that server, dropped
afterwards) is migrated and seeded through the tables' own column types (bodies and recipients encrypted as
in production) with one clinic-local day: `--bookings` Wix booking webhooks (processed, with receipt,
commit and processing times), `--messages` messages (60 % SMS with a delivery receipt webhook each, mostly
delivered; 40 % email, half Gmail, half a SendGrid campaign with opens and clicks, a few bounced), hourly
reconciliation runs and some opt-outs. Measured, each the best of `--repeat` runs:

- the KPIs of that one day (`reporting.kpis.kpis`);
- the whole report (`reporting.report.build`: 30 days of tallies, backlog, percentiles, charts, markdown);
- the weekly booking insights (`reporting.insights.weekly`) over `--bookings` appointments spread over the
  fortnight ending with the day (booking rows with encrypted service names and their blind index);
- baseline, in the same run on the same data: a plain `SELECT count(*) FROM outboundmessage` and a full
  scan counting the messages sent that day (no index on `sent_at`), what any report must at least read.

    .venv/bin/python benchmarks/daily_report.py [--bookings 10000] [--messages 50000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_SECONDS = 5.0
DAY = date(2026, 11, 17)
CHUNK = 5_000


def _insert(engine: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        for start in range(0, len(rows), CHUNK):
            connection.execute(table.insert(), rows[start : start + CHUNK])


def seed(url: str, bookings: int, messages: int) -> None:
    from models import (
        Campaign,
        ConsentEvent,
        OutboundMessage,
        WebhookEvent,
        WixReconciliation,
    )
    from models.db import get_engine
    from reporting.kpis import clinic_day, clinic_timezone

    rng = random.Random(17)
    engine = get_engine(url)
    window = clinic_day(DAY, clinic_timezone())
    seconds = (window.end - window.start).total_seconds()

    def moment() -> datetime:
        return window.start + timedelta(seconds=rng.uniform(0, seconds - 60))

    def webhook(source: str, event_type: str) -> dict[str, Any]:
        arrived = moment()
        received = arrived + timedelta(milliseconds=rng.uniform(2, 40))
        return {
            "source": source,
            "dedupe_key": str(uuid.uuid4()),
            "event_type": event_type,
            "body": b'{"bench": true}',
            "status": "processed",
            "arrived_at": arrived,
            "received_at": received,
            "processed_at": received + timedelta(milliseconds=rng.uniform(300, 2500)),
            "next_dispatch_at": received,
            "dispatch_attempts": 0,
            "redispatches": 0,
        }

    sms_count = messages * 6 // 10
    inbox = [webhook("wix", "wix.bookings.v2.booking_created") for _ in range(bookings)]
    inbox += [webhook("mobilemessage-status", "status") for _ in range(sms_count)]
    for row in inbox[-50:]:  # a few still waiting at the end of the day
        row.update(status="received", processed_at=None)
    _insert(engine, WebhookEvent.__table__, inbox)  # type: ignore[attr-defined]

    with engine.begin() as connection:
        campaign_id = connection.execute(
            Campaign.__table__.insert().returning(Campaign.__table__.c.id),  # type: ignore[attr-defined]
            {"slug": "bench", "name": "Bench", "channel": "email", "status": "sent", "spec": {}},
        ).scalar_one()
    outbox = []
    for n in range(messages):
        sent = moment()
        row: dict[str, Any] = {
            "idempotency_key": f"bench:{n}",
            "purpose": "transactional",
            "kind": "reminder",
            "recipient": "+61400000000",
            "body": "benchmark message",
            "attempts": 1,
            "send_after": sent,
            "sent_at": sent,
            "created_at": sent,
            "updated_at": sent,
            "campaign_id": None,
            "opened_at": None,
            "clicked_at": None,
        }
        roll = rng.random()
        if n < sms_count:
            status = "delivered" if roll < 0.985 else "failed" if roll < 0.995 else "sent"
            row.update(channel="sms", provider="mobilemessage", status=status)
        elif n < sms_count + (messages - sms_count) // 2:
            row.update(channel="email", provider="gmail", status="sent", kind="confirmation")
        else:
            status = "delivered" if roll < 0.97 else "bounced"
            opened = sent + timedelta(minutes=5) if rng.random() < 0.3 else None
            clicked = opened + timedelta(minutes=1) if opened and rng.random() < 0.2 else None
            row.update(
                channel="email",
                provider="sendgrid",
                status=status,
                kind="campaign",
                purpose="marketing",
                campaign_id=campaign_id,
                opened_at=opened,
                clicked_at=clicked,
            )
        outbox.append(row)
    _insert(engine, OutboundMessage.__table__, outbox)  # type: ignore[attr-defined]

    runs = [
        {
            "started_at": window.start + timedelta(hours=h),
            "finished_at": window.start + timedelta(hours=h, minutes=1),
            "window_start": window.start + timedelta(hours=h - 1),
            "window_end": window.start + timedelta(hours=h),
            "status": "completed",
            "wix_total": bookings // 24,
            "matching": bookings // 24 - (1 if h % 6 == 0 else 0),
            **dict.fromkeys(("missing", "stale", "mismatched", "unreadable", "fed", "wix_requests"), 0),
        }
        for h in range(24)
    ]
    _insert(engine, WixReconciliation.__table__, runs)  # type: ignore[attr-defined]
    ledger = [
        {
            "address_hash": f"bench-{n}",
            "channel": channel,
            "purpose": "marketing",
            "action": "withdrawn" if n % 5 else "granted",
            "source": "bench",
            "actor": "bench",
            "origin": "patient_sms",
            "at": moment(),
        }
        for n in range(300)
        for channel in ("sms", "email")
    ]
    _insert(engine, ConsentEvent.__table__, ledger)  # type: ignore[attr-defined]
    _seed_bookings(engine, rng, bookings, window.end)


SERVICES = ("MRI – Knee", "MRI – Brain", "CT – Chest", "X-ray", "Ultrasound")


def _seed_bookings(engine: Any, rng: random.Random, count: int, end: datetime) -> None:
    """The booking rows the insights read: `count` appointments over the fortnight ending with the day (a
    fifth cancelled, one in ten confirmed by the patient), service names encrypted with their blind index."""
    from models import Booking
    from models.crm import name_index

    keys = {name: name_index("service", name) for name in SERVICES}
    rows = []
    for n in range(count):
        start = end - timedelta(days=14) + timedelta(minutes=rng.randrange(0, 14 * 24 * 60, 15))
        service = rng.choice(SERVICES)
        rows.append(
            {
                "wix_booking_id": f"bench-{n}",
                "status": "CANCELED" if rng.random() < 0.2 else "CONFIRMED",
                "revision": 1,
                "service_name": service,
                "service_key": keys[service],
                "start_at": start,
                "created_at": start - timedelta(hours=rng.uniform(1, 500)),
                "updated_at": start,
                "patient_confirmed_at": start - timedelta(hours=3) if rng.random() < 0.1 else None,
            }
        )
    _insert(engine, Booking.__table__, rows)  # type: ignore[attr-defined]


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def measure(label: str, url: str, bookings: int, messages: int, repeat: int) -> bool:
    from sqlalchemy import func, select, text

    from models import OutboundMessage, get_settings
    from models.migrate import upgrade
    from reporting.insights import weekly
    from reporting.kpis import clinic_day, clinic_timezone, kpis, reader
    from reporting.report import build

    os.environ["CRM_DATABASE_URL"] = url
    get_settings.cache_clear()
    upgrade(url)
    started = time.perf_counter()
    seed(url, bookings, messages)
    seeded = time.perf_counter() - started
    engine = reader(url)
    window = clinic_day(DAY, clinic_timezone())
    table = OutboundMessage.__table__  # type: ignore[attr-defined]

    def count_all() -> int:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM outboundmessage")).scalar_one()

    def scan_day() -> int:
        with engine.connect() as connection:
            query = select(func.count()).where(table.c.sent_at >= window.start, table.c.sent_at < window.end)
            return connection.execute(query).scalar_one()

    count_s, total = best(count_all, repeat)
    scan_s, sent = best(scan_day, repeat)
    day_s, day = best(lambda: kpis(window, engine), repeat)
    report_s, report = best(lambda: build(DAY, get_settings(), engine), repeat)
    insights_s, section = best(lambda: weekly(DAY, get_settings(), engine), repeat)
    appointments = section.facts["appointments"]  # type: ignore[attr-defined]
    t = day.tally  # type: ignore[attr-defined]
    ok = (
        report_s <= TARGET_SECONDS
        and insights_s <= TARGET_SECONDS
        and appointments["this week"] + appointments["previous week"] == bookings
        and t.bookings_received == bookings
        and t.sms_sent + t.email_sent == messages
    )
    print(f"[{label}] seeded {bookings:,} bookings, {messages:,} messages in {seeded:.1f} s")
    print(f"[{label}] baseline, count of every message ({total:,}):        {count_s * 1000:8.1f} ms")
    print(f"[{label}] baseline scan, messages sent that day ({sent:,}):     {scan_s * 1000:8.1f} ms")
    print(f"[{label}] KPIs of the day:                                   {day_s * 1000:8.1f} ms")
    print(
        f"[{label}] daily report (30 days, charts, markdown):          {report_s * 1000:8.1f} ms  "
        f"({report_s / scan_s:.1f}× the day's scan; {report.summary})"  # type: ignore[attr-defined]
    )
    print(
        f"[{label}]   bookings {t.bookings_received:,}, SMS sent {t.sms_sent:,} "
        f"delivered {t.sms_delivered:,}, email sent {t.email_sent:,}, "
        f"webhooks measured {len(t.committed_ms):,}"
    )
    print(
        f"[{label}] booking insights (fortnight, {bookings:,} appointments):  {insights_s * 1000:8.1f} ms  "
        f"({len(section.charts)} charts)"  # type: ignore[attr-defined]
    )
    print(f"[{label}] target ≤ {TARGET_SECONDS:.0f} s: {'met' if ok else 'NOT met'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres", help="a PostgreSQL server URL; a fresh database is made there and dropped"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-daily-report-"))
    os.environ.update(
        {
            "CRM_DATA_DIR": str(workdir),
            "CRM_ENCRYPTION_KEY": "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=",
            "CLINIC_TIMEZONE": "Australia/Brisbane",
        }
    )
    try:
        ok = measure("sqlite", f"sqlite:///{workdir / 'crm.db'}", args.bookings, args.messages, args.repeat)
        if args.postgres:
            ok = measure_postgres(args.postgres, args) and ok
        return 0 if ok else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure_postgres(server: str, args: argparse.Namespace) -> bool:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from models.db import get_engine, normalize_url
    from tests.servers import drop_databases

    server_url = make_url(normalize_url(server))
    name = f"bench_report_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = server_url.set(database=name).render_as_string(hide_password=False)
    try:
        return measure("postgresql", url, args.bookings, args.messages, args.repeat)
    finally:
        get_engine(url).dispose()
        drop_databases(server_url, [name])


if __name__ == "__main__":
    raise SystemExit(main())
