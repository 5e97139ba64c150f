"""Run an ASGI app on a real loopback port in a background thread (gateway under test, provider fakes), and
clean up after stacks run on this machine's PostgreSQL and Redis (scaled topology tests and benchmarks)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Self

import redis
import uvicorn
from sqlalchemy import URL, create_engine, make_url, text


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


def drop_databases(server_url: str | URL, names: Iterable[str]) -> None:
    """Drop these PostgreSQL databases (if they exist, closing their connections), connecting to `server_url`
    (a database on that server other than those dropped) with psycopg."""
    admin = create_engine(
        make_url(server_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        for name in names:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def flush_redis(first_db: int, count: int = 3) -> None:
    """Empty `count` numbered databases of the local Redis from `first_db` (a scaled stack uses three:
    Prefect's messaging, its docket, the gateways' rate limits)."""
    for db in range(first_db, first_db + count):
        redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
