"""`daily-report`: yesterday's KPIs against the plan's targets, as a Prefect markdown artifact with charts,
and emailed to STAFF_NOTIFICATION_EMAIL through the connected Gmail. Scheduled at 07:00 clinic time as the
`daily-report` deployment; `avatar-crm report [--date D]` prints the same report. Counts only."""

# No `from __future__ import annotations` here: the runner hands this flow to its process pickled, and
# Prefect builds the parameter model from the annotations; as strings, `date` no longer resolves there.
import asyncio
from datetime import date

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from flows.tasks.send import send_message
from models import get_settings
from reporting.flow_runs import flow_run_counts
from reporting.kpis import clinic_timezone, daily, yesterday
from reporting.report import build, queue_email, windows

ARTIFACT_KEY = "daily-report"


def _report_day(day: date | None) -> date:
    return day or yesterday(clinic_timezone(get_settings()))


def _run_name() -> str:
    """`daily-report-2026-12-07`: the day reported, nothing else."""
    day = flow_run.parameters.get("day")
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return f"daily-report-{_report_day(day).isoformat()}"


@flow(name="daily-report", flow_run_name=_run_name)
async def daily_report(day: date | None = None, insights: bool | None = None) -> dict[str, str]:
    """Report on clinic-local `day` (default: yesterday); each target's verdict and the email's fate.
    `insights`: append the weekly booking insights (default: on Mondays' report), as `avatar-crm report
    --insights` does."""
    logger = get_run_logger()
    settings = get_settings()
    the_day = _report_day(day)
    days = await asyncio.to_thread(daily, the_day, 30, clinic_timezone(settings))
    flow_runs = await flow_run_counts(windows(days))
    report = await asyncio.to_thread(
        build, the_day, settings, days=days, flow_runs=flow_runs, insights=insights
    )
    await acreate_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=report.markdown,
        description=f"KPIs for {the_day.isoformat()}: {report.summary}",
    )
    logger.info("daily report for %s: %s", the_day.isoformat(), report.summary)
    for key, verdict in report.verdicts.items():
        logger.info("%s: %s", key, verdict)
    message_id, why = await asyncio.to_thread(queue_email, report, settings)
    if message_id is None:
        logger.warning("daily report not emailed: %s", why)
        email = f"not emailed: {why}"
    else:
        email = f"email {await send_message(message_id)}"
        logger.info("daily report %s (outbox message %s)", email, message_id)
    return {**report.verdicts, "email": email}
