"""The key ring and `avatar-crm keys rotate`: new values sealed by the newest key, every old value re-sealed
(resumably: a rotation killed half-way finishes when run again), then the old key removed with everything
still readable and every lookup by blind index still finding its row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, make_url, select, update

from models import Booking, Contact, WebhookEvent, session_scope
from models.crm import name_index
from models.crypto import UnknownKeyError, get_cipher, key_id
from models.db import get_engine
from models.keyring import count_by_key, rotate
from models.migrate import upgrade
from models.settings import get_settings

pytestmark = pytest.mark.db

KEY_A = os.environ["CRM_ENCRYPTION_KEY"]  # the session's key: everything the other tests wrote
KEY_B = "Zm9yIHRlc3RzIG9ubHk6IGEgc2Vjb25kIGtleSEhISE="
START = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
CLI = Path(sys.executable).parent / "avatar-crm"


@pytest.fixture
def ring(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Switch the process's key settings; the session's single key A comes back afterwards."""

    def use(keys: str | None = None, single: str | None = KEY_A, index: str | None = None) -> None:
        for name, value in (
            ("CRM_ENCRYPTION_KEYS", keys),
            ("CRM_ENCRYPTION_KEY", single),
            ("CRM_BLIND_INDEX_KEY", index),
        ):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield use
    monkeypatch.undo()
    get_settings.cache_clear()


def _sealed_by(url: str, frozen: bool = False) -> dict[str, int]:
    """Values per sealing key. `frozen`: a stopped process may hold SQLite's write lock, which a CRM session
    takes at BEGIN (`models.db`), so read through a plain read-only connection (WAL readers never wait)."""
    read_only = frozen and make_url(url).get_backend_name() == "sqlite"
    engine = (
        create_engine(f"sqlite:///file:{make_url(url).database}?mode=ro&uri=true")
        if read_only
        else get_engine(url)
    )
    totals: dict[str, int] = {}
    try:
        for column in count_by_key(engine):
            for key, n in column.by_key.items():
                totals[key] = totals.get(key, 0) + n
    finally:
        if read_only:  # the shared engine stays; this one was made for the look
            engine.dispose()
    return totals


def test_rotation_reseals_every_value_and_the_old_key_can_then_leave(db: str, ring) -> None:  # type: ignore[no-untyped-def]
    a, b = key_id(KEY_A.encode()), key_id(KEY_B.encode())
    with session_scope() as session:
        ada = Contact(
            first_name="Ada",
            last_name="Lovelace",
            email="ada@example.com",
            email_hash=get_cipher().blind_index("email", "ada@example.com"),
            phone="+61412345678",
            phone_hash=get_cipher().blind_index("phone", "+61412345678"),
        )
        session.add(ada)
        session.flush()
        session.add(
            Booking(
                wix_booking_id="b-1",
                contact_id=ada.id,
                status="CONFIRMED",
                service_name="MRI – Knee",
                start_at=START,
            )
        )
        session.add(WebhookEvent(source="wix", dedupe_key="k1", event_type="booking", body=b'{"ok": 1}'))
    assert _sealed_by(db) == {a: 6}

    ring(keys=KEY_B)  # ring [B, A]: new values sealed by B, A's still read
    assert get_cipher().key_ids == [b, a]
    with session_scope() as session:
        session.add(Contact(first_name="Grace", phone="+61400000001"))
        assert session.exec(select(Contact.first_name).where(Contact.first_name.is_not(None))).scalars().all()  # type: ignore[union-attr]
    assert _sealed_by(db) == {a: 6, b: 2}

    ring(keys=KEY_B, single=None, index=KEY_A)  # A removed too early: its values are unreadable, and said so
    with pytest.raises(UnknownKeyError), session_scope() as session:
        session.execute(select(Contact.first_name).order_by(Contact.id)).all()

    ring(keys=KEY_B)
    result = rotate(batch=2)
    assert (result.resealed, result.remaining) == (6, 0)
    assert _sealed_by(db) == {b: 8}
    assert rotate().resealed == 0  # nothing left: running it again changes nothing

    ring(keys=KEY_B, single=None, index=KEY_A)  # A has left the ring; its value keys the blind indexes only
    with session_scope() as session:
        contacts = session.execute(
            select(Contact.first_name, Contact.last_name, Contact.email, Contact.phone).order_by(Contact.id)
        ).all()  # type: ignore[arg-type]
        assert [tuple(c) for c in contacts] == [
            ("Ada", "Lovelace", "ada@example.com", "+61412345678"),
            ("Grace", None, None, "+61400000001"),
        ]
        found = session.execute(
            select(Contact.id).where(Contact.phone_hash == get_cipher().blind_index("phone", "+61412345678"))
        ).scalar_one()
        assert found == ada.id
        booked = session.execute(
            select(Booking.service_name).where(Booking.service_key == name_index("service", "mri - knee"))  # type: ignore[arg-type]
        ).scalar_one()
        assert booked == "MRI – Knee"
        assert session.execute(select(WebhookEvent.body)).scalar_one() == b'{"ok": 1}'


def _fill(url: str, n: int) -> None:
    cipher, now = get_cipher(), datetime.now(UTC)
    rows = [
        {
            "id": i,
            "first_name": f"Pat{i}",
            "last_name": f"Nguyen{i}",
            "phone": f"+614{i:08d}",
            "phone_hash": cipher.blind_index("phone", f"+614{i:08d}"),
            "created_at": now,
            "updated_at": now,
        }
        for i in range(1, n + 1)
    ]
    with session_scope(get_engine(url)) as session:
        session.execute(insert(Contact), rows)


