"""`avatar-crm wix`: reconciliation with the bookings Wix holds."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer

wix_app = typer.Typer(help="Wix: find the bookings whose webhooks never arrived.", no_args_is_help=True)


def _instant(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{option} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{option} needs a UTC offset, e.g. 2026-11-25T09:00:00+10:00")
    return moment


@wix_app.command("reconcile")
def reconcile(
    since: Annotated[
        str | None,
        typer.Option(
            help="Read bookings Wix changed since this time (ISO 8601 with offset); default: the "
            "end of the last completed reconciliation, less 10 minutes (a day back the first time)."
        ),
    ] = None,
    until: Annotated[str | None, typer.Option(help="… and before this time; default now.")] = None,
) -> None:
    """Compare the bookings Wix changed with the CRM and feed booking intake each one it lacks or holds at an
    older revision (the gateway's dispatcher then applies them like webhooks); prints the counts."""
    from flows.wix_reconcile import wix_reconcile

    result = asyncio.run(wix_reconcile(since=_instant(since, "--since"), until=_instant(until, "--until")))
    if result["status"] == "off":
        typer.echo(str(result["reason"]), err=True)
        raise typer.Exit(1)
    typer.echo("\n".join(f"{key.replace('_', ' ')}: {value}" for key, value in result.items()))
