"""The one engine and session factory every part of the system uses.

SQLite is the embedded default and gets the settings that make it a reliable multi-process store:
WAL (readers never block the writer), `synchronous=FULL` (a committed webhook survives power loss, not just
a crash), a generous busy timeout, and `BEGIN IMMEDIATE` so a read-then-write transaction takes the write
lock up front instead of failing with SQLITE_BUSY when it tries to upgrade; a thread waiting for that lock is
handed it, in turn, as soon as another thread of the process lets it go (`WriteLockHandoff`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    any_,
    create_engine,
    event,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from models.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` as the clinic would write them; we drive psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class WriteLockHandoff:
    """Hands SQLite's write lock from one thread of this process to the next, first come first served.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … up to 100 ms between tries, however soon the lock frees,
    and a thread that writes in a loop takes the lock back microseconds after each commit, so a sleeper can
    miss every chance for as long as that loop lasts. Measured: a campaign's first claim waited 0.43 s
    behind the audience being queued a page at a time, while the lock sat free during the sleeps. Here
    the threads of this process queue for their turn to take it; the one whose turn it is tries, and when
    the lock is taken waits for a commit or rollback in this process to signal (then tries again at once)
    or, since writers in other processes cannot signal, for 1, 2, 4 … 20 ms — until SQLITE_BUSY_TIMEOUT_MS.
    Nothing is held in Python while a transaction runs: a transaction that never ends blocks the others
    exactly as SQLite alone would, and they fail after the busy timeout as they would without this.
    """

    MAX_PAUSE = 0.02

    def __init__(self) -> None:
        # pysqlite builds connections from a class (`factory`): this database's connections signal it
        self.connection_class = type("SQLiteConnection", (_SignallingConnection,), {"handoff": self})
        self._mutex = threading.Lock()
        self._released = threading.Condition(self._mutex)
        self._releases = 0
        self._trying = False  # a thread's turn to take the lock has come and it has not taken it yet
        self._queue: deque[threading.Event] = deque()  # threads waiting for their turn, in arrival order

    @property
    def waiting(self) -> int:
        """Threads of this process waiting for the write lock (queued, or trying)."""
        with self._mutex:
            return len(self._queue) + self._trying

    def released(self) -> None:
        with self._mutex:
            self._releases += 1
            self._released.notify()  # only the thread whose turn it is waits here

    def begin_immediate(self, connection: sqlite3.Connection) -> None:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        self._await_turn(deadline)
        try:
            connection.execute("PRAGMA busy_timeout=0")  # a refusal comes back at once, to wait for here
            try:
                self._take(connection, deadline)
            finally:
                connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            with self._mutex:  # the next in line may try now (and waits for this transaction to end)
                self._pass_turn()

    def _pass_turn(self) -> None:
        if self._queue:
            self._queue.popleft().set()
        else:
            self._trying = False

    def _await_turn(self, deadline: float) -> None:
        with self._mutex:
            if not self._trying and not self._queue:
                self._trying = True
                return
            turn = threading.Event()
            self._queue.append(turn)
        try:
            if turn.wait(timeout=max(0.0, deadline - time.monotonic())):
                return
        except BaseException:  # interrupted while queued: its turn must not be handed to no one
            with self._mutex:
                if turn.is_set():
                    self._pass_turn()
                else:
                    self._queue.remove(turn)
            raise
        with self._mutex:
            if turn.is_set():  # handed over just as the wait timed out: it is this thread's turn after all
                return
            self._queue.remove(turn)
        raise sqlite3.OperationalError("database is locked")

    def _take(self, connection: sqlite3.Connection, deadline: float) -> None:
        pause = 0.001
        while True:
            seen = self._releases  # before trying: a release between the try and the wait is not missed
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            with self._mutex:
                if self._releases == seen:
                    self._released.wait(timeout=pause)
            pause = min(pause * 2, self.MAX_PAUSE)


class _SignallingConnection(sqlite3.Connection):
    """pysqlite's connection, telling its database's handoff whenever it ends a transaction (and so frees the
    write lock)."""

    handoff: WriteLockHandoff

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.handoff.released()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.handoff.released()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.handoff.released()


_write_locks: dict[str, WriteLockHandoff] = {}
_write_locks_guard = threading.Lock()


def sqlite_write_lock(database: str) -> WriteLockHandoff:
    """The handoff for one SQLite file, shared by every engine on that file in this process."""
    key = database if database in ("", ":memory:") else str(Path(database).resolve())
    with _write_locks_guard:
        return _write_locks.setdefault(key, WriteLockHandoff())


def _configure_sqlite(engine: Engine, write_lock: WriteLockHandoff) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below be the only BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        try:
            write_lock.begin_immediate(connection.connection.driver_connection)
        except sqlite3.Error as error:  # as SQLAlchemy raises any other statement's: callers catch its errors
            raise DBAPIError.instance("BEGIN IMMEDIATE", (), error, sqlite3.Error) from error


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    url = normalize_url(url or get_settings().crm_database_url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        write_lock = sqlite_write_lock(parsed.database or "")
        engine = create_engine(
            url,
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "factory": write_lock.connection_class,
            },
        )
        _configure_sqlite(engine, write_lock)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def in_values(session: Session, column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values` with the values sent as ONE bound parameter: a JSON array SQLite reads with
    `json_each`, a PostgreSQL array compared with `= ANY`.

    A plain `in_()` of a campaign batch's 1,000 ids builds, renders and binds 1,000 parameters on every
    execution; a batch runs four such statements. As one parameter the statement is compiled once and
    cached, and there is no limit on how many values it takes.
    """
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(list(values), ARRAY(column.type)))
    listed = func.json_each(literal(json.dumps(list(values))))
    return column.in_(select(literal_column("value")).select_from(listed))


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: committed if the block succeeds, rolled back if it raises."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
