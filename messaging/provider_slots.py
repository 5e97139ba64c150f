"""A cross-process limit on requests in flight to one provider (MobileMessage allows 5 per account).

Every flow run is its own process, so the HTTP client's in-process semaphore cannot keep them together
under the provider's limit. Prefect's global concurrency limits can, but each acquisition is a write to
one hot row on the Prefect server; on the embedded SQLite server that cost 1.5 s at the median and up to
16 s per message (`benchmarks/e2e_latency.py`, 15 bookings at 1/s) — far too slow to gate every SMS.

So the slots live where the CRM's data lives, with locks the operating system or database releases by
itself if a holder dies (no lease to expire, nothing to clean up):
- PostgreSQL (any number of hosts): session-level advisory locks `pg_try_advisory_lock(limit, slot)`,
  each held on its own pooled connection for the duration of the request;
- SQLite (one host by definition): `flock` on one file per slot beside the database file.

The PostgreSQL locks live in the database's server, so gateways and workers on any number of hosts that
share the CRM database share each limit, and a holder whose process or host dies frees its slot when
PostgreSQL ends its session (at once for a killed process; for a lost host, when its TCP connection is found
dead). They need a session of their own: behind a pooler (PgBouncer), use session pooling, not transaction
pooling, or the lock can outlive the request on a connection someone else is then handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from models import get_engine


class SlotTimeoutError(TimeoutError):
    """Every slot stayed busy for the whole wait: the provider is saturated; try the work later."""


def _lock_key(name: str) -> int:
    """A stable signed 32-bit key for the advisory lock's first half (the slot number is the second)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


@functools.cache
def _lock_directory(database: str | None) -> Path:
    """Beside the SQLite file (created once per process, not on every attempt)."""
    base = Path(database).resolve().parent if database and database != ":memory:" else Path(".")
    directory = base / "locks"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


def _try_file_slot(directory: Path, name: str, slot: int) -> Callable[[], None] | None:
    path = directory / f"{name}.{slot}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return lambda: os.close(fd)  # closing the descriptor releases the lock


def _try_pg_slot(engine: Engine, key: int, slot: int) -> Callable[[], None] | None:
    connection: Connection = engine.connect()
    try:
        held = connection.execute(
            text("SELECT pg_try_advisory_lock(:key, :slot)"), {"key": key, "slot": slot}
        ).scalar_one()
        connection.commit()
    except BaseException:
        connection.close()
        raise
    if not held:
        connection.close()
        return None

    def release() -> None:
        # A rollback does not end a session-level lock: a connection whose unlock failed must not go back to
        # the pool still holding the slot, so it is discarded (its session ends, which frees the lock).
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key, :slot)"), {"key": key, "slot": slot})
            connection.commit()
        except BaseException:
            connection.invalidate()
            raise
        finally:
            connection.close()

    return release


# Slots held by the current task: a batch sender takes one slot per worker for the whole batch, and the
# per-message `hold()` inside it then costs nothing (instead of a lock round trip per SMS). Only the task
# that took the slot is let through: tasks it starts inherit the variable but not the slot.
_held: ContextVar[tuple[int, frozenset[str]]] = ContextVar("provider_slots_held", default=(0, frozenset()))


class ProviderSlots:
    def __init__(self, name: str, limit: int, engine: Engine | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.name = name
        self.limit = limit
        self._engine = engine

    def _try_acquire(self) -> Callable[[], None] | None:
        engine = self._engine or get_engine()
        if engine.dialect.name == "postgresql":
            attempt = functools.partial(_try_pg_slot, engine, _lock_key(self.name))
        else:
            directory = _lock_directory(make_url(engine.url).database)
            attempt = functools.partial(_try_file_slot, directory, self.name)
        start = random.randrange(self.limit)  # spread contenders over the slots
        for i in range(self.limit):
            release = attempt((start + i) % self.limit)
            if release is not None:
                return release
        return None

    @contextlib.asynccontextmanager
    async def hold(self, max_wait: float = 300.0) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block, waiting (politely, with jitter) for a free one."""
        task = id(asyncio.current_task())
        owner, names = _held.get()
        if owner == task and self.name in names:
            yield
            return
        deadline = time.monotonic() + max_wait
        delay = 0.01
        while True:
            release = await asyncio.to_thread(self._try_acquire)
            if release is not None:
                break
            if time.monotonic() >= deadline:
                raise SlotTimeoutError(f"all {self.limit} {self.name} slots busy for {max_wait:.0f}s")
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 0.25)
        token = _held.set((task, (names if owner == task else frozenset()) | {self.name}))
        try:
            yield
        finally:
            _held.reset(token)
            await asyncio.to_thread(release)
