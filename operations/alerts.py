"""Telling a person about an ops alert once: fired, still firing an hour later, resolved.

The state per condition is a row (`models.alerts.OpsAlert`), read `FOR UPDATE` and changed in the same
transaction that queues the notices, so a restart, a retried flow or two evaluations at once never tell
twice. Notices go through the outbox like every message: the staff notice (Prefect UI artifact, and email to
OPS_ALERT_EMAIL / STAFF_NOTIFICATION_EMAIL; `messaging/staff_notices.py`) and, when OPS_ALERT_PHONE is set,
an SMS, asked of `may_send` first (a suppressed number gets nothing queued, and the claim asks again before
sending). Notices carry condition names, counts, ids and deployment names only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from messaging.consent import may_send
from messaging.contacts import normalize_phone
from messaging.outbox import queue_message
from messaging.staff_notices import staff_notices
from models import Channel, MessageKind, OpsAlert, OutboundMessage, Purpose, Settings
from operations.conditions import Reading

logger = logging.getLogger(__name__)

SMS_LIMIT = 306  # two SMS parts: an alert says what and where to look, not everything


class Change(StrEnum):
    FIRED = "fired"
    REPEATED = "repeated"  # still firing, and the last notice is older than ALERT_REPEAT_MINUTES
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Notice:
    name: str
    change: Change
    detail: str
    message_ids: list[int]
    sms: str  # "queued", "not configured", "suppressed (<reason>)", "invalid number"


def _clock(moment: datetime, settings: Settings) -> str:
    return f"{moment.astimezone(ZoneInfo(settings.clinic_timezone)):%Y-%m-%d %H:%M %Z}"


def decide(row: OpsAlert | None, reading: Reading, now: datetime, repeat: timedelta) -> Change | None:
    """What a reading means given what staff were last told (None: nothing to tell)."""
    firing_before = row is not None and row.firing_since is not None
    if reading.firing and not firing_before:
        return Change.FIRED
    if (
        reading.firing
        and row is not None
        and (row.last_notified_at is None or row.last_notified_at <= now - repeat)
    ):
        return Change.REPEATED
    if not reading.firing and firing_before:
        return Change.RESOLVED
    return None


def _texts(
    reading: Reading, change: Change, since: datetime, now: datetime, settings: Settings
) -> tuple[str, str]:
    """The staff notice (markdown) and the SMS text."""
    condition = reading.condition
    title = condition.title + (f" ({reading.name.partition(':')[2]})" if ":" in reading.name else "")
    if change == Change.RESOLVED:
        minutes = (now - since).total_seconds() / 60
        body = (
            f"**Resolved: {title}** - `{reading.name}` cleared at {_clock(now, settings)}, after "
            f"{minutes:.0f} min (firing since {_clock(since, settings)}).\n\nNow: {reading.detail}."
        )
        sms = f"{settings.clinic_name} RESOLVED: {title} cleared after {minutes:.0f} min."
        return body, sms
    prefix = "Alert" if change == Change.FIRED else "Alert still firing"
    repeat = settings.alert_repeat_minutes
    body = (
        f"**{prefix}: {title}** - {reading.detail}.\n\n"
        f"Condition `{reading.name}`: {condition.description}. Threshold: {condition.threshold(settings)}. "
        f"Firing since {_clock(since, settings)}. You are told again every {repeat} min while it lasts, and "
        "once when it clears (docs/alerts.md)."
    )
    sms = f"{settings.clinic_name} {prefix.upper()}: {title}: {reading.detail}"
    return body, sms[:SMS_LIMIT]


def _queue(
    session: Session, settings: Settings, reading: Reading, change: Change, since: datetime, now: datetime
) -> tuple[list[int], str]:
    key = f"ops-alert:{reading.name}:{change.value}:{now:%Y%m%dT%H%M%S}"
    body, sms_text = _texts(reading, change, since, now, settings)
    ids = [
        queue_message(session, notice).id
        for notice in staff_notices(settings, key, body, email_to=settings.alert_email)
    ]
    if not settings.ops_alert_phone.strip():
        return ids, "not configured"
    phone = normalize_phone(settings.ops_alert_phone, settings.default_phone_region)
    if phone is None:
        logger.warning("OPS_ALERT_PHONE is not a valid phone number: no alert SMS")
        return ids, "invalid number"
    refusal = may_send(Channel.SMS, Purpose.TRANSACTIONAL).refusal(
        session, phone, MessageKind.STAFF_NOTIFICATION
    )
    if refusal is not None:
        logger.warning("OPS_ALERT_PHONE is suppressed (%s): no alert SMS", refusal)
        return ids, f"suppressed ({refusal})"
    sms = OutboundMessage(
        idempotency_key=f"{key}:sms",
        channel=Channel.SMS,
        purpose=Purpose.TRANSACTIONAL,
        kind=MessageKind.STAFF_NOTIFICATION,
        recipient=phone,
        body=sms_text,
    )
    ids.append(queue_message(session, sms).id)
    return ids, "queued"


def apply_readings(
    session: Session, settings: Settings, readings: list[Reading], now: datetime
) -> list[Notice]:
    """Record each reading against its condition's state and queue the notices a change calls for."""
    repeat = timedelta(minutes=settings.alert_repeat_minutes)
    notices: list[Notice] = []
    for reading in readings:
        query = select(OpsAlert).where(OpsAlert.name == reading.name)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = session.exec(query).first()
        change = decide(row, reading, now, repeat)
        if row is None:
            if not reading.firing:
                continue  # never fired: no row needed
            row = OpsAlert(name=reading.name)
        row.detail = reading.detail
        row.updated_at = now
        if change is not None:
            since = row.firing_since or now
            ids, sms = _queue(session, settings, reading, change, since, now)
            notices.append(Notice(reading.name, change, reading.detail, ids, sms))
            row.notices += 1
            row.last_notified_at = now
            if change == Change.FIRED:
                row.firing_since, row.resolved_at = now, None
            elif change == Change.RESOLVED:
                row.firing_since, row.resolved_at = None, now
        session.add(row)
        session.flush()
    return notices


def current_state(session: Session) -> list[OpsAlert]:
    """Every condition that ever fired, firing ones first (for `avatar-crm alerts status`)."""
    rows = session.exec(select(OpsAlert)).all()
    return sorted(rows, key=lambda r: (r.firing_since is None, r.name))
