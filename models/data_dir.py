"""The data directory is the owner's alone: the database and its WAL, the encryption key, Prefect's files.

New files are created that way (the CLI runs with umask 077; the SQLite file is created 0600 before SQLite
opens it, and SQLite gives its WAL and shared-memory files the database's mode). What an older version, a
restore or a hand-made copy left readable by others is put right at start-up, and said loudly: fixing is
safe, since nothing but this user's processes needs the files, while refusing to start would stop the
clinic's webhooks over a file mode. A file that cannot be fixed (another user's) stops the start with a
message saying which.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077  # files 0600, directories 0700
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


class DataDirNotPrivate(RuntimeError):
    """Something in the data directory is readable by others and could not be made private."""


def sqlite_path(database_url: str) -> Path | None:
    """The SQLite database file a URL names, or None (PostgreSQL, in-memory)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def make_private(data_dir: Path, database_url: str | None = None) -> list[Path]:
    """Take group and other access off everything under `data_dir` (and the SQLite database with its WAL and
    shared-memory files, wherever it is); return what was changed, after warning about it."""
    paths: list[Path] = []
    if data_dir.exists():
        paths.append(data_dir)
        for root, dirs, files in os.walk(data_dir):
            paths.extend(Path(root) / name for name in (*dirs, *files))
    database = sqlite_path(database_url) if database_url else None
    if database is not None:
        paths.extend(database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm"))
    changed: list[Path] = []
    for path in dict.fromkeys(paths):  # in order, once each
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode) or not mode & _OTHERS:
            continue
        try:
            path.chmod(stat.S_IMODE(mode) & ~_OTHERS)
        except PermissionError as exc:
            raise DataDirNotPrivate(
                f"{path} is readable by other users and this user cannot change that "
                f"(mode {stat.S_IMODE(mode):o}, owner uid {path.lstat().st_uid}): "
                "make the data directory and everything in it owned by the user running avatar-crm."
            ) from exc
        changed.append(path)
    if changed:
        logger.warning(
            "%s path(s) in the data directory were readable by other users; made private (0700/0600): %s",
            len(changed),
            ", ".join(str(p) for p in changed[:5]) + (" …" if len(changed) > 5 else ""),
        )
    return changed


def create_private_file(path: Path) -> None:
    """Create `path` (and its directory) readable by its owner only, unless it exists.

    An existing file is never opened: closing any descriptor of a SQLite database drops every POSIX lock this
    process holds on it, SQLite's own included (writes were lost that way)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        return
    with contextlib.suppress(FileExistsError):  # created meanwhile by another process or thread: theirs
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


PREFECT_LOGIN_FILE = "prefect-auth"  # `make up`'s Prefect login (`user:password`), made at its first start


def read_prefect_login(data_dir: Path) -> str | None:
    """The login `make up` wrote for its Prefect server, or None when there is none (yet)."""
    try:
        return (data_dir / PREFECT_LOGIN_FILE).read_text().strip() or None
    except OSError:
        return None
