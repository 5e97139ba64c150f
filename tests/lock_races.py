"""Running one side of a lock race in a thread: start it, wait until it is blocked on a lock the test holds,
then let the test take its next step and see how both sides finish (a PostgreSQL deadlock fails one; SQLite
writers go in the order they came)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from models import get_engine


class BlockedCall:
    """`call` running in a thread, started by `start_until_blocked`; `finish` joins it."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.outcome: dict[str, Any] = {}
        self._call = call
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.outcome["result"] = self._call()
        except Exception as exc:  # e.g. a deadlock victim: reported by `finish`
            self.outcome["error"] = exc

    def finish(self, timeout: float = 30) -> Any:
        """Join; asserts the call ended without an error and returns its result."""
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive() and "error" not in self.outcome, self.outcome.get("error")
        return self.outcome.get("result")

    def failure(self, timeout: float = 30) -> Exception | None:
        """Join; the error the call ended with, if any."""
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "the call is still running"
        return self.outcome.get("error")


def start_until_blocked(
    call: Callable[[], Any],
    what: str,
    timeout: float = 20,
    *,
    waiting: Callable[[], bool] | None = None,
) -> BlockedCall:
    """Start `call` in a thread and return once it waits for a lock (or has already ended): by default once
    a session of this PostgreSQL database waits for one; `what` names the lock in the failure message."""
    waiting = waiting or someone_waits_for_a_lock
    blocked = BlockedCall(call)
    blocked.thread.start()
    deadline = time.monotonic() + timeout
    while not waiting() and blocked.thread.is_alive():
        assert time.monotonic() < deadline, f"the call never reached {what}"
        time.sleep(0.05)
    return blocked


def someone_waits_for_a_lock() -> bool:
    """A session of this database waits for a lock: an advisory lock, or a row lock (which waits on the
    holder's transaction id, listed in `pg_locks` without a database; `pg_stat_activity` names it)."""
    with get_engine().connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)
