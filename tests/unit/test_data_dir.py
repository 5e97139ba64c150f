"""The data directory is the owner's alone: created so, and put right at start-up (the review found `var/`
0755 and `crm.db` with its WAL 0644: patient data readable by every user of the machine)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from models import Settings
from models.data_dir import DataDirNotPrivate, make_private
from models.db import get_engine
from webhook_gateway.app import create_app

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(root: Path) -> dict[str, int]:
    found = {".": mode(root)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = mode(path)
    return found


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask of a shell (022): what a clinic's server runs with unless told otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_sqlite_database_and_its_wal_are_the_owners_alone(tmp_path: Path, open_umask: None) -> None:
    database = tmp_path / "var" / "crm.db"
    engine = get_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x TEXT)"))
            connection.execute(text("INSERT INTO t VALUES ('a patient')"))
        with engine.connect() as connection:  # keeps the WAL and -shm files in place while we look
            connection.execute(text("SELECT * FROM t")).all()
            assert {name: m for name, m in modes(database.parent).items()} == {
                ".": 0o700,
                "crm.db": 0o600,
                "crm.db-wal": 0o600,
                "crm.db-shm": 0o600,
            }
    finally:
        engine.dispose()


def test_what_the_cli_creates_is_private(tmp_path: Path) -> None:
    """`avatar-crm db upgrade` (as `make up` does first) from a shell with umask 022."""
    data_dir = tmp_path / "var"
    env = {**os.environ, "CRM_DATA_DIR": str(data_dir)}
    env.pop("CRM_DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "-c", "from deployments.cli import app; app()", "db", "upgrade"],
        env=env,
        cwd=REPO,
        check=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),
    )
    found = modes(data_dir)
    assert "crm.db" in found
    assert {name: m & 0o077 for name, m in found.items()} == {name: 0 for name in found}, found


async def test_a_data_dir_readable_by_others_is_made_private_when_the_gateway_starts(
    tmp_path: Path, database_url: str, open_umask: None, gateway_log: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "var"
    (data_dir / "prefect").mkdir(parents=True)
    for name in ("crm.db", "crm.db-wal", "encryption.key", "prefect/prefect.db"):
        (data_dir / name).write_text("x")
        (data_dir / name).chmod(0o644)
    data_dir.chmod(0o755)
    (data_dir / "prefect").chmod(0o775)
    settings = Settings(crm_data_dir=data_dir, crm_database_url=database_url, dispatch_poll_seconds=60.0)  # type: ignore[call-arg]
    async with AsyncTestClient(app=create_app(settings, prefect_api_url="http://127.0.0.1:9/api")) as client:
        assert (await client.get("/healthz")).status_code == 200

    assert modes(data_dir) == {
        ".": 0o700,
        "prefect": 0o700,
        "console-sessions": 0o700,  # the console's sessions, made private before the first is written
        "crm.db": 0o600,
        "crm.db-wal": 0o600,
        "encryption.key": 0o600,
        "prefect/prefect.db": 0o600,
    }
    [warning] = [r.getMessage() for r in gateway_log.records if r.name == "models.data_dir"]
    assert warning.startswith("6 path(s) in the data directory were readable by other users; made private")


def test_a_file_that_cannot_be_made_private_stops_the_start_saying_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "encryption.key"
    secret.write_text("x")
    secret.chmod(0o644)

    def refuse(self: Path, mode: int) -> None:
        raise PermissionError("not the owner")

    monkeypatch.setattr(Path, "chmod", refuse)
    with pytest.raises(DataDirNotPrivate, match=r"encryption\.key is readable by other users"):
        make_private(tmp_path)


def test_making_sure_the_database_exists_never_drops_this_process_s_locks_on_it(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops all of this process's POSIX locks on it, SQLite's too: a
    campaign's rows were lost that way when a second engine was made for a database already in use."""
    import sqlite3

    from models.data_dir import create_private_file

    database = tmp_path / "crm.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # this process holds the write lock
    try:
        create_private_file(database)
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sqlite3; sqlite3.connect({str(database)!r}, timeout=0).execute('BEGIN IMMEDIATE')",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode != 0 and "database is locked" in other.stderr  # still ours
    finally:
        holder.execute("ROLLBACK")
        holder.close()
