"""The staff list and the access audit: every change and every read of patient details by a person is a row,
rows chain by hash, the database refuses to change or remove them, and `audit verify` finds the row that was
changed or removed anyway (by someone who dropped the guard)."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from sqlmodel import select
from typer.testing import CliRunner

from deployments.cli import app as cli
from models import AccessAudit, StaffMember, WebhookEvent, session_scope
from models.access_audit import Actor, record, verify
from models.db import get_engine
from models.migrate import upgrade

pytestmark = pytest.mark.db
ME = f"os:{getpass.getuser()}"
CLI = Path(sys.executable).parent / "avatar-crm"


def newest(count: int) -> list[AccessAudit]:
    with session_scope() as session:
        rows = session.exec(select(AccessAudit).order_by(AccessAudit.id.desc()).limit(count)).all()  # type: ignore[union-attr]
    return list(reversed(rows))


@pytest.fixture
def audit_db(fresh_database_url: str) -> Iterator[str]:
    """A database of its own, migrated, with three audit rows (tests here break its chain on purpose)."""
    upgrade(fresh_database_url)
    engine = get_engine(fresh_database_url)
    with session_scope(engine) as session:
        record(
            session,
            Actor("ana@clinic.example", "reception", "10.0.0.5"),
            action="patient.phone_revealed",
            subject="contact:7",
            reason="patient asked to move to Thursday",
        )
        record(
            session,
            Actor("ops@clinic.example", "ops"),
            action="inbox_event.replayed",
            subject="inbox_event:3",
        )
        record(session, Actor(ME, "cli"), action="staff.added", subject="staff:1", new_role="admin")
    yield fresh_database_url
    engine.dispose()


def _drop_guard(url: str) -> None:
    """What someone with the database's password could do: remove the append-only trigger."""
    with get_engine(url).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("DROP TRIGGER accessaudit_append_only ON accessaudit"))
        else:
            connection.execute(text("DROP TRIGGER accessaudit_no_update"))
            connection.execute(text("DROP TRIGGER accessaudit_no_delete"))


def test_rows_chain_one_to_the_next(audit_db: str) -> None:
    with session_scope(get_engine(audit_db)) as session:
        verdict = verify(session)
        rows = session.exec(select(AccessAudit).order_by(AccessAudit.id)).all()  # type: ignore[arg-type]
    assert verdict.intact and verdict.rows == 3
    assert [r.id for r in rows] == [1, 2, 3]
    assert rows[1].previous_hash == rows[0].row_hash and rows[2].previous_hash == rows[1].row_hash


@pytest.mark.parametrize(
    "statement",
    ["UPDATE accessaudit SET reason = 'nothing to see' WHERE id = 1", "DELETE FROM accessaudit WHERE id = 2"],
)
def test_the_database_refuses_to_change_or_remove_a_row(audit_db: str, statement: str) -> None:
    with pytest.raises(DatabaseError, match="append-only"), get_engine(audit_db).begin() as connection:
        connection.execute(text(statement))
    with session_scope(get_engine(audit_db)) as session:
        assert verify(session).intact


def test_verify_finds_a_row_edited_directly_in_the_database(audit_db: str) -> None:
    _drop_guard(audit_db)
    with get_engine(audit_db).begin() as connection:
        connection.execute(text("UPDATE accessaudit SET subject = 'contact:8' WHERE id = 1"))
    with session_scope(get_engine(audit_db)) as session:
        verdict = verify(session)
    assert (verdict.first_broken, verdict.problem) == (1, "row 1 was changed after it was written")


def test_verify_finds_a_removed_row_and_the_cli_exits_non_zero(audit_db: str) -> None:
    _drop_guard(audit_db)
    with get_engine(audit_db).begin() as connection:
        connection.execute(text("DELETE FROM accessaudit WHERE id = 2"))
    checked = subprocess.run(
        [str(CLI), "audit", "verify"],
        env={**os.environ, "CRM_DATABASE_URL": audit_db},
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 1
    assert "BROKEN after 1 good rows: row 2 is missing" in checked.stderr


def test_staff_from_the_cli_each_change_audited_as_the_os_user(db: str) -> None:
    runner = CliRunner()
    added = runner.invoke(cli, ["staff", "add", "Boss@Clinic.Example", "--role", "admin"])
    assert added.exit_code == 0, added.output
    assert "boss@clinic.example: added (admin)" in added.output
    assert runner.invoke(cli, ["staff", "add", "ana@clinic.example", "--role", "reception"]).exit_code == 0
    moved = runner.invoke(cli, ["staff", "add", "ana@clinic.example", "--role", "marketer"])
    assert "role changed (marketer)" in moved.output

    listed = runner.invoke(cli, ["staff", "list"])
    assert [line.split()[:2] for line in listed.output.splitlines()] == [
        ["ana@clinic.example", "marketer"],
        ["boss@clinic.example", "admin"],
    ]
    last_admin = runner.invoke(cli, ["staff", "remove", "boss@clinic.example"])
    assert last_admin.exit_code == 1 and "last admin" in last_admin.output
    assert runner.invoke(cli, ["staff", "remove", "ana@clinic.example"]).exit_code == 0
    with session_scope() as session:
        ana = session.exec(select(StaffMember).where(StaffMember.email == "ana@clinic.example")).one()
    assert ana.removed_at is not None

    rows = newest(4)
    assert [(r.actor, r.role, r.action) for r in rows] == [
        (ME, "cli", "staff.added"),
        (ME, "cli", "staff.added"),
        (ME, "cli", "staff.role_changed"),
        (ME, "cli", "staff.removed"),
    ]
    assert rows[2].detail == {"new_role": "marketer", "old_role": "reception"}
    with session_scope() as session:
        assert verify(session).intact


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["staff", "add", "x@clinic.example", "--role", "boss"],
            "must be one of: reception, marketer, ops, admin",
        ),
        (["staff", "add", "not-an-address", "--role", "ops"], "not an email address"),
    ],
)
def test_a_bad_staff_change_is_refused_and_changes_nothing(db: str, args: list[str], says: str) -> None:
    before = newest(1)
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and says in refused.output
    assert newest(1) == before


def test_reading_an_event_body_at_the_shell_is_audited_with_the_reason(db: str) -> None:
    with session_scope() as session:
        row = WebhookEvent(
            source="wix", dedupe_key="audit-read", event_type="wix.bookings.v2.booking_created", body=b"{}"
        )
        session.add(row)
        session.flush()
        event_id = row.id
    shown = CliRunner().invoke(
        cli, ["events", "show", str(event_id), "--reason", "patient called about a move"]
    )
    assert shown.exit_code == 0, shown.output
    (row,) = newest(1)
    assert (row.actor, row.role, row.action, row.subject, row.reason) == (
        ME,
        "cli",
        "inbox_event.body_viewed",
        f"inbox_event:{event_id}",
        "patient called about a move",
    )
