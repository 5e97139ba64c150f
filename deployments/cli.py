"""`avatar-crm`: the operator's command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from deployments.cli_alerts import alerts_app
from deployments.cli_campaign import campaign_app, consent_app, tag_app
from deployments.cli_google import google_app
from deployments.cli_keys import keys_app
from deployments.cli_secrets import secrets_app, show_config
from deployments.cli_staff import audit_app, staff_app
from deployments.cli_wix import wix_app
from deployments.engine_command import SOCKET_ENV
from deployments.prefect_api import prefect_api
from models.data_dir import PRIVATE_UMASK
from models.enums import InboxStatus

app = typer.Typer(help="Avatar Imaging CRM integration backbone.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
events_app = typer.Typer(help="The webhook inbox.", no_args_is_help=True)
reminders_app = typer.Typer(help="Scheduled reminders.", no_args_is_help=True)
suppress_app = typer.Typer(help="Who must not be contacted (staff entries to the suppression list).")
sms_app = typer.Typer(help="Two-way SMS.", no_args_is_help=True)
retention_app = typer.Typer(help="What is purged after how long (README, Retention).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(events_app, name="events")
app.add_typer(reminders_app, name="reminders")
app.add_typer(suppress_app, name="suppress", no_args_is_help=True)
app.add_typer(sms_app, name="sms")
app.add_typer(retention_app, name="retention")
app.add_typer(campaign_app, name="campaign")
app.add_typer(consent_app, name="consent")
app.add_typer(tag_app, name="tag")
app.add_typer(google_app, name="google")
app.add_typer(wix_app, name="wix")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(staff_app, name="staff")
app.add_typer(audit_app, name="audit")
app.add_typer(alerts_app, name="alerts")


@app.callback()
def _private_files() -> None:
    """Whatever a command creates (the database, keys, Prefect's files, exports) is the owner's alone, and so
    is what the processes it starts create (make up's Prefect server, runner and gateway). Settings are read
    from the avatar-crm Prefect blocks first (when a Prefect API answers), the environment second."""
    os.umask(PRIVATE_UMASK)
    from blocks.settings_source import install
    from models.log_format import configure_logging, log_format_before_sources

    configure_logging(log_format_before_sources())  # before `install`, so its own lines are formatted too
    install()


@app.command()
def config() -> None:
    """Show every setting, where it came from (block, env, .env, default) and its value; never a secret."""
    show_config()


@app.command()
def up(
    scaled: Annotated[
        bool,
        typer.Option(
            "--scaled",
            help="The production topology on this machine: Prefect and the CRM on PostgreSQL, Prefect's "
            "messaging on Redis, its API server and services apart, N workers, several gateways.",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="--scaled: process workers on the work pool.")] = 2,
    gateways: Annotated[
        int, typer.Option(min=1, help="--scaled: gateways, on GATEWAY_PORT and the ports after it.")
    ] = 2,
    postgres: Annotated[
        str, typer.Option(help="--scaled: the PostgreSQL server (its databases are made if missing).")
    ] = "postgresql://postgres@127.0.0.1:5432/postgres",
    prefect_database: Annotated[str, typer.Option(help="--scaled: Prefect's database on that server.")] = (
        "avatar_crm_prefect"
    ),
    crm_database: Annotated[
        str, typer.Option(help="--scaled: the CRM's database there, unless CRM_DATABASE_URL names one.")
    ] = "avatar_crm",
    redis: Annotated[
        str, typer.Option(help="--scaled: Redis; Prefect uses its database n and n+1, the gateways n+2.")
    ] = "redis://127.0.0.1:6379/0",
) -> None:
    """Run everything locally: Prefect server + UI, the flow runner and the webhook gateway."""
    if scaled:
        from deployments.scaled import Topology, up_scaled

        topology = Topology(postgres, crm_database, prefect_database, redis, workers, gateways)
        raise typer.Exit(up_scaled(topology))
    from deployments.stack import up as run_stack

    raise typer.Exit(run_stack())


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Bind address (default GATEWAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default GATEWAY_PORT).")] = None,
) -> None:
    """Run only the webhook gateway (hands events to PREFECT_API_URL, else to make up's Prefect)."""
    import uvicorn

    from models import get_settings
    from webhook_gateway.errors import SERVER_OPTIONS

    settings = get_settings()
    with prefect_api("wait"):
        uvicorn.run(
            "webhook_gateway.app:create_served_app",
            factory=True,
            host=host or settings.gateway_host,
            port=port or settings.gateway_port,
            access_log=False,
            **SERVER_OPTIONS,  # type: ignore[arg-type]
        )


@app.command()
def engine(
    socket_path: Annotated[
        Path,
        typer.Option("--socket", envvar=SOCKET_ENV, help="The Unix socket its worker hands runs to."),
    ],
    commit: Annotated[
        str | None,
        typer.Option(
            help="The commit this installation's code is (default: the checkout's HEAD, if unchanged); runs "
            "of deployments pinned to another commit run cold."
        ),
    ] = None,
) -> None:
    """Run a worker's warm engine: each flow run the worker hands over runs as a fork of this process."""
    from deployments.warm_engine import checkout_commit, serve

    with contextlib.suppress(KeyboardInterrupt):
        serve(socket_path, commit or checkout_commit())


@app.command("task-worker")
def task_worker(
    name: Annotated[str, typer.Option(help="What its log lines call it (e.g. the host).")] = "task-worker",
    limit: Annotated[int, typer.Option(help="Booking task runs under way at once.")] = 16,
) -> None:
    """Run Prefect's background task worker for lone booking events (PREFECT_API_URL, else make up's)."""
    from deployments.task_worker import main

    with prefect_api(), contextlib.suppress(KeyboardInterrupt):
        main(name, limit)


@app.command()
def serve() -> None:
    """Serve every deployment in prefect.yaml from this process (PREFECT_API_URL, else make up's Prefect)."""
    from deployments.serve import main

    with prefect_api():
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
    status: Annotated[InboxStatus | None, typer.Option(help="Only events with this status.")] = None,
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
                + (f"  runs={row.redispatches + 1}" if row.redispatches else "")  # earlier ones died
                + (f"  error={row.last_error}" if row.last_error else "")
            )


@events_app.command("replay")
def events_replay(
    event_id: int,
    reason: Annotated[str | None, typer.Option(help="Why it is replayed (kept in the access audit).")] = None,
) -> None:
    """Queue the event for a new run of its flow (booking intake, SMS triage, receipts): safe, processing is
    idempotent. The gateway's dispatcher starts the run, as for a new event (`events list` shows it)."""
    from inbox.ops import ReplayRefused, replay
    from models import session_scope
    from models.access_audit import shell_actor

    try:
        with session_scope() as session:
            done = replay(session, event_id, actor=shell_actor(), reason=reason)
    except ReplayRefused as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(
        f"event {event_id} ({done.source}, was {done.status_before}) is queued for flow run {done.run}; "
        "the gateway's dispatcher starts it"
    )


@events_app.command("show")
def events_show(
    event_id: int,
    reason: Annotated[str | None, typer.Option(help="Why you read it (kept in the access audit).")] = None,
) -> None:
    """Print one inbox event's stored body (decrypted: it holds patient details; for staff follow-up). The
    read is in the access audit, as your OS user."""
    from models import WebhookEvent, session_scope
    from models.access_audit import record, shell_actor

    with session_scope() as session:
        row = session.get(WebhookEvent, event_id)
        if row is None:
            raise typer.BadParameter(f"no inbox event {event_id}")
        if row.purged_at is None:
            action, subject = "inbox_event.body_viewed", f"inbox_event:{event_id}"
            record(session, shell_actor(), action=action, subject=subject, reason=reason)
        typer.echo(f"{row.source} {row.event_type} received {row.received_at:%Y-%m-%d %H:%M:%S} UTC")
        if row.purged_at is not None:
            typer.echo(f"(body purged {row.purged_at:%Y-%m-%d} UTC by retention; ids and dedupe key kept)")
        else:
            typer.echo(row.body.decode("utf-8", errors="replace"))


def _moment(now: str | None) -> datetime | None:
    """`--now`: an aware time (ISO 8601 with its offset), or None for the real now."""
    if now is None:
        return None
    try:
        moment = datetime.fromisoformat(now)
    except ValueError as exc:
        raise typer.BadParameter(f"--now is not an ISO 8601 time: {now!r}") from exc
    if moment.tzinfo is None:
        raise typer.BadParameter("--now needs a UTC offset, e.g. 2026-11-25T09:00:00+10:00")
    return moment


@reminders_app.command("sweep")
def reminders_sweep(
    now: Annotated[
        str | None, typer.Option(help="Sweep as if it were this time (ISO 8601 with offset); default now.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many messages.")] = 1000,
) -> None:
    """Send every due reminder (and delayed message) once, re-checked against its booking, then exit."""
    from flows.reminder_sweep import reminder_sweep
    from models.run_logger import describe_counts

    moment = _moment(now)
    with prefect_api("temporary"):  # the running stack's, so the run shows in its UI
        counts = asyncio.run(reminder_sweep(now=moment, limit=limit))
    typer.echo(describe_counts(counts))


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option(help="Count what would be purged; change nothing.")] = False,
    now: Annotated[
        str | None, typer.Option(help="Purge as if it were this time (ISO 8601 with offset); default now.")
    ] = None,
) -> None:
    """Purge stored webhook bodies, message texts and OAuth states past their periods, once, then exit."""
    from flows.retention import retention
    from models.run_logger import describe_counts

    moment = _moment(now)
    with prefect_api("temporary"):  # the running stack's, so the run shows in its UI
        counts = asyncio.run(retention(now=moment, dry_run=dry_run))
    typer.echo(("would purge " if dry_run else "purged ") + describe_counts(counts))


