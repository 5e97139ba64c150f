"""`avatar-crm`: the operator's command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

app = typer.Typer(help="Avatar Imaging CRM integration backbone.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
events_app = typer.Typer(help="The webhook inbox.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(events_app, name="events")


@app.command()
def up() -> None:
    """Run everything locally: Prefect server + UI, the flow runner and the webhook gateway."""
    from deployments.stack import up as run_stack

    raise typer.Exit(run_stack())


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Bind address (default GATEWAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default GATEWAY_PORT).")] = None,
) -> None:
    """Run only the webhook gateway (needs PREFECT_API_URL)."""
    import uvicorn

    from models import get_settings

    settings = get_settings()
    uvicorn.run(
        "webhook_gateway.app:create_app",
        factory=True,
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        access_log=False,
    )


@app.command()
def serve() -> None:
    """Serve every deployment in prefect.yaml from this process (needs PREFECT_API_URL)."""
    from deployments.serve import main

    main()


@app.command()
def keygen() -> None:
    """Print a new value for CRM_ENCRYPTION_KEY."""
    from models.crypto import generate_key

    typer.echo(generate_key())


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the Alembic migrations to CRM_DATABASE_URL."""
    from models.migrate import upgrade

    upgrade(revision=revision)
    typer.echo("database is up to date")


@app.command()
def demo(
    gateway_url: Annotated[str | None, typer.Option(help="Gateway base URL.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the flows.")] = 60.0,
    send_real_sms: Annotated[
        bool, typer.Option(help="Allow the demo when a real SMS provider is configured.")
    ] = False,
) -> None:
    """Send a signed booking created → rescheduled → cancelled sequence and show what the CRM did."""
    from deployments.demo import run_demo

    raise typer.Exit(run_demo(gateway_url, timeout, allow_real_sms=send_real_sms))


@events_app.command("list")
def events_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    status: Annotated[
        str | None, typer.Option(help="Only this status (received, dispatched, processed, failed).")
    ] = None,
) -> None:
    """Show the newest inbox events and where they are."""
    from sqlmodel import select

    from models import WebhookEvent, session_scope

    with session_scope() as session:
        query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)  # type: ignore[union-attr]
        if status:
            query = query.where(WebhookEvent.status == status)
        rows = session.exec(query).all()
        for row in rows:
            typer.echo(
                f"{row.id:>6}  {row.received_at:%Y-%m-%d %H:%M:%S}  {row.source:<6} {row.status:<10} "
                f"{row.event_type:<40} run={row.flow_run_id or '-'}"
                + (f"  error={row.last_error}" if row.last_error else "")
            )


@events_app.command("replay")
def events_replay(event_id: int) -> None:
    """Run booking intake again for a stored event (safe: processing is idempotent)."""
    from prefect.deployments import run_deployment

    from models import WebhookEvent, session_scope
    from webhook_gateway.app import DEPLOYMENTS

    with session_scope() as session:
        row = session.get(WebhookEvent, event_id)
        if row is None:
            raise typer.BadParameter(f"no inbox event {event_id}")
        deployment = DEPLOYMENTS[row.source]

    async def _run() -> str:
        flow_run = await run_deployment(deployment, parameters={"event_id": event_id}, timeout=0)
        return str(flow_run.id)

    typer.echo(f"replaying event {event_id} as flow run {asyncio.run(_run())}")


if __name__ == "__main__":
    app()
