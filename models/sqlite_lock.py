"""SQLite's write lock, handed from one thread of this process to the next in the order they asked.

Every transaction here starts with `BEGIN IMMEDIATE` (`models/db.py`), so every transaction takes SQLite's
one write lock up front. SQLite's own busy handler then sleeps 1, 2, 5, 10 … up to 100 ms between tries,
however soon the lock frees, and a thread that writes in a loop takes the lock back microseconds after each
commit, so a sleeper can miss every chance for as long as that loop lasts. Measured: a campaign's first
claim waited 0.43 s behind its audience being queued a page at a time, its threads 2.5-3.5 s in all, while
the lock sat free during their sleeps.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

SQLITE_BUSY_TIMEOUT_MS = 30_000


class WriteLockHandoff:
    """One database's writers in this process, served first come first served.

    The threads queue for their turn to take the lock; the one whose turn it is tries, and when the lock
    is taken waits for a commit or rollback in this process to signal (then tries again at once) or, since
    writers in other processes cannot signal, for 1, 2, 4 … 20 ms, until the busy timeout. Nothing is held
    in Python while a transaction runs: a transaction that never ends blocks the others exactly as SQLite
    alone would, and they fail after the busy timeout as they would without this.
    """

    MAX_PAUSE = 0.02

    def __init__(self, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        self.timeout = timeout
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
        deadline = time.monotonic() + self.timeout
        self._await_turn(deadline)
        try:
            connection.execute("PRAGMA busy_timeout=0")  # a refusal comes back at once, to wait for here
            try:
                self._take(connection, deadline)
            finally:
                connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # as connected
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
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # SQLITE_BUSY_RECOVERY etc. too
                if not busy or time.monotonic() >= deadline:
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
