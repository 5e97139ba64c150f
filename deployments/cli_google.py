"""`avatar-crm google …`: connect, inspect and disconnect the clinic's Google account; import contacts."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

google_app = typer.Typer(help="The clinic's Google Workspace connection.", no_args_is_help=True)


@google_app.command("connect")
def connect() -> None:
    """Print the link that connects the clinic's Google account (valid for 15 minutes)."""
    from models import get_settings
    from providers.google_oauth import connect_url

    settings = get_settings()
    if not settings.google_configured:
        typer.echo("Google is not configured: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET first.", err=True)
        raise typer.Exit(1)
    typer.echo("Open this link in a browser signed in to the clinic's Google account:")
    typer.echo(connect_url())
    typer.echo(f"(Google must list {settings.google_oauth_redirect_uri} as an authorised redirect URI.)")


@google_app.command("status")
def status() -> None:
    """Show the connection: state, account, granted scopes, and why it stopped working if it did."""
    from providers.google_oauth import connection_status

    current = connection_status()
    typer.echo(f"state: {current.state}")
    if current.account_email:
        typer.echo(f"account: {current.account_email}")
        typer.echo(f"scopes: {' '.join(current.scopes) or '-'}")
        if current.missing_scopes:
            typer.echo(f"missing scopes: {' '.join(current.missing_scopes)}")
        if current.connected_at:
            typer.echo(f"connected at: {current.connected_at:%Y-%m-%d %H:%M:%S} UTC")
    if current.reason:
        typer.echo(f"reason: {current.reason}")
    if current.state != "connected":
        hint = (
            "set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET"
            if current.state == "not-configured"
            else "run `avatar-crm google connect` to (re)connect"
        )
        typer.echo(f"next step: {hint}")
        raise typer.Exit(1)


@google_app.command("disconnect")
def disconnect() -> None:
    """Revoke the clinic's Google token at Google and stop using it."""
    from providers.google_oauth import revoke

    result = revoke()
    if result is None:
        typer.echo("no Google account is connected")
        return
    typer.echo(f"{result.account_email}: disconnected ({result.detail})")
    if not result.revoked_at_google:
        raise typer.Exit(1)


@google_app.command("import-contacts")
def import_contacts(
    full: Annotated[
        bool, typer.Option("--full", help="Re-read every contact instead of the changes.")
    ] = False,
) -> None:
    """Import Google Contacts into the CRM now, in this process (the daily deployment does the same)."""
    from flows.google_contacts_import import google_contacts_import

    summary = asyncio.run(google_contacts_import(full=full))
    typer.echo(", ".join(f"{name}: {count}" for name, count in summary.items()))
