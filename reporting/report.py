"""The daily report: yesterday's KPIs against the plan's targets, beside the 7- and 30-day figures, charts.

Built from `kpis.daily` (one tally per clinic-local day for the 30 days ending on the day reported), as
markdown for the Prefect artifact (charts embedded as SVG `data:` URIs, which the UI shows as images) and as
plain text and simple HTML for the staff email (mail clients do not show SVG or `data:` images, so the email
carries the tables and points to the artifact for the charts). Counts only: no patient, address or text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from html import escape

from sqlalchemy import Engine

from messaging.email_wording import ClinicIdentity, EmailContent
from messaging.outbox import queue_message
from models import (
    Channel,
    MessageKind,
    OutboundMessage,
    Purpose,
    Settings,
    get_settings,
    session_scope,
)
from models.types import utcnow
from providers.google_api import active_connection
from reporting import charts
from reporting.charts import Series
from reporting.insights import Insights, phrase_summary, weekly
from reporting.kpis import (
    TARGETS,
    Days,
    FlowRunCounts,
    Kpis,
    Target,
    Verdict,
    Window,
    clinic_timezone,
    daily,
    percentile,
    reader,
)

PERIODS = (("Yesterday", 1), ("7 days", 7), ("30 days", 30))
_MARK = {"met": "✅ met", "not met": "❌ not met", "not measured": "— not measured"}


@dataclass(frozen=True)
class DailyReport:
    day: date
    markdown: str
    text: str
    verdicts: dict[str, Verdict]  # the day's verdict per target key
    charts: dict[str, str]  # name → SVG document
    notes: list[str]
    insights: Insights | None = None  # the weekly section (Mondays' report, or asked for)

    @property
    def summary(self) -> str:
        measured = [v for v in self.verdicts.values() if v != "not measured"]
        met = sum(v == "met" for v in measured)
        return f"{met} of {len(measured)} measured targets met"

    def email(self, clinic: ClinicIdentity, reference: str) -> EmailContent:
        """The report as a staff email (tables only; the charts are in the Prefect artifact)."""
        subject = f"[{clinic.name}] Daily report {self.day:%a %d %b %Y}: {self.summary}"
        text = (
            f"{self.text}\nCharts: the `daily-report` artifact in the Prefect UI.\nReference: {reference}\n"
        )
        html = (
            f"<html><body><p><strong>{escape(subject)}</strong></p>"
            f'<pre style="font-size:13px;">{escape(text)}</pre></body></html>'
        )
        return EmailContent(subject, text, html, to_name=f"{clinic.name} staff", track=False)


def _fmt(target_unit: str, value: float | None) -> str:
    if value is None:
        return "—"
    if target_unit == "%":
        return f"{value * 100:.1f} %"
    return f"{value:,.0f} ms"


def _count(value: int) -> str:
    return f"{value:,}"


# Counts shown beside the targets: (label, how to read it from a window's KPIs).
COUNTS: tuple[tuple[str, Callable[[Kpis], str]], ...] = (
    ("Bookings received", lambda k: _count(k.tally.bookings_received)),
    ("Bookings applied", lambda k: _count(k.tally.bookings_applied)),
    ("Bookings failed", lambda k: _count(k.tally.bookings_failed)),
    (
        "Reconciliation runs (Wix bookings checked / matching)",
        lambda k: (
            f"{k.tally.reconcile_runs:,} ({k.tally.reconcile_wix_total:,} / {k.tally.reconcile_matching:,})"
        ),
    ),
    ("SMS sent", lambda k: _count(k.tally.sms_sent)),
    ("SMS delivered", lambda k: _count(k.tally.sms_delivered)),
    ("SMS failed (carrier)", lambda k: _count(k.tally.sms_failed)),
    ("SMS refused by the provider", lambda k: _count(k.tally.sms_refused)),
    ("SMS sandboxed", lambda k: _count(k.tally.sms_sandboxed)),
    (
        "Email sent (Gmail / SendGrid)",
        lambda k: f"{k.tally.email_sent:,} ({k.tally.email_sent_gmail:,} / {k.tally.email_sent_sendgrid:,})",
    ),
    ("Email delivered (SendGrid-confirmed)", lambda k: _count(k.tally.email_delivered)),
    ("Email bounced or dropped", lambda k: _count(k.tally.email_bounced)),
    ("Email refused by Gmail", lambda k: _count(k.tally.email_refused)),
    ("Email sandboxed", lambda k: _count(k.tally.email_sandboxed)),
    ("Campaign opens", lambda k: _count(k.tally.campaign_opens)),
    ("Campaign clicks", lambda k: _count(k.tally.campaign_clicks)),
    ("Opt-outs", lambda k: _count(k.tally.opt_outs)),
    ("Opt-ins", lambda k: _count(k.tally.opt_ins)),
    ("Webhook receipt → committed p50 / p95 / p99", lambda k: _percentiles(k, k.committed_ms)),
    ("Webhook receipt → processed p50 / p95 / p99", lambda k: _percentiles(k, k.processed_ms)),
    ("Webhooks measured", lambda k: _count(len(k.tally.committed_ms))),
    (
        "Webhook requests answered (refused 4xx / failed 5xx)",
        lambda k: f"{k.tally.webhook_requests:,} ({_refused(k):,} / {k.tally.webhook_5xx.total():,})",
    ),
    ("Webhooks refused, by reason", lambda k: _reasons(k.tally.webhook_4xx)),
    ("Webhooks failed (5xx), by reason", lambda k: _reasons(k.tally.webhook_5xx)),
    ("Flow runs finished (failed or crashed)", lambda k: _flow_runs(k)),
)


def _refused(k: Kpis) -> int:
    return k.tally.webhook_4xx.total()


def _reasons(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items()) if n) or "0"


def _flow_runs(k: Kpis) -> str:
    if k.flow_runs is None:
        return "not measured"
    finished = sum(c.finished for c in k.flow_runs.values())
    return f"{finished:,} ({sum(c.failed for c in k.flow_runs.values()):,})"


def windows(days: Days) -> list[Window]:
    """The report's windows (yesterday, 7 days, 30 days), in `PERIODS` order: what flow runs are read for."""
    return [days.last(n).window for _, n in PERIODS]


