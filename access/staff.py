"""The clinic's staff list: who may sign in to the console and in which role. Every change is in the access
audit, in the same transaction, with who made it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session, select

from models import StaffMember, StaffRole
from models.access_audit import record
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


def add(session: Session, email: str, role: StaffRole, *, by: str, by_role: str) -> Change:
    """Add a staff member, give a current one another role, or bring back one who was removed."""
    address = normalise(email)
    member = session.exec(select(StaffMember).where(StaffMember.email == address)).first()
    if member is not None and member.removed_at is None and member.role == role:
        return Change(address, role, "unchanged")
    if member is None:
        member = StaffMember(email=address, role=role, added_by=by)
        what, action = "added", "staff.added"
    else:
        previous = member.role if member.removed_at is None else None
        member.role, member.removed_at, member.added_by, member.added_at = role, None, by, utcnow()
        what, action = ("role changed", "staff.role_changed") if previous else ("added", "staff.added")
    session.add(member)
    session.flush()
    record(session, actor=by, role=by_role, action=action, subject=f"staff:{member.id}", new_role=role.value)
    return Change(address, role, what)


def remove(session: Session, email: str, *, by: str, by_role: str) -> Change:
    address = normalise(email)
    member = session.exec(select(StaffMember).where(StaffMember.email == address)).first()
    if member is None or member.removed_at is not None:
        raise StaffError(f"{address} is not on the staff list")
    active_admins = session.exec(
        select(StaffMember).where(StaffMember.role == StaffRole.ADMIN, StaffMember.removed_at.is_(None))  # type: ignore[union-attr]
    ).all()
    if member.role == StaffRole.ADMIN and len(active_admins) == 1:
        raise StaffError(f"{address} is the last admin: add another admin first")
    member.removed_at = utcnow()
    session.add(member)
    record(session, actor=by, role=by_role, action="staff.removed", subject=f"staff:{member.id}")
    return Change(address, StaffRole(member.role), "removed")


def current(session: Session) -> list[StaffMember]:
    return list(
        session.exec(
            select(StaffMember).where(StaffMember.removed_at.is_(None)).order_by(StaffMember.email)  # type: ignore[union-attr]
        ).all()
    )
