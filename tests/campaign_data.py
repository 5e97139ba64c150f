"""Patients for campaign tests, written in one insert (a campaign test needs thousands)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from models import Contact, session_scope
from models.crypto import get_cipher


def seed(count: int, *, channel: str = "email", consent: bool = True, offset: int = 0) -> dict[str, int]:
    """`count` patients (`patient{i}@example.com` or `+6141{i:07d}`), with marketing consent on `channel`
    unless `consent=False`; returns address → contact id."""
    cipher = get_cipher()
    now = datetime.now(UTC)
    kind = "email" if channel == "email" else "phone"
    rows = []
    for i in range(offset, offset + count):
        address = f"patient{i}@example.com" if channel == "email" else f"+6141{i:07d}"
        rows.append(
            {
                "first_name": f"Pat{i}",
                "last_name": "Lee",
                kind: address,
                f"{kind}_hash": cipher.blind_index(kind, address),
                f"{channel}_marketing_consent_at": now - timedelta(days=30) if consent else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    with session_scope() as session:
        session.execute(insert(Contact), rows)
    column = Contact.email if channel == "email" else Contact.phone
    wanted = {row[kind] for row in rows}
    with session_scope() as session:
        return {a: i for i, a in session.execute(select(Contact.id, column)).all() if a in wanted}
