"""The staff task queue: created where the system decides a person must act, worked in the console.

A task is opened in the transaction that decides it is needed (SMS triage routing a reply to staff, a
patient's message failing for good), once per cause (`key`), so a retried flow run never doubles it. Reading a
task's reply, revealing the patient's number and closing the task are each one access-audit row, written in
the same transaction as what they record; the queue itself shows no phone number and no reply text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, tuple_
from sqlmodel import Session, select

from models import (
    Booking,
    Channel,
    Contact,
    MessageKind,
    OutboundMessage,
    Purpose,
    StaffAttention,
    StaffTask,
    StaffTaskKind,
    StaffTaskStatus,
)
from models.access_audit import Actor, record
from models.types import utcnow

_FROM_ATTENTION = {
    StaffAttention.CANCEL_REQUESTED: StaffTaskKind.CANCEL_REQUESTED,
    StaffAttention.RESCHEDULE_REQUESTED: StaffTaskKind.RESCHEDULE_REQUESTED,
    StaffAttention.REPLY_NEEDS_REVIEW: StaffTaskKind.REPLY_NEEDS_REVIEW,
}
# Messages whose failure a person must follow up: what a patient needed to hear about their booking. A
# campaign's failures are counted on the campaign; staff notices failing are the ops alerts' business.
_FOLLOWED_UP = {Channel.SMS, Channel.EMAIL}
NOTE_MAX = 1000


class TaskError(LookupError):
    """The task is not there, or not in a state for what was asked."""


def _open(session: Session, task: StaffTask) -> StaffTask | None:
    if session.exec(select(StaffTask.id).where(StaffTask.key == task.key)).first() is not None:
        return None  # a retried run: the task is already there
    session.add(task)
    session.flush()
    return task


def open_for_reply(
    session: Session,
    *,
    event_id: int,
    attention: StaffAttention,
    reply_text: str,
    summary: str,
    contact_id: int | None,
    booking_id: int | None,
) -> StaffTask | None:
    """A patient's SMS a person must answer (asked to cancel or move, or could not be read)."""
    return _open(
        session,
        StaffTask(
            key=f"reply:{event_id}",
            kind=_FROM_ATTENTION[attention],
            inbox_event_id=event_id,
            contact_id=contact_id,
            booking_id=booking_id,
            reply_text=reply_text,
            summary=summary[:200],
        ),
    )


def open_for_failed_message(session: Session, message: OutboundMessage) -> StaffTask | None:
    """A transactional message to a patient failed for good: someone should reach them another way."""
    if (
        message.id is None
        or message.contact_id is None
        or message.purpose != Purpose.TRANSACTIONAL
        or message.channel not in _FOLLOWED_UP
        or message.kind == MessageKind.STAFF_NOTIFICATION
    ):
        return None
    return _open(
        session,
        StaffTask(
            key=f"message:{message.id}",
            kind=StaffTaskKind.MESSAGE_FAILED,
            outbound_message_id=message.id,
            contact_id=message.contact_id,
            booking_id=message.booking_id,
            summary=f"{message.channel} {message.kind.replace('_', ' ')} could not be delivered",
        ),
    )


@dataclass(frozen=True)
class TaskRow:
    """One task as the queue lists it: no phone, no reply text."""

    id: int
    kind: str
    status: str
    created_at: datetime
    summary: str
    patient: str
    booking_start: datetime | None
    booking_timezone: str | None
    service: str | None
    done_by: str | None = None


def _row(task: StaffTask, contact: Contact | None, booking: Booking | None) -> TaskRow:
    return TaskRow(
        id=task.id or 0,
        kind=task.kind,
        status=task.status,
        created_at=task.created_at,
        summary=task.summary,
        patient=contact.display_name if contact else "unknown number",
        booking_start=booking.start_at if booking else None,
        booking_timezone=booking.timezone if booking else None,
        service=booking.service_name if booking else None,
        done_by=task.done_by,
    )


QUEUE_PAGE = 50  # a tablet's worth; the rest by keyset pages