@app.command()
def report(
    date: Annotated[
        str | None,
        typer.Option("--date", help="The clinic-local day to report on (YYYY-MM-DD); default yesterday."),
    ] = None,
    markdown: Annotated[
        bool,
        typer.Option(help="Print the markdown the `daily-report` artifact holds (charts as data: URIs)."),
    ] = False,
    insights: Annotated[
        bool | None,
        typer.Option(
            "--insights/--no-insights",
            help="Append the weekly booking insights (the 7 days ending on the day); default: on Mondays' "
            "report (the day reported a Sunday).",
        ),
    ] = None,
    week: Annotated[
        bool, typer.Option("--week", help="Print only the booking insights of the 7 days ending on the day.")
    ] = False,
) -> None:
    """Print the daily report: the KPIs against the plan's targets, the day beside 7 and 30 days (counts only;
    definitions in docs/reporting.md). Reads the database; changes nothing, sends nothing."""
    from datetime import date as Date

    from models import get_settings
    from reporting.flow_runs import flow_run_counts
    from reporting.kpis import clinic_timezone, daily, yesterday
    from reporting.report import build, windows

    settings = get_settings()
    try:
        day = Date.fromisoformat(date) if date else yesterday(clinic_timezone(settings))
    except ValueError as exc:
        raise typer.BadParameter("--date must be YYYY-MM-DD, e.g. 2026-12-07") from exc
    if week:
        from reporting.insights import weekly

        section = weekly(day, settings)
        typer.echo("\n".join(section.markdown() if markdown else section.text()))
        return
    days = daily(day, 30, clinic_timezone(settings))
    with prefect_api("wait"):  # flow runs from the stack's Prefect (or PREFECT_API_URL); none: not measured
        flow_runs = asyncio.run(flow_run_counts(windows(days)))
    built = build(day, settings, days=days, flow_runs=flow_runs, insights=insights)
    typer.echo(built.markdown if markdown else built.text)


