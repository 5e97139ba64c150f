"""SQLite's write lock (`models/sqlite_lock.py`) goes to this process's waiting threads in turn, the moment
it is free; writers of other processes are waited for, and a lock held past the busy timeout fails as
SQLite's own would."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from models.db import get_engine, session_scope
from models.sqlite_lock import sqlite_write_lock
from tests.lock_races import BlockedCall, start_until_blocked


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "writers.db"


@pytest.fixture
def engine(path: Path) -> Iterator[Engine]:
    engine = get_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE entry (id INTEGER PRIMARY KEY, writer TEXT NOT NULL)"))
    yield engine
    engine.dispose()


def _write(engine: Engine, writer: str) -> None:
    with session_scope(engine) as session:
        session.execute(text("INSERT INTO entry (writer) VALUES (:writer)"), {"writer": writer})


def _writers(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT writer FROM entry ORDER BY id")).scalars())


def _start_waiting(engine: Engine, writer: str, ahead: int = 0) -> BlockedCall:
    """`writer`'s transaction in a thread, once it waits for the lock behind `ahead` of this process's."""
    lock = sqlite_write_lock(str(engine.url.database))
    return start_until_blocked(
        lambda: _write(engine, writer), f"{writer}'s wait", waiting=lambda: lock.waiting > ahead
    )


def test_a_waiting_writer_goes_next_however_fast_another_thread_writes(engine: Engine) -> None:
    """A loop of back-to-back transactions (a campaign's audience queued page by page) used to keep a
    waiting claim out for as long as it lasted: SQLite's busy handler slept through every gap."""
    for _ in range(9):
        _write(engine, "loop")
    with session_scope(engine) as session:  # the loop's tenth transaction, holding the lock
        session.execute(text("INSERT INTO entry (writer) VALUES ('loop')"))
        waiter = _start_waiting(engine, "waiter")
    for _ in range(40):
        _write(engine, "loop")
    waiter.finish()

    assert _writers(engine) == ["loop"] * 10 + ["waiter"] + ["loop"] * 40


def test_writers_waiting_together_go_in_the_order_they_came(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.execute(text("INSERT INTO entry (writer) VALUES ('first')"))
        waiters = [
            _start_waiting(engine, name, ahead) for ahead, name in enumerate(("second", "third", "fourth"))
        ]
    for waiter in waiters:
        waiter.finish()

    assert _writers(engine) == ["first", "second", "third", "fourth"]


def test_a_writer_of_another_process_is_waited_for(engine: Engine, path: Path) -> None:
    """Another process cannot signal its commit; the waiting thread finds the lock free by trying again."""
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    outsider.execute("INSERT INTO entry (writer) VALUES ('outsider')")
    waiter = _start_waiting(engine, "ours")
    time.sleep(0.1)  # several of its tries refused meanwhile
    outsider.execute("COMMIT")
    outsider.close()
    waiter.finish()

    assert _writers(engine) == ["outsider", "ours"]


def test_a_lock_held_past_the_busy_timeout_fails_every_waiter_and_leaves_no_one_stuck(
    engine: Engine, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_write_lock(str(path)), "timeout", 0.3)
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    # one whose turn it is, one queued behind it
    waiters = [_start_waiting(engine, name, ahead) for ahead, name in enumerate(("trying", "queued"))]
    failures = [waiter.failure() for waiter in waiters]
    outsider.execute("ROLLBACK")
    outsider.close()

    for failure in failures:  # the error SQLAlchemy raises for any statement (the gateway answers 503)
        assert isinstance(failure, OperationalError)
        assert "database is locked" in str(failure)
    assert sqlite_write_lock(str(path)).waiting == 0
    _write(engine, "after")
    assert _writers(engine) == ["after"]


def test_a_writer_waiting_on_one_database_holds_up_no_other(
    engine: Engine, path: Path, tmp_path: Path
) -> None:
    other = get_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.begin() as connection:
        connection.execute(text("CREATE TABLE entry (id INTEGER PRIMARY KEY, writer TEXT NOT NULL)"))
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    waiter = _start_waiting(engine, "waiter")
    _write(other, "elsewhere")  # would queue behind the waiter if the two files shared one line
    assert _writers(other) == ["elsewhere"]
    outsider.execute("COMMIT")
    outsider.close()
    waiter.finish()
    other.dispose()

    assert _writers(engine) == ["waiter"]
