"""One reminder sweep over a large schedule: 100,000 scheduled reminders, 1,000 of them due.

Measures the sweep as the `reminder-sweep` flow runs it (`send_due`: claim the due rows in one transaction
with every re-check — booking still active and at the same time, suppression, deadline, quiet hours — send
each to a fake MobileMessage with its own `Idempotency-Key`, at most 5 requests in flight, and record every
result), on a fresh SQLite file. The baseline, measured in the same run against the same fake, is a plain
loop posting the same 1,000 requests with the same client and concurrency: the provider's share of the time.
The fake runs in its own process so it does not share the sweep's interpreter.

    .venv/bin/python benchmarks/reminder_sweep.py [--scheduled 100000] [--due 1000]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

USER, PASSWORD = "bench", "bench-password"
TARGET_SECONDS = 10.0
NOW = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 10:00 in Brisbane: outside quiet hours
FAKE = """
import sys
from tests.fakes.mobilemessage import FakeMobileMessage
print(FakeMobileMessage(sys.argv[1], sys.argv[2]).start().url, flush=True)
sys.stdin.read()
"""


def start_fake() -> tuple[subprocess.Popen[str], str]:
    """The fake MobileMessage in a process of its own (it stops when its stdin closes); returns its URL."""
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE, USER, PASSWORD],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    return fake, fake.stdout.readline().strip()


BODY = (
    "Hi Pat, a reminder of your MRI with Avatar Imaging. Reply Y to confirm, R to reschedule or N to cancel."
)
OFFSETS = (("24h", timedelta(hours=24)), ("2h", timedelta(hours=2)))


def _booking_rows(i: int, due: bool) -> tuple[dict[str, object], dict[str, object], list[dict[str, object]]]:
    """One patient, their booking and its two reminders; a due booking is 2 h away with both reminders due."""
    from models.crypto import get_cipher

    phone = f"+6141{i:07d}"
    start = NOW + timedelta(hours=2) if due else NOW + timedelta(days=3, minutes=i % 600)
    common = {"created_at": NOW, "updated_at": NOW}
    contact = {"id": i + 1, "first_name": "Pat", "phone": phone, **common}
    contact["phone_hash"] = get_cipher().blind_index("phone", phone)
    booking = {
        "id": i + 1,
        "wix_booking_id": f"bench-{i}",
        "contact_id": i + 1,
        "status": "CONFIRMED",
        "revision": 1,
        "start_at": start,
        "timezone": "Australia/Brisbane",
        **common,
    }
    reminders = [
        {
            "idempotency_key": f"booking:bench-{i}:reminder-{label}",
            "channel": "sms",
            "purpose": "transactional",
            "kind": "reminder",
            "contact_id": i + 1,
            "booking_id": i + 1,
            "recipient": phone,
            "body": BODY,
            "status": "pending",
            "attempts": 0,
            "send_after": NOW - timedelta(minutes=1) if due else start - offset,
            "deadline": start - timedelta(minutes=30) if due else start - offset / 2,
            "booking_revision": 1,
            "appointment_at": start,
            **common,
        }
        for label, offset in OFFSETS
    ]
    return contact, booking, reminders


def seed(scheduled: int, due: int) -> None:
    """`scheduled` reminders for `scheduled // 2` bookings, of which `due` are due at NOW."""
    from sqlalchemy import insert

    from models import Booking, Contact, OutboundMessage, get_engine

    contacts, bookings, messages = [], [], []
    for i in range(scheduled // 2):
        contact, booking, reminders = _booking_rows(i, due=2 * i < due)
        contacts.append(contact)
        bookings.append(booking)
        messages.extend(reminders)
    with get_engine().begin() as connection:
        for table, rows in ((Contact, contacts), (Booking, bookings), (OutboundMessage, messages)):
            for chunk in range(0, len(rows), 5000):
                connection.execute(insert(table.__table__), rows[chunk : chunk + 5000])  # type: ignore[attr-defined]


async def baseline(url: str, count: int) -> float:
    """The same number of sends with the project's client and concurrency, and nothing else."""
    from providers.mobilemessage import MobileMessageClient, SmsMessage

    client = MobileMessageClient(url, USER, PASSWORD, max_in_flight=5)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            message = SmsMessage(f"+6142{i:07d}", "Hi Pat, a reminder of your MRI.", "61400000010", f"b{i}")
            await client.send([message], idempotency_key=f"baseline-{i}-{time.time()}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(5)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduled", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    fake, url = start_fake()
    os.environ.update(
        {
            "CRM_DATA_DIR": str(data_dir),
            "CRM_DATABASE_URL": f"sqlite:///{data_dir / 'crm.db'}",
            "CRM_ENCRYPTION_KEY": "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=",
            "SMS_PROVIDER": "mobilemessage",
            "MOBILEMESSAGE_API_URL": url,
            "MOBILEMESSAGE_API_USERNAME": USER,
            "MOBILEMESSAGE_API_PASSWORD": PASSWORD,
            "MOBILEMESSAGE_FROM_NUMBER": "61400000010",
        }
    )
    try:
        from sqlalchemy import func, select

        from flows.tasks.send import send_due
        from models import MessageStatus, OutboundMessage, session_scope
        from models.migrate import upgrade

        upgrade()
        started = time.perf_counter()
        seed(args.scheduled, args.due)
        seeded = time.perf_counter() - started
        print(f"seeded {args.scheduled:,} scheduled reminders ({args.due:,} due) in {seeded:.1f} s")

        base = asyncio.run(baseline(url, args.due))
        started = time.perf_counter()
        results = asyncio.run(send_due.fn(NOW, args.due + 100))
        sweep = time.perf_counter() - started
        again = asyncio.run(send_due.fn(NOW, args.due + 100))

        with session_scope() as session:
            sent = session.execute(
                select(func.count()).where(OutboundMessage.status == MessageStatus.SENT)  # type: ignore[arg-type]
            ).scalar_one()
        ok = sent == args.due and len(results) == args.due and not again
        print(f"baseline: {args.due:,} plain sends            {base:6.2f} s  ({args.due / base:,.0f}/s)")
        print(f"sweep:    select+check+send+record {args.due:,}  {sweep:6.2f} s  ({args.due / sweep:,.0f}/s)")
        print(
            f"ratio (baseline / sweep): {base / sweep:.2f}; rows sent: {sent:,}; a second sweep: {len(again)}"
        )
        print(f"target ≤ {TARGET_SECONDS:.0f} s: {'MET' if ok and sweep <= TARGET_SECONDS else 'NOT MET'}")
        return 0 if ok else 1
    finally:
        if fake.stdin:
            fake.stdin.close()
        fake.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