def _percentiles(k: Kpis, read: Callable[[float], float | None]) -> str:
    return " / ".join(_fmt("ms", read(p)) for p in (50, 95, 99))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in [header, *rows]]


def value_cell(target: Target, window: Kpis) -> str:
    """The KPI's value as the report prints it ("98.2 %", "1,234 ms", "—" when not measured)."""
    return _fmt(target.unit, window.value(target.key))


def target_cell(target: Target, window: Kpis) -> str:
    value = window.value(target.key)
    verdict = target.verdict(value)
    return "not measured" if value is None else f"{_fmt(target.unit, value)} {_MARK[verdict]}"


def with_insights(day: date, asked: bool | None) -> bool:
    """The weekly section goes with Monday's report (the day reported is Sunday, ending the week), or when
    asked for (`avatar-crm report --insights`: the 7 days ending on the day)."""
    return day.weekday() == 6 if asked is None else asked


def build(
    day: date,
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    days: Days | None = None,
    insights: bool | None = None,
    flow_runs: Sequence[Mapping[str, FlowRunCounts]] | None = None,
) -> DailyReport:
    """The report for clinic-local `day` (yesterday, for the 07:00 run). `flow_runs`: per window of
    `windows(days)`, the flow runs by deployment (`reporting.flow_runs`); None: not measured."""
    settings = settings or get_settings()
    engine = engine or reader(settings.crm_database_url)
    days = days or daily(day, 30, clinic_timezone(settings), engine)
    section = weekly(day, settings, engine) if with_insights(day, insights) else None
    if section is not None and settings.sms_llm_url:
        section = replace(section, summary=asyncio.run(phrase_summary(section, settings)))
    windows = [
        (label, replace(days.last(n), flow_runs=flow_runs[i] if flow_runs is not None else None))
        for i, (label, n) in enumerate(PERIODS)
    ]
    yesterday = windows[0][1]
    verdicts = {t.key: t.verdict(yesterday.value(t.key)) for t in TARGETS}

    notes = []
    if not settings.wix_api_configured:
        notes.append(
            "Booking sync rate not measured: Wix reconciliation is off (WIX_API_KEY / WIX_SITE_ID unset)."
        )
    elif yesterday.tally.reconcile_runs == 0:
        notes.append("Booking sync rate not measured: no `wix-reconcile` run completed that day.")
    if flow_runs is None:
        notes.append("Flow run failure rate not measured: the Prefect API could not be read.")
    if yesterday.tally.sms_sandboxed or yesterday.tally.email_sandboxed:
        notes.append(
            "Sandboxed messages (no provider configured) are counted apart: nothing left the machine."
        )
    backlog = yesterday.backlog
    oldest = yesterday.backlog_oldest_seconds
    backlog_line = f"Inbox backlog at the end of the day: {backlog:,} event(s) not yet processed" + (
        f", the oldest {oldest / 60:,.1f} min old." if oldest is not None else "."
    )

    header = ["KPI", "Target", *(label for label, _ in PERIODS)]
    target_rows = [[t.label, t.describe(), *(target_cell(t, w) for _, w in windows)] for t in TARGETS]
    count_rows = [[label, *(read(w) for _, w in windows)] for label, read in COUNTS]

    svgs = _charts(days)
    title = f"Daily report — {day:%A %d %B %Y} ({settings.clinic_timezone})"
    md = [f"# {title}", "", f"**{DailyReport(day, '', '', verdicts, {}, []).summary}** (yesterday).", ""]
    md += [*_table(header, target_rows), ""]
    md += [f"- {note}" for note in notes] + ([""] if notes else [])
    md += [backlog_line, "", "## Counts", "", *_table(["Count", *header[2:]], count_rows), ""]
    deployment_rows = _deployment_rows(windows)
    if deployment_rows:
        md += ["## Flow runs per deployment (failed or crashed / finished)", ""]
        md += [*_table(["Deployment", *header[2:]], deployment_rows), ""]
    md += ["## Charts (last 30 days)", ""]
    md += [charts.markdown_image(name, svg) + "\n" for name, svg in svgs.items()]
    md += ["Definitions: docs/reporting.md. Counts only, no patient details."]
    if section is not None:
        md += ["", *section.markdown()]
        svgs.update(section.charts)

    text = [
        title,
        "",
        *_text_table(header, [[c.replace("✅ ", "").replace("❌ ", "") for c in r] for r in target_rows]),
    ]
    text += ["", *notes, backlog_line, "", *_text_table(["Count", *header[2:]], count_rows), ""]
    if deployment_rows:
        text += ["Flow runs per deployment (failed or crashed / finished)", ""]
        text += [*_text_table(["Deployment", *header[2:]], deployment_rows), ""]
    if section is not None:
        text += section.text()
    return DailyReport(day, "\n".join(md), "\n".join(text), verdicts, svgs, notes, section)