def _staff_change(phone: str, lift: bool, note: str) -> bool:
    from deployments.cli_campaign import audit_change, refuse, staff_source
    from messaging import consent
    from messaging.contacts import normalize_phone
    from messaging.replies import find_contact
    from models import get_settings, session_scope

    e164 = normalize_phone(phone, get_settings().default_phone_region)
    if e164 is None:
        raise typer.BadParameter(f"{phone!r} is not a valid phone number")
    why = staff_source(note, required=lift)
    action = "suppression.lifted" if lift else "suppression.added"
    try:
        with session_scope() as session:
            contact = find_contact(session, e164)
            change = consent.grant if lift else consent.withdraw
            changed = change(session, phone=e164, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=why)
            audit_change(session, action, contact.id if contact else None, why.wording, changed=changed)
            return changed
    except consent.ConsentRefused as refused:
        refuse(refused, action)


@suppress_app.command("add")
def suppress_add(
    phone: str, note: Annotated[str, typer.Option(help="Why, in the patient's or staff's words.")] = ""
) -> None:
    """Stop all SMS and all marketing to this number (e.g. the patient asked at reception)."""
    changed = _staff_change(phone, lift=False, note=note)
    typer.echo("suppressed" if changed else "already suppressed")


@suppress_app.command("remove")
def suppress_remove(
    phone: str, note: Annotated[str, typer.Option(help="How the patient gave consent again (required).")] = ""
) -> None:
    """Lift a staff (or provider) suppression, with the patient's consent (recorded in the consent ledger).

    Refused (exit 1, nothing changed) for the patient's own STOP: only their START lifts it."""
    changed = _staff_change(phone, lift=True, note=note)
    typer.echo("lifted" if changed else "was not suppressed")


@sms_app.command("classify")
def sms_classify() -> None:
    """Classify replies read one per line on stdin; print one JSON object per line (model if SMS_LLM_URL)."""
    import json
    import sys

    from messaging.sms_classifier import classify_with_fallback
    from models import get_settings

    settings = get_settings()

    async def _run() -> None:
        for raw in sys.stdin.buffer:  # bytes, so a stray invalid byte cannot stop the batch
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text.strip():
                continue
            result = await classify_with_fallback(text, settings)
            line = {"text": text, "intent": str(result.intent), "confidence": round(result.confidence, 3)}
            typer.echo(json.dumps(line, ensure_ascii=False))

    asyncio.run(_run())


if __name__ == "__main__":
    app()