def open_tasks(
    session: Session, after: int | None = None, limit: int = QUEUE_PAGE
) -> tuple[list[TaskRow], int, int | None]:
    """The oldest open tasks first (they have waited longest), and how many are open in all, and the
    `after=` of the next page (keyset on (created_at, id) past task `after`; None on the last page)."""
    query = (
        select(StaffTask, Contact, Booking)
        .outerjoin(Contact, StaffTask.contact_id == Contact.id)  # type: ignore[arg-type]
        .outerjoin(Booking, StaffTask.booking_id == Booking.id)  # type: ignore[arg-type]
        .where(StaffTask.status == StaffTaskStatus.OPEN)
    )
    if after is not None:
        mark = session.get(StaffTask, after)
        if mark is not None:
            query = query.where(tuple_(StaffTask.created_at, StaffTask.id) > (mark.created_at, mark.id))
    rows = session.exec(
        query.order_by(StaffTask.created_at, StaffTask.id).limit(limit + 1)  # type: ignore[arg-type]
    ).all()
    total = session.exec(
        select(func.count()).select_from(StaffTask).where(StaffTask.status == StaffTaskStatus.OPEN)
    ).one()
    page = [_row(task, contact, booking) for task, contact, booking in rows[:limit]]
    return page, int(total), page[-1].id if len(rows) > limit else None


def get_task(session: Session, task_id: int) -> TaskRow:
    task = session.get(StaffTask, task_id)
    if task is None:
        raise TaskError(f"task {task_id} does not exist")
    contact = session.get(Contact, task.contact_id) if task.contact_id else None
    booking = session.get(Booking, task.booking_id) if task.booking_id else None
    return _row(task, contact, booking)


def read_reply(session: Session, task_id: int, actor: Actor) -> str | None:
    """The patient's own words (a view of patient details: one audit row), or None for a task without a
    reply (a failed message)."""
    task = session.get(StaffTask, task_id)
    if task is None:
        raise TaskError(f"task {task_id} does not exist")
    if task.reply_text is None:
        return None
    _audit(session, actor, "patient.reply_read", task, subject=f"inbox_event:{task.inbox_event_id}")
    return task.reply_text


def reveal_phone(session: Session, task_id: int, actor: Actor) -> str | None:
    """The number to call the patient on, asked for explicitly: one audit row naming the contact."""
    task = session.get(StaffTask, task_id)
    if task is None:
        raise TaskError(f"task {task_id} does not exist")
    contact = session.get(Contact, task.contact_id) if task.contact_id else None
    if contact is None or not contact.phone:
        return None
    _audit(session, actor, "patient.phone_revealed", task, subject=f"contact:{contact.id}")
    return contact.phone


def mark_done(session: Session, task_id: int, note: str, actor: Actor) -> StaffTask:
    """Close a task with what was done; the booking stops asking for attention."""
    task = session.get(StaffTask, task_id)
    if task is None:
        raise TaskError(f"task {task_id} does not exist")
    if task.status != StaffTaskStatus.OPEN:
        raise TaskError(f"task {task_id} is already done")
    note = note.strip()
    if not note:
        raise TaskError("say what was done (a short note)")
    task.status, task.done_at, task.done_by = StaffTaskStatus.DONE, utcnow(), actor.email
    task.done_note = note[:NOTE_MAX]
    session.add(task)
    if task.booking_id is not None and task.kind != StaffTaskKind.MESSAGE_FAILED:
        booking = session.get(Booking, task.booking_id)
        if booking is not None and booking.staff_attention:
            booking.staff_attention = None
            session.add(booking)
    # The note is the person's account of a call with a patient: kept (encrypted) on the task, not in the log.
    _audit(session, actor, "staff_task.done", task, subject=f"staff_task:{task.id}")
    return task


def _audit(session: Session, actor: Actor, action: str, task: StaffTask, *, subject: str) -> None:
    record(
        session,
        actor,
        action=action,
        subject=subject,
        task=task.id,
    )
