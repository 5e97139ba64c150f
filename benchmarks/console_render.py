"""Console page renders over a big log and a long queue: 1,000,000 access-audit rows, 10,000 open tasks.

Seeds a fresh database (a temp SQLite file, or with `--postgres URL` a database `bench_console` on that
server, created and dropped here) by bulk insert: executemany on SQLite, COPY on PostgreSQL. The rows do not
chain (the viewer never verifies the chain; `avatar-crm audit verify` would say row 1 onwards is broken).
Then, through Litestar's TestClient signed in as an admin (the real sign-in flow against the fake Google
OIDC), times 50 GETs of each page after 5 warm-ups, and GET /healthz as the baseline in the same run:

- the audit page's first page; filtered by actor (one of 20 people); by outcome=denied (1 % of rows); by a
  `from` date (the last 30 days); by a `to` date (a year ago: old rows only); a deep page (`before=1000`);
- the reception task queue (first page of 50 and a page 5,000 tasks in);
- once, the CSV export of one person's rows (~50,000), timed to the last byte.

    .venv/bin/python benchmarks/console_render.py [--rows 1000000] [--tasks 10000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from sqlalchemy import create_engine, make_url, text  # noqa: E402
from stats import percentile  # noqa: E402

from tests.servers import drop_databases  # noqa: E402

REQUESTS, WARMUP = 50, 5
PEOPLE = [f"staff{n}@clinic.example" for n in range(20)]
ACTIONS = [
    "patient.reply_read",
    "patient.phone_revealed",
    "staff_task.done",
    "console.sign_in",
    "consent.granted",
]
END = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=730)  # two years of rows, oldest first


def audit_rows(n: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(16)
    step = SPAN / n
    start = END - SPAN
    for i in range(1, n + 1):
        yield (
            i,
            start + step * i,
            rng.choice(PEOPLE),
            "reception",
            "10.0.0.1",
            rng.choice(ACTIONS),
            f"contact:{rng.randrange(50_000)}",
            "denied" if rng.random() < 0.01 else "allowed",
            None,
            "{}",
            "0" * 64,
            f"{i:064x}",
        )


COLUMNS = (
    "id, at, actor, role, client_address, action, subject, outcome, reason, detail, previous_hash, row_hash"
)


def seed(url: str, rows: int, tasks: int) -> None:
    began = time.perf_counter()
    engine = create_engine(url)
    batch: list[tuple[Any, ...]] = []
    with engine.begin() as connection:
        raw = connection.connection.driver_connection
        if engine.dialect.name == "postgresql":
            with raw.cursor() as cursor, cursor.copy(f"COPY accessaudit ({COLUMNS}) FROM STDIN") as copy:  # type: ignore[union-attr]
                for row in audit_rows(rows):
                    copy.write_row(row)
        else:
            cursor = raw.cursor()  # type: ignore[union-attr]
            sql = f"INSERT INTO accessaudit ({COLUMNS}) VALUES ({', '.join('?' * 12)})"  # noqa: S608
            for row in audit_rows(rows):
                # SQLAlchemy's SQLite DateTime storage format (naive UTC text).
                batch.append((row[0], row[1].strftime("%Y-%m-%d %H:%M:%S.%f"), *row[2:]))
                if len(batch) == 20_000:
                    cursor.executemany(sql, batch)
                    batch.clear()
            cursor.executemany(sql, batch)
        created = END - timedelta(days=30)
        connection.execute(
            text(
                "INSERT INTO stafftask (key, kind, status, created_at, summary) "
                "VALUES (:key, 'message_failed', 'open', :at, 'sms reminder could not be delivered')"
            ),
            [{"key": f"message:{n}", "at": created + timedelta(minutes=n)} for n in range(tasks)],
        )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    engine.dispose()
    print(f"seeded {rows:,} audit rows and {tasks:,} open tasks in {time.perf_counter() - began:.1f} s")


def timed(client: Any, path: str) -> tuple[float, float]:
    for _ in range(WARMUP):
        assert client.get(path).status_code == 200, path
    took = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        answer = client.get(path)
        took.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return percentile(took, 50), percentile(took, 95)


def measure(url: str, rows: int, tasks: int, data_dir: str) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        CRM_DATABASE_URL=url,
        CRM_DATA_DIR=data_dir,
        CRM_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        RATE_LIMIT_PER_SECOND="0",
    )
    from litestar.testing import TestClient

    from models import StaffRole, get_settings
    from models.migrate import upgrade
    from providers.google_oidc import CACHE
    from tests.console_env import STAFF, add_staff, console_settings, sign_in
    from tests.fakes.google_oidc import FakeGoogleOIDC
    from webhook_gateway.app import create_app

    upgrade(url)
    get_settings.cache_clear()
    seed(url, rows, tasks)
    add_staff()  # after the seed: their audit rows chain onto the seeded ids
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    with FakeGoogleOIDC() as fake:
        CACHE.clear()
        app = create_app(
            console_settings(url, fake, "http://testserver.local"), prefect_api_url="http://127.0.0.1:9/api"
        )
        with TestClient(app, base_url="http://testserver.local") as client:
            assert sign_in(client, fake, STAFF[StaffRole.ADMIN]).status_code == 303
            year_ago = (END - timedelta(days=365)).date().isoformat()
            recent = (END - timedelta(days=30)).date().isoformat()
            pages = {
                "GET /healthz (baseline)": "/healthz",
                "audit, first page": "/console/audit",
                "audit, actor filter": f"/console/audit?actor={PEOPLE[3]}",
                "audit, outcome=denied": "/console/audit?outcome=denied",
                "audit, actor + denied": f"/console/audit?actor={PEOPLE[3]}&outcome=denied",
                "audit, from (last 30 days)": f"/console/audit?from={recent}",
                "audit, to (a year ago)": f"/console/audit?to={year_ago}",
                "audit, deep page (before=1000)": "/console/audit?before=1000",
                "tasks, first page": "/console/tasks",
                f"tasks, {tasks // 2:,} in": f"/console/tasks?after={tasks // 2}",
            }
            print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8}")
            for label, path in pages.items():
                p50, p95 = timed(client, path)
                print(f"{label:34} {p50:8.1f} {p95:8.1f}")
            began = time.perf_counter()
            with client.stream("GET", f"/console/audit.csv?actor={PEOPLE[3]}") as answer:
                lines = sum(chunk.count("\n") for chunk in answer.iter_text())
            took = time.perf_counter() - began
            print(
                f"CSV export, actor filter: {lines - 1:,} rows in {took:.1f} s "
                f"({(lines - 1) / took:,.0f} rows/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (bench_console is made there)")
    args = parser.parse_args()
    if args.postgres:
        server = make_url(args.postgres)
        admin_url = server.set(database="postgres")
        drop_databases(admin_url, ["bench_console"])
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text('CREATE DATABASE "bench_console"'))
        admin.dispose()
        url = server.set(database="bench_console", drivername="postgresql+psycopg")
        try:
            print("PostgreSQL")
            with tempfile.TemporaryDirectory() as folder:
                measure(url.render_as_string(hide_password=False), args.rows, args.tasks, folder)
        finally:
            from models.db import get_engine

            get_engine(url.render_as_string(hide_password=False)).dispose()
            drop_databases(admin_url, ["bench_console"])
        return
    with tempfile.TemporaryDirectory() as folder:
        print("SQLite")
        measure(f"sqlite:///{folder}/console.db", args.rows, args.tasks, folder)


if __name__ == "__main__":
    main()
