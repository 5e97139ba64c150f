"""`avatar-crm keys rotate` on 100,000 contacts: time to re-seal every value with a new key.

A fresh SQLite file (or, with --database-url, a fresh PostgreSQL database) is migrated and filled with
100,000 contacts (first and last name, email, phone: four encrypted values each, plus their blind indexes)
and as many bookings (service and location: two more) under key A. Then the ring becomes [B, A] and
`avatar-crm keys rotate` runs as the operator would run it (a subprocess). Afterwards A leaves the ring (its
value moved to CRM_BLIND_INDEX_KEY) and every value is read back and compared, and a sample of contacts is
found again by phone hash. The baseline, in the same run on the same database: one plain pass reading and
decrypting every encrypted value (what any full read of the data costs; rotation reads, re-seals and writes
the same values).

    .venv/bin/python benchmarks/key_rotation.py [--contacts 100000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEY_A = "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk="
KEY_B = "Zm9yIGJlbmNobWFya3Mgb25seTogYSBzZWNvbmQga2V5ISE="
SERVICES = ["MRI – Knee", "X-ray – Chest", "Ultrasound", "CT – Head"]


def _use(env: dict[str, str]) -> None:
    for name in ("CRM_ENCRYPTION_KEY", "CRM_ENCRYPTION_KEYS", "CRM_BLIND_INDEX_KEY"):
        os.environ.pop(name, None)
    os.environ.update(env)
    from models.settings import get_settings

    get_settings.cache_clear()


def _fill(url: str, n: int) -> None:
    from sqlalchemy import insert

    from models import Booking, Contact, session_scope
    from models.crm import name_index
    from models.crypto import get_cipher
    from models.db import get_engine

    cipher, now = get_cipher(), datetime.now(UTC)
    engine = get_engine(url)
    for start in range(0, n, 5000):
        ids = range(start + 1, min(start + 5000, n) + 1)
        contacts = [
            {
                "id": i,
                "first_name": f"Pat{i}",
                "last_name": f"Nguyen{i}",
                "email": f"pat{i}@example.com",
                "email_hash": cipher.blind_index("email", f"pat{i}@example.com"),
                "phone": f"+614{i:08d}",
                "phone_hash": cipher.blind_index("phone", f"+614{i:08d}"),
                "created_at": now,
                "updated_at": now,
            }
            for i in ids
        ]
        bookings = [
            {
                "id": i,
                "wix_booking_id": f"b-{i}",
                "contact_id": i,
                "status": "CONFIRMED",
                "revision": 1,
                "service_name": SERVICES[i % 4],
                "service_key": name_index("service", SERVICES[i % 4]),
                "location": "Bondi Junction",
                "location_key": name_index("location", "Bondi Junction"),
                "start_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for i in ids
        ]
        with session_scope(engine) as session:
            session.execute(insert(Contact), contacts)
            session.execute(insert(Booking), bookings)


def _read_all(url: str) -> tuple[int, list[tuple[object, ...]]]:
    """Every encrypted value decrypted (the baseline's work), in id order."""
    from sqlalchemy import select

    from models import Booking, Contact, session_scope
    from models.db import get_engine

    with session_scope(get_engine(url)) as session:
        contacts = session.execute(
            select(Contact.id, Contact.first_name, Contact.last_name, Contact.email, Contact.phone).order_by(
                Contact.id
            )
        ).all()
        bookings = session.execute(
            select(Booking.id, Booking.service_name, Booking.location).order_by(Booking.id)
        ).all()
    return 4 * len(contacts) + 2 * len(bookings), [tuple(r) for r in contacts] + [tuple(r) for r in bookings]


def _expected(n: int) -> list[tuple[object, ...]]:
    contacts = [(i, f"Pat{i}", f"Nguyen{i}", f"pat{i}@example.com", f"+614{i:08d}") for i in range(1, n + 1)]
    bookings = [(i, SERVICES[i % 4], "Bondi Junction") for i in range(1, n + 1)]
    return contacts + bookings  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="key-rotation-"))
    url = args.database_url or f"sqlite:///{workdir / 'crm.db'}"
    base = {"CRM_DATA_DIR": str(workdir), "CRM_DATABASE_URL": url}
    _use({**base, "CRM_ENCRYPTION_KEY": KEY_A})

    from models.crypto import key_id
    from models.keyring import count_by_key
    from models.migrate import upgrade

    upgrade(url)
    started = time.perf_counter()
    _fill(url, args.contacts)
    fill_s = time.perf_counter() - started

    started = time.perf_counter()
    values, before = _read_all(url)
    baseline_s = time.perf_counter() - started
    assert before == _expected(args.contacts), "the filled values do not read back"

    rotate_env = {**os.environ, **base, "CRM_ENCRYPTION_KEY": KEY_A, "CRM_ENCRYPTION_KEYS": KEY_B}
    started = time.perf_counter()
    subprocess.run(
        [str(REPO / ".venv/bin/avatar-crm"), "keys", "rotate", "--batch-size", str(args.batch_size)],
        env=rotate_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rotate_s = time.perf_counter() - started

    # Key A leaves the ring; its value keeps keying the blind indexes.
    _use({**base, "CRM_ENCRYPTION_KEYS": KEY_B, "CRM_BLIND_INDEX_KEY": KEY_A})
    left = {k: n for c in count_by_key() for k, n in c.by_key.items() if k != key_id(KEY_B.encode())}
    assert not left, f"values still sealed by another key: {left}"
    started = time.perf_counter()
    _, after = _read_all(url)
    verify_s = time.perf_counter() - started
    assert after == _expected(args.contacts), "a value did not survive the rotation"
    from sqlalchemy import select

    from models import Contact, session_scope
    from models.crypto import get_cipher

    with session_scope() as session:
        for i in range(1, args.contacts + 1, max(1, args.contacts // 100)):
            found = session.execute(
                select(Contact.id).where(
                    Contact.phone_hash == get_cipher().blind_index("phone", f"+614{i:08d}")
                )
            ).scalar_one()
            assert found == i

    kind = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    rows = [
        ("fill (not measured against anything)", fill_s, ""),
        ("baseline: read + decrypt every value", baseline_s, f"{values / baseline_s:,.0f} values/s"),
        (f"avatar-crm keys rotate (batch {args.batch_size})", rotate_s, f"{values / rotate_s:,.0f} values/s"),
        ("verify with key A removed (read all)", verify_s, "every value equal, 100 phone lookups found"),
    ]
    print(f"{kind}, {args.contacts:,} contacts + {args.contacts:,} bookings = {values:,} encrypted values")
    for label, seconds, note in rows:
        print(f"  {label:<42} {seconds:8.2f} s  {note}")
    print(f"  {'rotation / baseline':<42} {rotate_s / baseline_s:8.1f} x")


if __name__ == "__main__":
    main()
