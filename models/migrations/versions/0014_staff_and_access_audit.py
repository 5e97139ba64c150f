"""staff and their roles; the access audit (append-only, chained by hash)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The access audit refuses UPDATE and DELETE whoever asks: the code has no such path, and a person with the
# database's password must not have an easy one either (dropping the trigger is visible, and the hash chain
# still shows what was changed: `avatar-crm audit verify`).
_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER accessaudit_no_{verb.lower()} BEFORE {verb} ON accessaudit "
    "BEGIN SELECT RAISE(ABORT, 'the access audit is append-only'); END"
    for verb in ("UPDATE", "DELETE")
]
_POSTGRESQL_FUNCTION = """
CREATE FUNCTION accessaudit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the access audit is append-only';
END $$
"""
_POSTGRESQL_TRIGGER = (
    "CREATE TRIGGER accessaudit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON accessaudit "
    "FOR EACH STATEMENT EXECUTE FUNCTION accessaudit_append_only()"
)


def upgrade() -> None:
    op.create_table(
        "staffmember",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("added_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("removed_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "accessaudit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("client_address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("previous_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("row_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("row_hash"),
    )
    with op.batch_alter_table("accessaudit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accessaudit_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_accessaudit_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_accessaudit_action"), ["action"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_FUNCTION)
        op.execute(_POSTGRESQL_TRIGGER)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS accessaudit_append_only ON accessaudit")
        op.execute("DROP FUNCTION IF EXISTS accessaudit_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS accessaudit_no_{verb}")
    op.drop_table("accessaudit")
    op.drop_table("staffmember")
