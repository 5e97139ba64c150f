"""Run an ASGI app on a real loopback port in a background thread (gateway under test, provider fakes)."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Self

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeProvider:
    """What every provider fake shares: its Litestar app (`_app`) served on a loopback port, started and
    stopped by the tests (or used as a context manager). Fakes hold their own recording and scripting."""

    _server: ThreadedServer | None = None

    def _app(self) -> Any:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return self._server.url

    def start(self) -> Self:
        self._server = ThreadedServer(self._app()).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def compact_json(payload: Any) -> bytes:
    """A fake's JSON answer, as providers send it (no spaces)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def json_or_none(body: bytes) -> Any:
    """A request body as JSON, or None when it is empty or not JSON (fakes answer that with the provider's
    own error)."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