def _deployment_rows(windows: list[tuple[str, Kpis]]) -> list[list[str]]:
    names = sorted({name for _, k in windows for name in (k.flow_runs or {})})

    def cell(k: Kpis, name: str) -> str:
        counts = (k.flow_runs or {}).get(name)
        if counts is None or not counts.finished:
            return "—"
        rate = counts.failure_rate or 0.0
        mark = " ❌" if rate >= 0.01 else ""
        return f"{counts.failed:,} / {counts.finished:,} ({rate * 100:.1f} %){mark}"

    return [[name, *(cell(k, name) for _, k in windows)] for name in names]


def _charts(days: Days) -> dict[str, str]:
    labels = [f"{d:%d %b}" for d in days.days]
    t = days.tallies
    outcomes = [
        Series("delivered", "#2f9e44", [x.sms_delivered + x.email_delivered for x in t]),
        Series(
            "accepted, no receipt",
            "#74c0fc",
            [
                x.sms_sent
                - x.sms_delivered
                - x.sms_failed
                + x.email_sent
                - x.email_delivered
                - x.email_bounced
                for x in t
            ],
        ),
        Series("failed or bounced", "#e03131", [x.sms_failed + x.email_bounced for x in t]),
        Series("refused", "#f08c00", [x.sms_refused + x.email_refused for x in t]),
        Series("sandboxed", "#adb5bd", [x.sms_sandboxed + x.email_sandboxed for x in t]),
    ]
    latency = [
        Series("processed p50", "#1c7ed6", [percentile(x.processed_ms, 50) for x in t]),
        Series("processed p95", "#e8590c", [percentile(x.processed_ms, 95) for x in t]),
        Series("committed p95", "#2f9e44", [percentile(x.committed_ms, 95) for x in t]),
    ]
    return {
        "messages-per-day": charts.stacked_bars(
            "Messages per day (SMS and email) by outcome", labels, outcomes
        ),
        "webhook-latency": charts.lines("Webhook latency per day (ms)", labels, latency, unit=""),
    }


def queue_email(report: DailyReport, settings: Settings | None = None) -> tuple[int | None, str]:
    """Queue the report for STAFF_NOTIFICATION_EMAIL as a staff email in the outbox (sent by Gmail, like every
    staff notice: `flows/tasks/email.py`); returns the outbox id, or None and why it was not queued.

    Queued only when it can go now (an address set, Google configured and an account connected): a report
    waiting days for a connection would be stale, and the Prefect artifact holds it anyway. Once per day
    reported (the outbox key), so a re-run of the day does not email it twice."""
    settings = settings or get_settings()
    address = settings.staff_notification_email.strip()
    if not address:
        return None, "STAFF_NOTIFICATION_EMAIL is unset"
    if not settings.google_configured:
        return None, "Google is not configured (GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET unset)"
    if active_connection() is None:
        return None, "no Google account is connected (`avatar-crm google connect`)"
    key = f"report:{report.day.isoformat()}:email"
    content = report.email(ClinicIdentity.from_settings(settings), reference=key)
    with session_scope() as session:
        queued = queue_message(
            session,
            OutboundMessage(
                idempotency_key=key,
                channel=Channel.EMAIL,
                purpose=Purpose.TRANSACTIONAL,
                kind=MessageKind.STAFF_NOTIFICATION,
                recipient=address,
                body=content.to_json(),
                deadline=utcnow() + timedelta(days=1),
            ),
        )
    return queued.id, "queued" if queued.created else "already queued for that day"
