"""The one engine and session factory every part of the system uses.

SQLite is the embedded default and gets the settings that make it a reliable multi-process store:
WAL (readers never block the writer), `synchronous=FULL` (a committed webhook survives power loss, not just
a crash), a generous busy timeout, and `BEGIN IMMEDIATE` so a read-then-write transaction takes the write
lock up front instead of failing with SQLITE_BUSY when it tries to upgrade; a thread waiting for that lock is
handed it, in turn, as soon as another thread of the process lets it go (`models/sqlite_lock.py`).
"""

from __future__ import annotations

import json
import sqlite3
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

from models.data_dir import create_private_file
from models.settings import get_settings
from models.sqlite_lock import SQLITE_BUSY_TIMEOUT_MS, WriteLockHandoff, sqlite_write_lock


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` as the clinic would write them; we drive psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


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
            create_private_file(Path(parsed.database))  # SQLite gives its WAL and -shm the same mode
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
