"""data at rest: names, service and location encrypted; every value bound to its column; key ages

Patients' names and the booking's service and location were stored in clear; encrypted values carried no
associated data, so one could be swapped into another column unnoticed. This re-seals every encrypted value
in the new format (key id + associated data naming table and column), encrypts the four clear columns, adds
the blind indexes campaigns select services and locations by, and the table key ages are recorded in.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 02:40:00
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 200  # webhook bodies are up to 256 KiB each
# Columns already encrypted (old format: no key id, no associated data).
SEALED = {
    "contact": ["email", "phone"],
    "webhookevent": ["body"],
    "outboundmessage": ["recipient", "body"],
    "consentevent": ["wording"],
    "googleconnection": ["refresh_token", "access_token"],
    "oauthstate": ["code_verifier"],
}
# Columns in clear until now.
CLEAR = {"contact": ["first_name", "last_name"], "booking": ["service_name", "location"]}
SEALED_SUFFIX = "_sealed"


def _rewrite(
    table: str,
    columns: list[str],
    targets: list[str],
    change: Callable[[str, object], object],
    target_type: type[sa.types.TypeEngine[object]] = sa.LargeBinary,
) -> None:
    """Rewrite `columns` into `targets` row by row in id order, a batch per statement group; `change` gets
    the source column's name and value. Values are read and written as raw bytes/text (no type decorators)."""
    bind = op.get_bind()
    source = sa.table(table, sa.column("id", sa.Integer), *[sa.column(c) for c in columns])
    target = sa.table(table, sa.column("id", sa.Integer), *[sa.column(c, target_type()) for c in targets])
    after = 0
    while True:
        rows = bind.execute(
            sa.select(source.c.id, *[source.c[c] for c in columns])
            .where(source.c.id > after)
            .order_by(source.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        updates = []
        for row in rows:
            values = {
                target_column: change(column, row[i + 1])
                for i, (column, target_column) in enumerate(zip(columns, targets, strict=True))
            }
            updates.append({"row_id": row[0], **values})
        bind.execute(
            target.update()
            .where(target.c.id == sa.bindparam("row_id"))
            .values({c: sa.bindparam(c) for c in targets}),
            updates,
        )


def _replace_columns(table: str, columns: list[str], suffix: str) -> None:
    """Drop each column and give its rewritten twin its name. Plain ALTER TABLE (SQLite 3.35+ and PostgreSQL
    both have it): batch mode would copy the whole table, which SQLite refuses with foreign keys on."""
    for column in columns:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        op.execute(f"ALTER TABLE {table} RENAME COLUMN {column}{suffix} TO {column}")


def _cipher() -> object:
    from models.crypto import get_cipher

    return get_cipher()


def upgrade() -> None:
    cipher = None

    def get() -> object:
        nonlocal cipher
        cipher = cipher or _cipher()
        return cipher

    for table, columns in SEALED.items():

        def reseal(column: str, value: object, table: str = table) -> object:
            if value is None:
                return None
            blob = bytes(value)  # type: ignore[arg-type]
            if blob[:1] != b"\x01":
                return blob  # already new format (a re-run)
            c = get()
            return c.encrypt(c.decrypt_legacy(blob), f"{table}.{column}")  # type: ignore[attr-defined]

        _rewrite(table, columns, columns, reseal)

    for table, columns in CLEAR.items():
        with op.batch_alter_table(table) as batch_op:
            for column in columns:
                batch_op.add_column(sa.Column(column + SEALED_SUFFIX, sa.LargeBinary(), nullable=True))

        def seal(column: str, value: object, table: str = table) -> object:
            if value is None:
                return None
            return get().encrypt(str(value).encode(), f"{table}.{column}")  # type: ignore[attr-defined]

        _rewrite(table, columns, [c + SEALED_SUFFIX for c in columns], seal)
        _replace_columns(table, columns, SEALED_SUFFIX)

    with op.batch_alter_table("booking") as batch_op:
        batch_op.add_column(
            sa.Column("service_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("location_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_booking_service_key"), ["service_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_location_key"), ["location_key"], unique=False)

    def index(column: str, value: object) -> object:
        if value is None:
            return None
        from models.crm import name_key

        c = get()
        name = c.decrypt(bytes(value), f"booking.{column}").decode()  # type: ignore[attr-defined,arg-type]
        kind = "service" if column == "service_name" else "location"
        return c.blind_index(kind, name_key(name))  # type: ignore[attr-defined]

    _rewrite("booking", ["service_name", "location"], ["service_key", "location_key"], index, sa.String)

    op.create_table(
        "cryptokey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("first_seen_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("purpose", "key_id", name="uq_cryptokey_purpose_key_id"),
    )


def downgrade() -> None:
    op.drop_table("cryptokey")
    with op.batch_alter_table("booking") as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_location_key"))
        batch_op.drop_index(batch_op.f("ix_booking_service_key"))
        batch_op.drop_column("location_key")
        batch_op.drop_column("service_key")
    cipher = None

    def get() -> object:
        nonlocal cipher
        cipher = cipher or _cipher()
        return cipher

    for table, columns in CLEAR.items():
        with op.batch_alter_table(table) as batch_op:
            for column in columns:
                batch_op.add_column(sa.Column(column + "_clear", sa.Text(), nullable=True))
        clear = sa.table(
            table, sa.column("id", sa.Integer), *[sa.column(c + "_clear", sa.Text) for c in columns]
        )
        bind = op.get_bind()
        source = sa.table(
            table, sa.column("id", sa.Integer), *[sa.column(c, sa.LargeBinary) for c in columns]
        )
        for row in bind.execute(sa.select(source)).all():
            values = {
                c + "_clear": None
                if row[i + 1] is None
                else get().decrypt(bytes(row[i + 1]), f"{table}.{c}").decode()  # type: ignore[attr-defined]
                for i, c in enumerate(columns)
            }
            bind.execute(clear.update().where(clear.c.id == row[0]).values(values))
        _replace_columns(table, columns, "_clear")

    for table, columns in SEALED.items():

        def unseal(column: str, value: object, table: str = table) -> object:
            if value is None:
                return None
            c, contexts = get(), [f"{table}.{column}"]
            if (table, column) == ("outboundmessage", "recipient"):  # campaigns copy the contact's own
                contexts += ["contact.email", "contact.phone"]
            return c.encrypt_legacy(c.decrypt(bytes(value), contexts))  # type: ignore[attr-defined,arg-type]

        _rewrite(table, columns, columns, unseal)
