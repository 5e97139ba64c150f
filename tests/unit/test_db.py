"""The session helpers every bulk statement uses, on SQLite and (in CI) PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlmodel import select

from models import Contact, session_scope
from models.crypto import get_cipher
from models.db import in_values

pytestmark = pytest.mark.db


def _contacts(count: int) -> list[int]:
    with session_scope() as session:
        rows = [
            Contact(first_name=f"P{i}", email_hash=get_cipher().blind_index("email", f"p{i}@example.com"))
            for i in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]  # type: ignore[misc]


def test_in_values_selects_exactly_the_given_ids_however_many(db: str) -> None:
    ids = _contacts(2_000)  # 1,500 of them asked for, in no particular order
    wanted = sorted(ids[250:1750], key=lambda i: (i * 7919) % 2003)
    with session_scope() as session:
        found = session.exec(select(Contact.id).where(in_values(session, Contact.id, wanted))).all()  # type: ignore[call-overload]
        moved = session.execute(
            update(Contact)
            .where(in_values(session, Contact.id, wanted[:10]))  # type: ignore[arg-type]
            .values(wix_contact_id="moved")
            .returning(Contact.id)
        )
        moved_ids = sorted(moved.scalars())
    assert sorted(found) == sorted(wanted)
    assert moved_ids == sorted(wanted[:10])
    with session_scope() as session:
        moved_now = session.exec(select(Contact.id).where(Contact.wix_contact_id == "moved")).all()  # type: ignore[call-overload]
    assert sorted(moved_now) == moved_ids  # no ORDER BY: PostgreSQL returns updated rows where it stored them


def test_in_values_matches_text_and_nothing_when_empty(db: str) -> None:
    _contacts(5)
    wanted = [get_cipher().blind_index("email", f"p{i}@example.com") for i in (1, 3)] + ["not-a-hash"]
    with session_scope() as session:
        names = session.exec(
            select(Contact.first_name).where(in_values(session, Contact.email_hash, wanted))  # type: ignore[call-overload]
        ).all()
        none = session.exec(select(Contact.id).where(in_values(session, Contact.id, []))).all()  # type: ignore[call-overload]
    assert sorted(names) == ["P1", "P3"]
    assert none == []
