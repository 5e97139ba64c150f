"""The ops alert conditions, as data, and their evaluation from the CRM database (and Prefect's facts).

Each condition names the setting that holds its threshold, so `docs/alerts.md`, `avatar-crm alerts status`
and the notices all say the same thing. Evaluation reads counts, ages and ids only: a reading's `detail` goes
into notices (Prefect UI, email, SMS) and must never name a patient.

What Prefect alone knows (a deployment's latest finished run; when reminder-sweep last completed) is read by
the `ops-alerts` flow and handed in as `PrefectFacts`; without them those conditions are not evaluated and
keep their state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from models import (
    Channel,
    GoogleConnection,
    GoogleConnectionStatus,
    InboxStatus,
    MessageStatus,
    OutboundMessage,
    Settings,
    WebhookEvent,
    WixReconciliation,
)


@dataclass(frozen=True)
class Condition:
    name: str
    title: str
    description: str
    setting: str | None  # the Settings field holding its threshold (None: no threshold, e.g. a state)

    def threshold(self, settings: Settings) -> str:
        if self.setting is None:
            return "-"
        return f"{self.setting.upper()}={getattr(settings, self.setting)}"


DEPLOYMENT_FAILED = Condition(
    "deployment-failed",
    "Deployment runs failing",
    "the latest finished run of a deployment ended Failed or Crashed (one condition per deployment, "
    "`deployment-failed:<name>`; a Prefect automation reports each failed run at once)",
    None,
)
WEBHOOK_ERROR_RATE = Condition(
    "webhook-error-rate",
    "Webhook error rate",
    "share of stored webhook events that ended `failed` (rather than `processed`) in the window",
    "alert_webhook_error_rate",
)
SMS_FAILURE_RATE = Condition(
    "sms-failure-rate",
    "SMS failure rate",
    "share of SMS sends in the window that ended `failed` (provider refusal, undeliverable receipt)",
    "alert_sms_failure_rate",
)
EMAIL_FAILURE_RATE = Condition(
    "email-failure-rate",
    "Email failure rate",
    "share of email sends (Gmail and SendGrid) in the window that ended `failed` or `bounced`",
    "alert_email_failure_rate",
)
INBOX_BACKLOG = Condition(
    "inbox-backlog",
    "Inbox backlog",
    "the oldest webhook event not yet processed (received or dispatched) is older than the limit",
    "alert_inbox_backlog_minutes",
)
GOOGLE_DISCONNECTED = Condition(
    "google-disconnected",
    "Google disconnected",
    "Google refused the stored token (status `disconnected`): staff email, calendar and contacts stop "
    "until someone runs `avatar-crm google connect`",
    None,
)
RECONCILIATION_MISSING = Condition(
    "reconciliation-missing",
    "Wix bookings missing from the CRM",
    "the last completed `wix-reconcile` run found bookings the CRM lacked (missing) or held at an older "
    "revision (stale): webhooks Wix never delivered",
    None,
)
REMINDER_SWEEP_STALE = Condition(
    "reminder-sweep-stale",
    "Reminder sweep not completing",
    "no `reminder-sweep` run has completed for longer than the limit (a proactive Prefect automation "
    "reports it too)",
    "alert_reminder_sweep_minutes",
)

CONDITIONS: tuple[Condition, ...] = (
    DEPLOYMENT_FAILED,
    WEBHOOK_ERROR_RATE,
    SMS_FAILURE_RATE,
    EMAIL_FAILURE_RATE,
    INBOX_BACKLOG,
    GOOGLE_DISCONNECTED,
    RECONCILIATION_MISSING,
    REMINDER_SWEEP_STALE,
)


def condition_of(name: str) -> Condition:
    """The condition an alert name belongs to (`deployment-failed:reminder-sweep` -> DEPLOYMENT_FAILED)."""
    base = name.partition(":")[0]
    return next(c for c in CONDITIONS if c.name == base)


@dataclass(frozen=True)
class Reading:
    name: str  # the condition's name, or `<condition>:<subject>` (a deployment's name)
    firing: bool
    detail: str

    @property
    def condition(self) -> Condition:
        return condition_of(self.name)


@dataclass(frozen=True)
class PrefectFacts:
    """What the `ops-alerts` flow read from Prefect (deployment names, run ids and states only)."""

    # Per deployment with a finished run: why its latest finished run counts as failing, or None (it passed).
    failing: dict[str, str | None] = field(default_factory=dict)
    # When reminder-sweep last completed; else since when it should have (its deployment's creation).
    sweep_completed_at: datetime | None = None
    sweep_watched_since: datetime | None = None


def _rate(
    failed: int, total: int, threshold: float, minimum: int, what: str, window: int
) -> tuple[bool, str]:
    share = failed / total if total else 0.0
    firing = total >= minimum and share > threshold
    detail = f"{failed} of {total} {what} failed in the last {window} min ({share:.1%}; alert above "
    detail += f"{threshold:.1%}" + (f", counted from {minimum})" if total < minimum else ")")
    return firing, detail


def webhook_error_rate(session: Session, settings: Settings, now: datetime) -> Reading:
    since = now - timedelta(minutes=settings.alert_window_minutes)
    rows = session.exec(
        select(WebhookEvent.status, func.count())
        .where(
            col(WebhookEvent.processed_at) >= since,
            col(WebhookEvent.status).in_([InboxStatus.PROCESSED, InboxStatus.FAILED]),
        )
        .group_by(WebhookEvent.status)
    ).all()
    counts = {str(status): n for status, n in rows}
    failed, total = counts.get(InboxStatus.FAILED, 0), sum(counts.values())
    firing, detail = _rate(
        failed,
        total,
        settings.alert_webhook_error_rate,
        settings.alert_min_events,
        "webhook events",
        settings.alert_window_minutes,
    )
    return Reading(WEBHOOK_ERROR_RATE.name, firing, detail)


# A send that reached an end: what the failure rates count (pending, sending, suppressed, dropped do not).
_SMS_ENDS = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.SANDBOXED, MessageStatus.BLOCKED)
_EMAIL_ENDS = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.SANDBOXED)


def _send_failure_rate(
    session: Session,
    settings: Settings,
    now: datetime,
    channel: Channel,
    ok: tuple[MessageStatus, ...],
    failures: tuple[MessageStatus, ...],
    threshold: float,
) -> tuple[bool, str]:
    since = now - timedelta(minutes=settings.alert_window_minutes)
    rows = session.exec(
        select(OutboundMessage.status, func.count())
        .where(
            OutboundMessage.channel == channel,
            col(OutboundMessage.updated_at) >= since,
            col(OutboundMessage.status).in_([*ok, *failures]),
        )
        .group_by(OutboundMessage.status)
    ).all()
    counts = {str(status): n for status, n in rows}
    failed = sum(counts.get(status, 0) for status in failures)
    what = f"{channel.value.upper() if channel == Channel.SMS else channel.value} sends"
    return _rate(
        failed,
        sum(counts.values()),
        threshold,
        settings.alert_min_events,
        what,
        settings.alert_window_minutes,
    )


def sms_failure_rate(session: Session, settings: Settings, now: datetime) -> Reading:
    firing, detail = _send_failure_rate(
        session,
        settings,
        now,
        Channel.SMS,
        _SMS_ENDS,
        (MessageStatus.FAILED,),
        settings.alert_sms_failure_rate,
    )
    return Reading(SMS_FAILURE_RATE.name, firing, detail)


def email_failure_rate(session: Session, settings: Settings, now: datetime) -> Reading:
    firing, detail = _send_failure_rate(
        session,
        settings,
        now,
        Channel.EMAIL,
        _EMAIL_ENDS,
        (MessageStatus.FAILED, MessageStatus.BOUNCED),
        settings.alert_email_failure_rate,
    )
    return Reading(EMAIL_FAILURE_RATE.name, firing, detail)


def inbox_backlog(session: Session, settings: Settings, now: datetime) -> Reading:
    count, oldest = session.exec(
        select(func.count(), func.min(WebhookEvent.received_at)).where(
            col(WebhookEvent.status).in_([InboxStatus.RECEIVED, InboxStatus.DISPATCHED])
        )
    ).one()
    limit = settings.alert_inbox_backlog_minutes
    if not count or oldest is None:
        return Reading(INBOX_BACKLOG.name, False, "no webhook event waiting")
    if oldest.tzinfo is None:  # in case an aggregate comes back without the column type's zone
        oldest = oldest.replace(tzinfo=UTC)
    age = (now - oldest).total_seconds() / 60
    detail = (
        f"{count} webhook event(s) not yet processed, the oldest {age:.0f} min old (alert after {limit} min)"
    )
    return Reading(INBOX_BACKLOG.name, age > limit, detail)


def google_disconnected(session: Session) -> Reading:
    ids = session.exec(
        select(GoogleConnection.id).where(GoogleConnection.status == GoogleConnectionStatus.DISCONNECTED)
    ).all()
    if not ids:
        return Reading(GOOGLE_DISCONNECTED.name, False, "no Google connection is disconnected")
    listed = ", ".join(str(i) for i in ids)
    return Reading(
        GOOGLE_DISCONNECTED.name,
        True,
        f"Google connection {listed} is disconnected (Google refused its token): run "
        "`avatar-crm google connect`",
    )


def reconciliation_missing(session: Session) -> Reading:
    run = session.exec(
        select(WixReconciliation)
        .where(WixReconciliation.status == "completed")
        .order_by(col(WixReconciliation.finished_at).desc(), col(WixReconciliation.id).desc())
        .limit(1)
    ).first()
    if run is None:
        return Reading(RECONCILIATION_MISSING.name, False, "no completed reconciliation run")
    detail = (
        f"reconciliation run {run.id}: {run.missing} missing, {run.stale} stale, {run.mismatched} "
        f"mismatched of {run.wix_total} Wix bookings ({run.fed} fed to booking intake)"
    )
    return Reading(RECONCILIATION_MISSING.name, bool(run.missing or run.stale), detail)


def deployments_failing(facts: PrefectFacts) -> list[Reading]:
    return [
        Reading(f"{DEPLOYMENT_FAILED.name}:{deployment}", why is not None, why or "its latest run completed")
        for deployment, why in sorted(facts.failing.items())
    ]


def reminder_sweep_stale(facts: PrefectFacts, settings: Settings, now: datetime) -> Reading | None:
    since = facts.sweep_completed_at or facts.sweep_watched_since
    if since is None:
        return None  # the deployment is not known to Prefect: nothing to measure
    limit = settings.alert_reminder_sweep_minutes
    minutes = (now - since).total_seconds() / 60
    what = "last completed" if facts.sweep_completed_at else "has not completed since it was deployed"
    detail = f"reminder-sweep {what} {minutes:.0f} min ago (alert after {limit} min)"
    if not facts.sweep_completed_at:
        detail = f"reminder-sweep {what}, {minutes:.0f} min ago (alert after {limit} min)"
    return Reading(REMINDER_SWEEP_STALE.name, minutes > limit, detail)


def evaluate(
    session: Session, settings: Settings, now: datetime, facts: PrefectFacts | None
) -> list[Reading]:
    """Every condition's reading now: those from the database always, those from Prefect when given."""
    readings = [
        webhook_error_rate(session, settings, now),
        sms_failure_rate(session, settings, now),
        email_failure_rate(session, settings, now),
        inbox_backlog(session, settings, now),
        google_disconnected(session),
        reconciliation_missing(session),
    ]
    if facts is not None:
        readings += deployments_failing(facts)
        sweep = reminder_sweep_stale(facts, settings, now)
        if sweep is not None:
            readings.append(sweep)
    return readings
