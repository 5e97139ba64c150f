"""A queue drained by one daemon thread: the gateway's writers (the inbox, the webhook outcome counts) keep
database work off the event loop this way. `stop()` queues None, which the worker's `_run` ends on."""

from __future__ import annotations

import queue
import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class QueueWorker(Generic[Item]):
    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError
