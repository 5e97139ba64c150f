"""Who read or changed what about patients, for a regulator: an append-only log chained by hash.

`AuditLog` records what the system did (a booking applied, a reminder planned). This log records what a
*person* did: a staff member in the console or someone at the server's shell through the CLI (as their OS
user) — a view of patient details, a change of consent or of a role, a sign-in, a refusal. Each row holds the
hash of the one before it, so an edited, removed or inserted row breaks the chain at that point
(`avatar-crm audit verify`). The database refuses UPDATE and DELETE on the table (a trigger, on SQLite and
PostgreSQL alike); the code has no path that does either. Rows never hold patient details in clear: subjects
are ids ("contact:42"), the reason is the person's own words about why.

Appends are serialised so each row chains to the last: SQLite's write lock does it; PostgreSQL takes a
transaction-scoped advisory lock. People's actions are few, so the lock costs nothing measurable.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, Session, SQLModel, select

from models.types import UTCDateTime, utcnow

GENESIS = "0" * 64  # the "previous hash" of the first row
_CHAIN_LOCK = 0x61756474  # "audt": the advisory lock key that serialises appends on PostgreSQL


class AccessAudit(SQLModel, table=True):
    # The viewer reads newest first by (at, id), filtered: every filter index ends with both (migration 0018).
    __table_args__ = (
        Index("ix_accessaudit_at_id", "at", "id"),
        Index("ix_accessaudit_actor_at", "actor", "at", "id"),
        Index("ix_accessaudit_action_at", "action", "at", "id"),
        Index("ix_accessaudit_subject_at", "subject", "at", "id"),
        Index("ix_accessaudit_outcome_at", "outcome", "at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=254)  # a staff member's email, or "os:<user>" at the shell
    role: str = Field(max_length=32)  # the role they acted in ("cli" at the shell)
    client_address: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=64)  # e.g. "patient.phone_revealed", "consent.granted"
    subject: str | None = Field(default=None, max_length=64)  # e.g. "contact:42", "inbox_event:8"
    outcome: str = Field(default="allowed", max_length=16)  # "allowed" or "denied"
    reason: str | None = Field(default=None, max_length=500)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    previous_hash: str = Field(max_length=64)
    row_hash: str = Field(max_length=64, unique=True)


def _digest(previous_hash: str, row: AccessAudit) -> str:
    fields = {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "role": row.role,
        "client_address": row.client_address,
        "action": row.action,
        "subject": row.subject,
        "outcome": row.outcome,
        "reason": row.reason,
        "detail": row.detail,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{previous_hash}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who acts, for the audit: a staff member's email (or "os:<user>" at the shell), the role they act in
    and the address they act from (none at the shell)."""

    email: str
    role: str
    client_address: str | None = None


def shell_actor() -> Actor:
    """Who is at the shell: the OS user the CLI runs as, in the role "cli"."""
    try:
        user = f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "os:unknown"
    return Actor(email=user, role="cli")


def record(
    session: Session,
    who: Actor,
    *,
    action: str,
    subject: str | None = None,
    outcome: str = "allowed",
    reason: str | None = None,
    **detail: object,
) -> AccessAudit:
    """Append one row of what `who` did, chained to the last, in the caller's transaction (so the row exists
    exactly when what it records does)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    last = session.exec(select(AccessAudit).order_by(AccessAudit.id.desc()).limit(1)).first()  # type: ignore[union-attr]
    row = AccessAudit(
        id=(last.id or 0) + 1 if last else 1,
        actor=who.email[:254],
        role=who.role,
        client_address=who.client_address,
        action=action,
        subject=subject,
        outcome=outcome,
        reason=reason[:500] if reason else None,
        detail={k: v for k, v in detail.items() if v is not None},
        previous_hash=last.row_hash if last else GENESIS,
        row_hash="",
    )
    row.row_hash = _digest(row.previous_hash, row)
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class Verdict:
    rows: int
    first_broken: int | None  # the id of the first row whose chain does not hold
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.first_broken is None


def verify(session: Session, page: int = 5000) -> Verdict:
    """Walk the chain from the first row: each row's previous hash is the last row's hash, its own hash is
    its content's, and ids run on without a gap (a removed row leaves one)."""
    previous, expected_id, rows = GENESIS, 1, 0
    while True:
        batch = session.exec(
            select(AccessAudit).where(AccessAudit.id >= expected_id).order_by(AccessAudit.id).limit(page)  # type: ignore[arg-type,operator]
        ).all()
        if not batch:
            return Verdict(rows, None, None)
        for row in batch:
            if row.id != expected_id:
                return Verdict(rows, expected_id, f"row {expected_id} is missing")
            if row.previous_hash != previous:
                return Verdict(rows, row.id, f"row {row.id} does not follow row {expected_id - 1}")
            if _digest(previous, row) != row.row_hash:
                return Verdict(rows, row.id, f"row {row.id} was changed after it was written")
            previous, expected_id, rows = row.row_hash, expected_id + 1, rows + 1
