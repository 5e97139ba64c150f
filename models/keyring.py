"""Key rotation and key ages: re-sealing every encrypted value with the newest key, online and resumable.

`rotate` walks each encrypted column in id order, a batch per short transaction, and re-seals only values
sealed by another key (found in SQL by the ciphertext's header). Nothing records progress: a rotation that
was stopped, killed or lost its machine is resumed by running it again, which finds what is left. Each
value is replaced only if it is still the one that was read (compare-and-set), so a patient's details
written by the gateway meanwhile are never overwritten with the older value; the rotation's last pass
catches values written under an old key by a process not yet restarted with the new ring.

Key ages: every key and secret in use is recorded by a short id derived from it (never the value) with the
time it was first seen (`CryptoKey`); `key_ages` says how old each one in use is and whether it is past
`KEY_MAX_AGE_DAYS`, for `avatar-crm keys status` and for a report or alert to call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from models.consent import Suppression
from models.crm import Contact
from models.crypto import VERSION, Cipher, EncryptedBytes, EncryptedText, cipher_for_settings
from models.cryptokey import CryptoKey
from models.db import get_engine, session_scope
from models.settings import Settings, get_settings
from models.types import utcnow

DEFAULT_BATCH = 1000


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    column: Column[bytes]
    contexts: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column.name}"


def encrypted_columns() -> list[EncryptedColumn]:
    """Every encrypted column of the schema, found from the models (a new one is rotated without a change
    here)."""
    import models  # noqa: F401  (registers every table)

    found = []
    for table in SQLModel.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedText | EncryptedBytes):
                found.append(EncryptedColumn(table, column, column.type.contexts))  # type: ignore[arg-type]
    return found


def _raw(table: Table, names: list[str]) -> Table:
    """The table's encrypted columns read and written as the stored bytes (no decryption on the way)."""
    return Table(
        table.name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        *[Column(name, LargeBinary) for name in names],
    )


def _by_table() -> dict[str, list[EncryptedColumn]]:
    tables: dict[str, list[EncryptedColumn]] = {}
    for column in encrypted_columns():
        tables.setdefault(column.table.name, []).append(column)
    return tables


def _stale(value: Column[bytes], header: bytes) -> ColumnElement[bool]:
    """Sealed by another key (or in the old format): the first five bytes are not this key's header."""
    return and_(value.is_not(None), func.substr(value, 1, len(header)) != literal(header, LargeBinary))


@dataclass
class ColumnCount:
    column: str
    by_key: dict[str, int]  # key id ("legacy" for the pre-0011 format) -> values


def count_by_key(engine: Engine | None = None) -> list[ColumnCount]:
    """How many values each key seals, per column: an old key with none left may leave the ring."""
    engine = engine or get_engine()
    counts = []
    with engine.connect() as connection:
        for column in encrypted_columns():
            value = _raw(column.table, [column.column.name]).c[column.column.name]
            head = func.substr(value, 1, 1 + 4)
            rows = connection.execute(
                select(head, func.count()).where(value.is_not(None)).group_by(head)
            ).all()
            by_key: dict[str, int] = {}
            for header, n in rows:
                key = Cipher.key_id_of(bytes(header)) or "legacy"
                by_key[key] = by_key.get(key, 0) + n
            counts.append(ColumnCount(column.name, by_key))
    return counts


@dataclass
class RotationResult:
    resealed: int = 0
    skipped: int = 0  # changed by someone else between read and write: picked up by the next pass
    remaining: int = 0  # still sealed by another key after the last pass


def _rotate_table(
    engine: Engine,
    cipher: Cipher,
    columns: list[EncryptedColumn],
    batch: int,
    progress: Callable[[str, int], None],
) -> tuple[int, int]:
    """Re-seal one table's stale values, all its encrypted columns in one walk by id. Each row is written back
    only if none of its values changed since it was read (compare-and-set, so nothing newer is lost)."""
    names = [c.column.name for c in columns]
    table = _raw(columns[0].table, names)
    header = VERSION + bytes.fromhex(cipher.current_key_id)
    update = (
        table.update()
        .where(
            table.c.id == bindparam("row_id"),
            *[table.c[name].is_not_distinct_from(bindparam(f"old_{name}")) for name in names],
        )
        .values({name: bindparam(f"new_{name}") for name in names})
    )
    resealed = skipped = after = 0
    while True:
        with engine.begin() as connection:
            rows = connection.execute(
                select(table.c.id, *[table.c[name] for name in names])
                .where(table.c.id > after, or_(*[_stale(table.c[name], header) for name in names]))
                .order_by(table.c.id)
                .limit(batch)
            ).all()
            if not rows:
                return resealed, skipped
            after = rows[-1][0]
            changes, values = [], 0
            for row in rows:
                change: dict[str, object] = {"row_id": row[0]}
                for column, name, blob in zip(columns, names, row[1:], strict=True):
                    old = None if blob is None else bytes(blob)
                    new = old
                    if old is not None and old[:5] != header:
                        plain = (
                            cipher.decrypt_legacy(old)
                            if old[:1] != VERSION
                            else cipher.decrypt(old, column.contexts)
                        )
                        new = cipher.encrypt(plain, column.contexts[0])
                        values += 1
                    change[f"old_{name}"], change[f"new_{name}"] = old, new
                changes.append(change)
            written = max(connection.execute(update, changes).rowcount, 0)  # type: ignore[attr-defined]
        resealed += values if written == len(changes) else written
        skipped += len(changes) - written
        progress(table.name, resealed)


