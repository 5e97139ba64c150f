"""The clinic's staff list: who may sign in to the console and in which role. Every change is in the access
audit, in the same transaction, with who made it, from where and why.

The list never loses its last active admin (no removal or demotion of them): without one, nobody could manage
staff from the console and the clinic would need the server's shell to recover. The admins are read with a
row lock, so two admins demoting each other at the same moment cannot both succeed on PostgreSQL (SQLite
serialises writers anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session, select

from models import StaffMember, StaffRole
from models.access_audit import Actor, record
from models.types import utcnow

# Enough to refuse what is plainly not an address; the sign-in checks the address Google verified.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class StaffError(ValueError):
    """A staff change that cannot be made, with the reason a person can act on."""


@dataclass(frozen=True)
class Change:
    email: str
    role: StaffRole
    what: str  # "added", "role changed", "unchanged", "removed"


def normalise(email: str) -> str:
    address = email.strip().lower()
    if not _EMAIL.fullmatch(address):
        raise StaffError(f"not an email address: {email!r}")
    return address


def _find(session: Session, address: str) -> StaffMember | None:
    return session.exec(select(StaffMember).where(StaffMember.email == address)).first()


def _refuse_if_last_admin(session: Session, member: StaffMember, doing: str) -> None:
    """Refuse to take the admin role from the only active admin (locked: see the module's note)."""
    if member.role != StaffRole.ADMIN or member.removed_at is not None:
        return
    admins = session.exec(
        select(StaffMember.id)
        .where(StaffMember.role == StaffRole.ADMIN, StaffMember.removed_at.is_(None))  # type: ignore[union-attr]
        .with_for_update()
    ).all()
    if [member.id] == list(admins):
        raise StaffError(f"{member.email} is the last admin: add another admin before {doing} them")


def add(
    session: Session,
    email: str,
    role: StaffRole,
    *,
    actor: Actor,
    reason: str | None = None,
) -> Change:
    """Add a staff member, give a current one another role, or bring back one who was removed."""
    address = normalise(email)
    member = _find(session, address)
    if member is not None and member.removed_at is None:
        return change_role(session, address, role, actor=actor, reason=reason)
    if member is None:
        member = StaffMember(email=address, role=role, added_by=actor.email)
    else:  # removed earlier: back on the list, as of now
        member.role, member.removed_at, member.added_by, member.added_at = role, None, actor.email, utcnow()
    session.add(member)
    session.flush()
    record(
        session,
        actor,
        action="staff.added",
        subject=f"staff:{member.id}",
        reason=reason,
        new_role=role.value,
    )
    return Change(address, role, "added")


def change_role(
    session: Session,
    email: str,
    role: StaffRole,
    *,
    actor: Actor,
    reason: str | None = None,
) -> Change:
    """Give an active staff member another role; it applies from their next request (the console re-reads
    the role every time)."""
    address = normalise(email)
    member = _find(session, address)
    if member is None or member.removed_at is not None:
        raise StaffError(f"{address} is not on the staff list")
    if member.role == role:
        return Change(address, role, "unchanged")
    if role != StaffRole.ADMIN:
        _refuse_if_last_admin(session, member, "changing the role of")
    previous = member.role
    member.role = role
    session.add(member)
    session.flush()
    record(
        session,
        actor,
        action="staff.role_changed",
        subject=f"staff:{member.id}",
        reason=reason,
        new_role=role.value,
        old_role=previous,
    )
    return Change(address, role, "role changed")


def remove(
    session: Session,
    email: str,
    *,
    actor: Actor,
    reason: str | None = None,
) -> Change:
    """Take a member off the list (kept, marked removed); their console sessions end at their next request."""
    address = normalise(email)
    member = _find(session, address)
    if member is None or member.removed_at is not None:
        raise StaffError(f"{address} is not on the staff list")
    _refuse_if_last_admin(session, member, "removing")
    member.removed_at = utcnow()
    session.add(member)
    record(
        session,
        actor,
        action="staff.removed",
        subject=f"staff:{member.id}",
        reason=reason,
    )
    return Change(address, StaffRole(member.role), "removed")


def current(session: Session) -> list[StaffMember]:
    return list(
        session.exec(
            select(StaffMember).where(StaffMember.removed_at.is_(None)).order_by(StaffMember.email)  # type: ignore[union-attr]
        ).all()
    )


def everyone(session: Session) -> list[StaffMember]:
    """The active members first, then those removed (newest removal first), each group by address."""
    members = session.exec(select(StaffMember).order_by(StaffMember.email)).all()
    active = [m for m in members if m.removed_at is None]
    removed = [m for m in members if m.removed_at is not None]
    removed.sort(key=lambda m: m.removed_at, reverse=True)  # type: ignore[arg-type,return-value]
    return active + removed
