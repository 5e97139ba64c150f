"""`avatar-crm alerts`: install the alert automations in Prefect, and see what is firing."""

from __future__ import annotations

import asyncio

import typer

from deployments.prefect_api import prefect_api

alerts_app = typer.Typer(help="Ops alerts (docs/alerts.md).", no_args_is_help=True)


@alerts_app.command("install")
def install() -> None:
    """Create or update the Prefect automations that start `ops-alerts` (a deployment's run failing; the
    reminder sweep not completing), and enable them. Run after `prefect deploy --all` in production; `make up`
    does it on every start. Idempotent."""
    from prefect import get_client

    from deployments.automations import install_alert_automations
    from models import get_settings

    async def go() -> dict[str, str]:
        async with get_client() as client:
            return await install_alert_automations(client, get_settings(), enable=True)

    with prefect_api("exit"):
        try:
            done = asyncio.run(go())
        except LookupError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    for name, what in done.items():
        typer.echo(f"{what}: {name}")


@alerts_app.command("status")
def status() -> None:
    """Every alert condition, its threshold, and what was last told about it (from the CRM database)."""
    from models import get_settings, session_scope
    from operations.alerts import current_state
    from operations.conditions import CONDITIONS, condition_of

    settings = get_settings()
    typer.echo(f"alert email: {settings.alert_email or '(none: Prefect UI only)'}")
    typer.echo(f"alert SMS:   {'set' if settings.ops_alert_phone.strip() else '(unset)'}")
    for condition in CONDITIONS:
        typer.echo(f"- {condition.name}  [{condition.threshold(settings)}]: {condition.description}")
    with session_scope() as session:
        rows = current_state(session)
        if not rows:
            typer.echo("nothing has fired")
        for row in rows:
            state = f"FIRING since {row.firing_since:%Y-%m-%d %H:%M}Z" if row.firing_since else "ok"
            if row.resolved_at and not row.firing_since:
                state += f" (resolved {row.resolved_at:%Y-%m-%d %H:%M}Z)"
            typer.echo(
                f"{row.name} [{condition_of(row.name).title}]: {state}; {row.notices} notice(s); {row.detail}"
            )
