"""The webhook inbox: every verified provider event, committed before the provider gets its answer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlmodel import Field, SQLModel

from models.crypto import EncryptedBytes
from models.enums import InboxStatus
from models.types import UTCDateTime, utcnow


class WebhookEvent(SQLModel, table=True):
    """One provider event. `(source, dedupe_key)` is unique, so a redelivery finds the original row.

    The raw body is kept (encrypted: it carries patient details) so a flow can re-parse it and ops can
    replay it; the signature was checked on these exact bytes.
    """

    __table_args__ = (
        UniqueConstraint("source", "dedupe_key", name="uq_webhookevent_source_dedupe_key"),
        Index("ix_webhookevent_dispatch", "status", "next_dispatch_at"),
        Index("ix_webhookevent_subject", "source", "subject", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    dedupe_key: str = Field(max_length=128)
    event_type: str = Field(max_length=128)
    # What the event is about and its place in that thing's history (a Wix booking id and revision), kept in
    # the clear so a newer event can be found before it is applied: a notice it makes obsolete is not sent.
    subject: str | None = Field(default=None, max_length=128)
    revision: int | None = Field(default=None, sa_type=BigInteger)
    body: bytes = Field(sa_column=Column(EncryptedBytes("webhookevent.body"), nullable=False))
    status: str = Field(default=InboxStatus.RECEIVED, sa_type=String(16))
    # `received_at` is stamped in the transaction that commits the row; `arrived_at` when the gateway began
    # reading the request (None for rows not posted to the gateway, e.g. `wix-reconcile`'s, and rows older
    # than migration 0013): the webhook latency KPIs (reporting/kpis.py) measure from it.
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    arrived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dispatch_attempts: int = Field(default=0)
    # Flow runs found dead (crashed, cancelled, stuck) with this row still `dispatched`, each followed by a
    # new run: bounded by `dispatch_max_runs`, then the row is `failed`.
    redispatches: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_dispatch_at: datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    flow_run_id: str | None = Field(default=None, max_length=36)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # When retention emptied `body` (models/retention.py); the row, its ids and dedupe key stay, so a
    # redelivery is still answered as a duplicate and never processed twice.
    purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def idempotency_key(self) -> str:
        """The Prefect flow-run idempotency key: a redelivered event can never start a second run."""
        return f"{self.source}:{self.dedupe_key}"


def insert_new_events(dialect_name: str) -> Insert:
    """`INSERT … ON CONFLICT (source, dedupe_key) DO NOTHING` into the inbox: an event already stored keeps
    its row (and status), so storing it again is harmless. Values are given at execution."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return insert(WebhookEvent.__table__).on_conflict_do_nothing(  # type: ignore[attr-defined]
        index_elements=["source", "dedupe_key"]
    )
