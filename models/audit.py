"""The audit log: who changed what, for the clinic's records. Details never hold contact data in clear."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class AuditLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    entity_type: str = Field(max_length=32)
    entity_id: int | None = Field(default=None, index=True)
    flow_run_id: str | None = Field(default=None, max_length=36)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def run_audit(actor: str, action: str, entity_type: str, entity_id: int | None, **detail: object) -> AuditLog:
    """An audit row of what a flow run did, stamped with the run's id (None outside a run)."""
    from prefect.runtime import flow_run

    return AuditLog(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        detail=detail,
    )
