"""Retention empties a done staff task's copy of the patient's reply and its note once RETENTION_MESSAGE_DAYS
have passed since it was done; an open task, and a task done more recently, keep theirs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from models import Settings, StaffTask, StaffTaskKind, StaffTaskStatus, session_scope
from models.retention import purge
from models.types import utcnow

pytestmark = pytest.mark.db


def _task(key: str, status: StaffTaskStatus, done_days_ago: int | None) -> None:
    now = utcnow()
    with session_scope() as session:
        session.add(
            StaffTask(
                key=key,
                kind=StaffTaskKind.RESCHEDULE_REQUESTED,
                status=status,
                reply_text=f"can we move it, {key}?",
                done_note="called, moved" if done_days_ago is not None else None,
                done_at=now - timedelta(days=done_days_ago) if done_days_ago is not None else None,
            )
        )


def test_done_tasks_lose_the_patients_words_after_the_retention_period(db: str) -> None:
    settings = Settings(crm_database_url=db, retention_message_days=90)  # type: ignore[call-arg]
    _task("old-done", StaffTaskStatus.DONE, 100)
    _task("recent-done", StaffTaskStatus.DONE, 10)
    _task("open", StaffTaskStatus.OPEN, None)

    assert purge(utcnow(), settings, dry_run=True)["task_texts"] == 1
    assert purge(utcnow(), settings)["task_texts"] == 1
    assert purge(utcnow(), settings)["task_texts"] == 0  # nothing twice

    with session_scope() as session:
        tasks = {t.key: t for t in session.exec(select(StaffTask)).all()}
        stored = dict(session.execute(text("SELECT key, reply_text FROM stafftask")).all())
    assert tasks["old-done"].reply_text is None and tasks["old-done"].done_note is None
    assert tasks["old-done"].done_at is not None and tasks["old-done"].status == StaffTaskStatus.DONE
    assert tasks["recent-done"].reply_text == "can we move it, recent-done?"
    assert tasks["recent-done"].done_note == "called, moved"
    assert tasks["open"].reply_text == "can we move it, open?"
    assert stored["old-done"] is None and b"can we move" not in stored["open"]  # encrypted at rest
