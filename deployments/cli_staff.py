"""`avatar-crm staff …` and `avatar-crm audit …`: the staff list (the first admin comes from here) and the
access audit. Run at the server's shell, each change is audited as the OS user."""

from __future__ import annotations

from typing import Annotated

import typer

from models import StaffRole

staff_app = typer.Typer(help="Who may sign in to the console, in which role.", no_args_is_help=True)
audit_app = typer.Typer(help="What people did with patients' details.", no_args_is_help=True)

_ROLES = ", ".join(role.value for role in StaffRole)


@staff_app.command("add")
def staff_add(
    email: str,
    role: Annotated[str, typer.Option(help=f"One of: {_ROLES}.")],
) -> None:
    """Add a staff member (or change their role); the first admin is added this way."""
    from access import staff
    from models import session_scope
    from models.access_audit import shell_actor

    try:
        chosen = StaffRole(role.lower())
    except ValueError:
        raise typer.BadParameter(f"--role must be one of: {_ROLES}") from None
    try:
        with session_scope() as session:
            change = staff.add(session, email, chosen, actor=shell_actor())
    except staff.StaffError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"{change.email}: {change.what} ({change.role})")


@staff_app.command("remove")
def staff_remove(email: str) -> None:
    """Take a staff member off the list (their sessions end at their next request)."""
    from access import staff
    from models import session_scope
    from models.access_audit import shell_actor

    try:
        with session_scope() as session:
            change = staff.remove(session, email, actor=shell_actor())
    except staff.StaffError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{change.email}: removed (was {change.role})")


@staff_app.command("list")
def staff_list() -> None:
    """The current staff and their roles."""
    from access import staff
    from models import session_scope

    with session_scope() as session:
        members = staff.current(session)
    if not members:
        typer.echo("no staff yet: add the first admin with `avatar-crm staff add EMAIL --role admin`")
    for member in members:
        added = f"added {member.added_at:%Y-%m-%d} by {member.added_by}"
        typer.echo(f"{member.email:<40} {member.role:<10} {added}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the access audit's hash chain from its first row; exit 1 at the first row that breaks it."""
    from models import session_scope
    from models.access_audit import verify

    with session_scope() as session:
        verdict = verify(session)
    if verdict.intact:
        typer.echo(f"intact: {verdict.rows} rows, each chained to the one before")
        return
    typer.echo(f"BROKEN after {verdict.rows} good rows: {verdict.problem}", err=True)
    raise typer.Exit(1)


@audit_app.command("list")
def audit_list(limit: Annotated[int, typer.Option(help="The newest rows, at most this many.")] = 50) -> None:
    """The newest rows of the access audit (ids only, never a patient's details)."""
    from sqlmodel import select

    from models import AccessAudit, session_scope

    with session_scope() as session:
        rows = session.exec(select(AccessAudit).order_by(AccessAudit.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    for row in reversed(rows):
        why = f" — {row.reason}" if row.reason else ""
        typer.echo(
            f"{row.id:>6} {row.at:%Y-%m-%d %H:%M:%S} {row.actor} ({row.role}) {row.outcome} {row.action} "
            f"{row.subject or ''}{why}"
        )
