"""The migrations build exactly the schema the models describe (on SQLite and, in CI, PostgreSQL).

A model change without its migration would pass every other test (they run on the migrated database, but
only touch what they use) and fail in the clinic's database on the first query that needs it.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import models
from models.db import get_engine

pytestmark = pytest.mark.db


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    with get_engine(database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_the_outbox_due_index_leaves_campaign_rows_out(database_url: str) -> None:
    """The sweep's index holds reminders only (a campaign finds its rows by campaign_id), and status has no
    index of its own: it would be rewritten on every status change and serve nothing."""
    with get_engine(database_url).connect() as connection:
        indexes = {ix["name"]: ix for ix in inspect(connection).get_indexes("outboundmessage")}
        due = indexes["ix_outboundmessage_due"]
        assert due["column_names"] == ["status", "send_after"]
        options = due.get("dialect_options", {})
        where = [str(options[k]) for k in ("sqlite_where", "postgresql_where") if options.get(k) is not None]
        assert [w.replace("(", "").replace(")", "") for w in where] == ["campaign_id IS NULL"]
        assert not [name for name, ix in indexes.items() if ix["column_names"] == ["status"]]
    # ... as the model says (alembic's comparison above does not look at an index's WHERE)
    (model_due,) = [
        ix for ix in models.OutboundMessage.__table__.indexes if ix.name == "ix_outboundmessage_due"
    ]  # type: ignore[attr-defined]
    dialect = get_engine(database_url).dialect.name
    assert str(model_due.dialect_options[dialect]["where"]) == "campaign_id IS NULL"
