"""accessaudit: indexes for the audit viewer's filters, each ending with (at, id) (newest first, keyset pages)

The single-column at, actor and action indexes are replaced by (at, id), (actor, at, id) and (action, at, id);
subject and outcome get the same. A filtered page, with or without a date range, then reads its 100 rows
straight from one index in order instead of sorting every match.

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
    "ix_accessaudit_at_id": ["at", "id"],
    "ix_accessaudit_actor_at": ["actor", "at", "id"],
    "ix_accessaudit_action_at": ["action", "at", "id"],
    "ix_accessaudit_subject_at": ["subject", "at", "id"],
    "ix_accessaudit_outcome_at": ["outcome", "at", "id"],
}
_OLD = {"ix_accessaudit_at": ["at"], "ix_accessaudit_actor": ["actor"], "ix_accessaudit_action": ["action"]}


def upgrade() -> None:
    # Plain index operations (no batch): a batch could rebuild the table on SQLite and lose its triggers.
    for name, columns in _NEW.items():
        op.create_index(name, "accessaudit", columns, unique=False)
    for name in _OLD:
        op.drop_index(name, table_name="accessaudit")


def downgrade() -> None:
    for name, columns in _OLD.items():
        op.create_index(name, "accessaudit", columns, unique=False)
    for name in _NEW:
        op.drop_index(name, table_name="accessaudit")
