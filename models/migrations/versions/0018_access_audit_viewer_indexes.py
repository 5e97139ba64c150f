"""accessaudit: indexes for the audit viewer's filters, each ending with the id (newest first, keyset pages)

The single-column actor and action indexes are replaced by (actor, id) and (action, id); subject and outcome
get the same. On PostgreSQL a filtered page then reads its 100 rows straight from the index in id order
instead of sorting every match.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 19:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = {
    "ix_accessaudit_actor_id": ["actor", "id"],
    "ix_accessaudit_action_id": ["action", "id"],
    "ix_accessaudit_subject_id": ["subject", "id"],
    "ix_accessaudit_outcome_id": ["outcome", "id"],
}


def upgrade() -> None:
    # Plain index operations (no batch): a batch could rebuild the table on SQLite and lose its triggers.
    for name, columns in _NEW.items():
        op.create_index(name, "accessaudit", columns, unique=False)
    op.drop_index("ix_accessaudit_actor", table_name="accessaudit")
    op.drop_index("ix_accessaudit_action", table_name="accessaudit")


def downgrade() -> None:
    op.create_index("ix_accessaudit_action", "accessaudit", ["action"], unique=False)
    op.create_index("ix_accessaudit_actor", "accessaudit", ["actor"], unique=False)
    for name in _NEW:
        op.drop_index(name, table_name="accessaudit")