def test_a_rotation_killed_half_way_resumes_and_finishes_while_others_write(
    fresh_database_url: str, ring
) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL mid-rotation leaves every value readable (each batch is one transaction); running it again
    finishes. Meanwhile this process keeps writing patients' names (the gateway's part): none is lost."""
    url, n = fresh_database_url, 20_000
    a, b = key_id(KEY_A.encode()), key_id(KEY_B.encode())
    upgrade(url)
    _fill(url, n)
    env = {**os.environ, "CRM_DATABASE_URL": url, "CRM_ENCRYPTION_KEY": KEY_A, "CRM_ENCRYPTION_KEYS": KEY_B}
    command = [str(CLI), "keys", "rotate", "--batch-size", "50"]
    rotation = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ring(keys=KEY_B)
    engine = get_engine(url)
    renamed: dict[int, str] = {}
    writing, failures = threading.Event(), []

    def write_online() -> None:
        """The gateway's part: writes during the rotation, to rows it may be about to re-seal. In a thread of
        its own, so that a write waiting for the rotation's lock does not keep the rotation running unwatched
        (a proving CI saw the rotation finish while the test waited to write)."""
        try:
            while writing.is_set():
                i = len(renamed) * 397 % n + 1
                name = f"Renamed{len(renamed)}"
                with session_scope(engine) as session:
                    session.execute(update(Contact).where(Contact.id == i).values(first_name=name))  # type: ignore[arg-type]
                renamed[i] = name
                time.sleep(0.02)
        except Exception:  # reported by the test below
            failures.append(traceback.format_exc())

    writing.set()
    writer = threading.Thread(target=write_online, daemon=True)
    writer.start()
    try:
        # The rotation runs 10 ms at a time; each look is taken with it stopped (SIGSTOP), through a read-only
        # connection, so the kill lands on the state just counted, however long a look takes.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and rotation.poll() is None:
            rotation.send_signal(signal.SIGSTOP)
            sealed = _sealed_by(url, frozen=True)
            if sealed.get(b, 0) > n // 2 and sealed.get(a, 0) > 0 and len(renamed) > 1:  # under way, not done
                break
            rotation.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        assert rotation.poll() is None, "the rotation finished before it could be killed"
        rotation.send_signal(signal.SIGKILL)
        rotation.wait()
    finally:
        if rotation.poll() is None:
            rotation.kill()
        writing.clear()
        writer.join(timeout=60)
    assert not failures, failures[0]
    half = _sealed_by(url)
    assert half.get(a, 0) > 0 and half.get(b, 0) > 0  # killed half-way

    with session_scope(engine) as session:  # half-rotated, everything reads with the ring [B, A]
        assert len(session.execute(select(Contact.first_name, Contact.phone)).all()) == n

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert set(_sealed_by(url)) == {b}

    ring(keys=KEY_B, single=None, index=KEY_A)  # A removed
    with session_scope(engine) as session:
        rows = session.execute(select(Contact.id, Contact.first_name, Contact.last_name, Contact.phone)).all()
        found = session.execute(
            select(Contact.id).where(Contact.phone_hash == get_cipher().blind_index("phone", "+61400000777"))
        ).scalar_one()
    assert found == 777
    assert len(renamed) > 1
    expected = {i: (renamed.get(i, f"Pat{i}"), f"Nguyen{i}", f"+614{i:08d}") for i in range(1, n + 1)}
    assert {row[0]: tuple(row[1:]) for row in rows} == expected


async def test_removing_the_oldest_key_without_pinning_the_blind_index_key_is_refused(db: str, ring) -> None:  # type: ignore[no-untyped-def]
    """With the oldest key gone and CRM_BLIND_INDEX_KEY unset, the index key would change: no contact found by
    phone, no STOP honoured. The gateway refuses to start and `keys status` fails, naming the fix."""
    from litestar.testing import AsyncTestClient
    from typer.testing import CliRunner

    from deployments.cli import app as cli
    from models.keyring import BlindIndexKeyChanged, record_keys
    from webhook_gateway.app import create_app

    with session_scope() as session:
        session.add(
            Contact(phone="+61412345678", phone_hash=get_cipher().blind_index("phone", "+61412345678"))
        )
    record_keys()  # what the gateway does on start: the index key in use is A's
    ring(keys=KEY_B, single=None)  # A removed, nothing pinned: the index key would now be B's
    with pytest.raises(BlindIndexKeyChanged, match="CRM_BLIND_INDEX_KEY"):
        record_keys()
    status = CliRunner().invoke(cli, ["keys", "status", "--no-counts"])
    assert status.exit_code != 0 and isinstance(status.exception, BlindIndexKeyChanged)
    with pytest.raises(BaseException) as refused:  # the start-up failure arrives wrapped in a group
        async with AsyncTestClient(app=create_app(get_settings(), prefect_api_url="http://127.0.0.1:9/api")):
            pass
    assert "BlindIndexKeyChanged" in "".join(traceback.format_exception(refused.value))
    ring(keys=KEY_B, single=None, index=KEY_A)  # pinned: fine
    record_keys()
