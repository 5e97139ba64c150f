"""The migrations build exactly the schema the models describe (on SQLite and, in CI, PostgreSQL).

A model change without its migration would pass every other test (they run on the migrated database, but
only touch what they use) and fail in the clinic's database on the first query that needs it.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table)
from models.db import get_engine

pytestmark = pytest.mark.db


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    with get_engine(database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_the_outbox_status_is_indexed_once(database_url: str) -> None:
    """Lookups by status use the (status, send_after) index; a status-only index would only slow writes."""
    from sqlalchemy import inspect

    indexes = {
        ix["name"]: ix["column_names"]
        for ix in inspect(get_engine(database_url)).get_indexes("outboundmessage")
    }
    assert indexes["ix_outboundmessage_due"] == ["status", "send_after"]
    assert not [name for name, columns in indexes.items() if columns == ["status"]]