def rotate(
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
    batch: int = DEFAULT_BATCH,
    passes: int = 3,
    progress: Callable[[str, int], None] = lambda column, done: None,
) -> RotationResult:
    """Re-seal every value not sealed by the ring's newest key. Safe to stop at any time and run again."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.crm_database_url)
    cipher = cipher_for_settings(settings)
    result = RotationResult()
    for _ in range(passes):
        before = result.resealed
        for columns in _by_table().values():
            resealed, skipped = _rotate_table(engine, cipher, columns, batch, progress)
            result.resealed += resealed
            result.skipped += skipped
        result.remaining = sum(
            n for c in count_by_key(engine) for key, n in c.by_key.items() if key != cipher.current_key_id
        )
        if result.remaining == 0 or result.resealed == before:
            break
    return result


# --- key ages -----------------------------------------------------------------------------------------


def secret_id(secret: bytes | str) -> str:
    """A short, stable id for a secret that is not a key of the ring (webhook secrets, session secret):
    enough to tell one value from the next, far too short to test guesses of a strong secret against."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(b"avatar-crm secret id:" + raw).hexdigest()[:8]


def keys_in_use(settings: Settings) -> Iterator[tuple[str, str]]:
    """(purpose, id) of every key and secret the settings hold."""
    cipher = cipher_for_settings(settings)
    for index, kid in enumerate(cipher.key_ids):
        yield ("encryption" if index == 0 else "encryption (older)"), kid
    yield "blind-index", cipher.index_key_id
    if settings.session_secret is not None:
        yield "SESSION_SECRET", secret_id(settings.session_secret.get_secret_value())
    for name in (
        "wix_webhook_secret",
        "mobilemessage_webhook_secret",
        "sendgrid_webhook_public_key",
        "wix_api_key",
    ):
        value = getattr(settings, name, None)
        if value is None:
            continue
        text = value if isinstance(value, str) else value.get_secret_value()
        if text:
            yield name.upper(), secret_id(text)


@dataclass(frozen=True)
class KeyAge:
    purpose: str
    key_id: str
    first_seen_at: datetime
    age: timedelta
    too_old: bool


class BlindIndexKeyChanged(RuntimeError):
    """The blind-index key is not the one the stored hashes were made with: every lookup would miss."""


def _check_blind_index_key(session: Session, index_key_id: str) -> None:
    """Refuse a blind-index key other than the one recorded while hashes exist: contacts would not be found
    (and duplicated), suppressions — STOP, unsubscribes — silently not honoured. The usual cause: the oldest
    key left the ring without its value moving to CRM_BLIND_INDEX_KEY."""
    known = set(
        session.execute(select(CryptoKey.key_id).where(CryptoKey.purpose == "blind-index")).scalars()  # type: ignore[arg-type]
    )
    if not known or index_key_id in known:
        return
    hashed = (
        session.execute(select(Contact.id).limit(1)).first()
        or session.execute(select(Suppression.id).limit(1)).first()
    )
    if hashed is not None:
        raise BlindIndexKeyChanged(
            f"the blind-index key is {index_key_id}, but the stored lookup hashes were made with "
            f"{' or '.join(sorted(known))}: set CRM_BLIND_INDEX_KEY to that key's value (the ring's oldest "
            "key before it was removed); see docs/security.md"
        )


def record_keys(settings: Settings | None = None, engine: Engine | None = None) -> None:
    """Note every key and secret in use (first seen now if new; last seen now). Raises
    BlindIndexKeyChanged if the blind-index key is not the one the stored hashes were made with."""
    settings = settings or get_settings()
    now = utcnow()
    used = list(keys_in_use(settings))
    with session_scope(engine or get_engine(settings.crm_database_url)) as session:
        _check_blind_index_key(session, dict(used)["blind-index"])
        dialect = session.get_bind().dialect.name
        builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
        table = CryptoKey.__table__  # type: ignore[attr-defined]
        for purpose, kid in used:
            statement = builder(table).values(purpose=purpose.removesuffix(" (older)"), key_id=kid)
            statement = statement.values(first_seen_at=now, last_seen_at=now)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["purpose", "key_id"], set_={"last_seen_at": now}
                )
            )


def key_ages(
    settings: Settings | None = None, engine: Engine | None = None, now: datetime | None = None
) -> list[KeyAge]:
    """How long each key and secret in use has been (since first recorded), flagged past KEY_MAX_AGE_DAYS.
    Records them first, so a key never seen before starts its age now."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.crm_database_url)
    record_keys(settings, engine)
    now = now or utcnow()
    limit = timedelta(days=settings.key_max_age_days)
    used = [(p.removesuffix(" (older)"), kid, p) for p, kid in keys_in_use(settings)]
    with session_scope(engine) as session:
        rows = session.execute(
            select(CryptoKey.purpose, CryptoKey.key_id, CryptoKey.first_seen_at).where(
                or_(*[and_(CryptoKey.purpose == p, CryptoKey.key_id == kid) for p, kid, _ in used])  # type: ignore[arg-type]
            )
        ).all()
    first_seen = {(p, kid): at for p, kid, at in rows}
    ages = []
    for purpose, kid, label in used:
        at = first_seen[(purpose, kid)]
        age = now - at
        # An older ring key is on its way out (rotation): its age is not a finding.
        ages.append(KeyAge(label, kid, at, age, age > limit and label != "encryption (older)"))
    return ages
