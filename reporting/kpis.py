"""The plan's KPIs, computed from what the CRM recorded: one definition each, over a window of time.

A window is a half-open interval `[start, end)` of UTC instants; by default a clinic-local day (midnight to
midnight in `CLINIC_TIMEZONE`, so 23 or 25 hours across a daylight-saving change). Everything is counted by
the SQL engine: one scan per table for a whole run of days, each row put in its day by a `CASE` over the
day boundaries, so a 30-day report costs the same few queries as a one-day one (benchmarks/daily_report.py).
Counts of consecutive days add up; rates and percentiles are computed from the summed counts and the
pooled samples, never averaged across days. Definitions, in docs/reporting.md and here:

- **bookings received / applied / failed**: Wix booking events stored in the inbox in the window (sources
  `wix` and `wix-reconcile`), and of those the ones booking intake has `processed` (applied, or found older
  than the revision held: nothing to change) or marked `failed`, as of now.
- **booking sync rate**: over the `wix-reconcile` runs that completed in the window, the bookings the CRM
  already held right (`matching`) over the bookings Wix reported changed (`wix_total`). Not measured when no
  run completed in the window (reconciliation off, or never ran) or Wix reported nothing.
- **SMS sent / delivered / failed**: SMS the provider accepted in the window (`sent_at`; sandboxed ones are
  counted apart, nothing left the machine), and of those the ones a delivery receipt made `delivered` or
  `failed`, as of now. **SMS delivery rate** = delivered / sent. **Refused**: SMS the provider refused
  (failed or blocked without being accepted), counted on the day of the refusal.
- **email sent / delivered / bounced**: email accepted by Gmail or SendGrid in the window; delivered =
  SendGrid confirmed delivery (Gmail reports none); bounced = bounced, or dropped by SendGrid after
  accepting it. **Email deliverability** = (sent − bounced) / sent. **Refused**: refused by Gmail at sending.
- **campaign opens / clicks**: campaign messages first opened / first clicked in the window (our pixel and
  links, and SendGrid's events alike; machine opens are not recorded).
- **webhook latency**: for webhooks stored in the window, receipt → committed (`arrived_at`, when the gateway
  began reading the request, to `received_at`, stamped in the transaction that commits the row) and receipt
  → processed (to `processed_at`, when the flow run marked it processed; processed rows only); p50/p95/p99 by
  nearest rank. Rows not posted to the gateway (`wix-reconcile`) or stored before `arrived_at` existed are
  left out.
- **inbox backlog** at the end of the window: events stored before it and not yet processed or failed at it,
  and the age of the oldest of them.
- **webhook error rate**: of the webhook requests the gateway answered in the window (`webhookoutcome`,
  counted per minute as the answers went out), those answered 4xx (refused: by reason — signature, expired,
  wrong_site, malformed, too_large, headers_too_large, rate_limited, client_error) or 5xx (server_error,
  storage_unavailable), over all of them. Not measured when no webhook request was answered.
- **flow run failure rate per deployment**: flow runs that reached a terminal state in the window (Prefect's
  `end_time`), by deployment: Failed and Crashed over Completed + Failed + Crashed (Cancelled runs are
  counted apart, not as failures); read from the Prefect API by the report (`reporting/flow_runs.py`), not
  measured when Prefect does not answer.
- **opt-outs / opt-ins**: addresses whose consent on a channel was withdrawn / granted in the window (the
  consent ledger; a STOP withdrawing SMS and marketing email counts once per channel), any origin.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Engine, case, create_engine, func, literal, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from models import (
    Channel,
    ConsentAction,
    ConsentEvent,
    InboxStatus,
    MessageStatus,
    OutboundMessage,
    Settings,
    WebhookEvent,
    WebhookOutcome,
    WixReconciliation,
    get_settings,
)
from models.db import get_engine, normalize_url
from models.types import utcnow

BOOKING_SOURCES = ("wix", "wix-reconcile")
NOT_POSTED_SOURCES = ("wix-reconcile",)  # inbox rows the gateway did not receive: no webhook latency

_INBOX = WebhookEvent.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboundMessage.__table__  # type: ignore[attr-defined]
_LEDGER = ConsentEvent.__table__  # type: ignore[attr-defined]
_RECONCILE = WixReconciliation.__table__  # type: ignore[attr-defined]
_OUTCOMES = WebhookOutcome.__table__  # type: ignore[attr-defined]


# --- windows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """`[start, end)` in UTC."""

    start: datetime
    end: datetime


def clinic_timezone(settings: Settings | None = None) -> ZoneInfo:
    return ZoneInfo((settings or get_settings()).clinic_timezone)


def day_boundaries(first: date, last: date, tz: ZoneInfo) -> list[datetime]:
    """Local midnights from `first` to the day after `last`, as UTC instants (len = days + 1)."""
    days = (last - first).days + 1
    return [
        datetime.combine(first + timedelta(days=n), time(0), tzinfo=tz).astimezone(UTC)
        for n in range(days + 1)
    ]


def clinic_day(day: date, tz: ZoneInfo) -> Window:
    start, end = day_boundaries(day, day, tz)
    return Window(start, end)


def yesterday(tz: ZoneInfo, now: datetime | None = None) -> date:
    return ((now or utcnow()).astimezone(tz) - timedelta(days=1)).date()


# --- what is counted ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Additive counts for one window (a day, or days summed), plus the latency samples behind percentiles."""

    bookings_received: int = 0
    bookings_applied: int = 0
    bookings_failed: int = 0
    reconcile_runs: int = 0
    reconcile_wix_total: int = 0
    reconcile_matching: int = 0
    sms_sent: int = 0
    sms_delivered: int = 0
    sms_failed: int = 0
    sms_refused: int = 0
    sms_sandboxed: int = 0
    email_sent: int = 0
    email_sent_gmail: int = 0
    email_sent_sendgrid: int = 0
    email_delivered: int = 0
    email_bounced: int = 0
    email_refused: int = 0
    email_sandboxed: int = 0
    campaign_opens: int = 0
    campaign_clicks: int = 0
    opt_outs: int = 0
    opt_ins: int = 0
    webhook_requests: int = 0  # answered, whatever the answer
    webhook_4xx: Counter[str] = field(default_factory=Counter)  # by reason
    webhook_5xx: Counter[str] = field(default_factory=Counter)  # by reason
    committed_ms: list[float] = field(default_factory=list)
    processed_ms: list[float] = field(default_factory=list)

    def __add__(self, other: Tally) -> Tally:
        total = Tally()
        for f in fields(self):
            setattr(total, f.name, getattr(self, f.name) + getattr(other, f.name))
        return total


@dataclass(frozen=True)
class FlowRunCounts:
    """One deployment's flow runs that finished in a window, by terminal state."""

    completed: int = 0
    failed: int = 0  # Failed and Crashed
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    @property
    def failure_rate(self) -> float | None:
        return _ratio(self.failed, self.finished)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one window: the tally, the rates and percentiles derived from it, and the backlog."""

    window: Window
    tally: Tally
    backlog: int
    backlog_oldest_seconds: float | None
    # Per deployment (`flow/deployment`), from the Prefect API; None: not measured (Prefect did not answer).
    flow_runs: Mapping[str, FlowRunCounts] | None = None

    @property
    def booking_sync_rate(self) -> float | None:
        return _ratio(self.tally.reconcile_matching, self.tally.reconcile_wix_total)

    @property
    def sms_delivery_rate(self) -> float | None:
        return _ratio(self.tally.sms_delivered, self.tally.sms_sent)

    @property
    def email_deliverability(self) -> float | None:
        t = self.tally
        return _ratio(t.email_sent - t.email_bounced, t.email_sent)

    @property
    def webhook_error_rate(self) -> float | None:
        """Webhook requests answered 4xx or 5xx over all those answered."""
        t = self.tally
        return _ratio(t.webhook_4xx.total() + t.webhook_5xx.total(), t.webhook_requests)

    @property
    def webhook_5xx_rate(self) -> float | None:
        return _ratio(self.tally.webhook_5xx.total(), self.tally.webhook_requests)

    @property
    def flow_run_failure_rate(self) -> float | None:
        """Failed and crashed flow runs over finished ones (all deployments); None when not measured."""
        if self.flow_runs is None:
            return None
        failed = sum(c.failed for c in self.flow_runs.values())
        return _ratio(failed, sum(c.finished for c in self.flow_runs.values()))

    def committed_ms(self, p: float) -> float | None:
        return percentile(self.tally.committed_ms, p)

    def processed_ms(self, p: float) -> float | None:
        return percentile(self.tally.processed_ms, p)

    def value(self, key: str) -> float | None:
        """A KPI by key: a property name, or `committed_p95`-style latency percentiles."""
        for prefix, samples in (
            ("committed_p", self.tally.committed_ms),
            ("processed_p", self.tally.processed_ms),
        ):
            if key.startswith(prefix):
                return percentile(samples, float(key.removeprefix(prefix)))
        return getattr(self, key)


# --- targets (the integration plan's success metrics) ----------------------------------------------------

Verdict = Literal["met", "not met", "not measured"]


@dataclass(frozen=True)
class Target:
    key: str  # `Kpis.value` key
    label: str
    comparison: Literal[">=", ">", "<"]
    threshold: float
    unit: Literal["%", "ms"]

    def verdict(self, value: float | None) -> Verdict:
        if value is None:
            return "not measured"
        met = {
            ">=": value >= self.threshold,
            ">": value > self.threshold,
            "<": value < self.threshold,
        }[self.comparison]
        return "met" if met else "not met"

    def describe(self) -> str:
        shown = f"{self.threshold * 100:g} %" if self.unit == "%" else f"{self.threshold / 1000:g} s"
        return f"{self.comparison.replace('>=', '≥')} {shown}"


TARGETS: tuple[Target, ...] = (
    Target("booking_sync_rate", "Booking sync rate", ">=", 1.0, "%"),
    Target("sms_delivery_rate", "SMS delivery rate", ">", 0.98, "%"),
    Target("email_deliverability", "Email deliverability", ">", 0.95, "%"),
    # The plan's "webhook latency < 2 s", held to the 95th percentile of both: the provider's answer, and the
    # event being in the CRM.
    Target("committed_p95", "Webhook receipt → committed, p95", "<", 2000.0, "ms"),
    Target("processed_p95", "Webhook receipt → processed, p95", "<", 2000.0, "ms"),
    # The plan's alert threshold, "error rates > 1 %", as the target for both error rates.
    Target("webhook_error_rate", "Webhook error rate (4xx + 5xx)", "<", 0.01, "%"),
    Target("flow_run_failure_rate", "Flow run failure rate (all deployments)", "<", 0.01, "%"),
)


# --- reading ---------------------------------------------------------------------------------------------


@cache
def _sqlite_reader(url: str) -> Engine:
    """SQLite reads outside the write lock: the system's engine takes it with every BEGIN (models/db.py),
    and a report must not hold up the gateway's inbox writer. WAL readers need no lock at all."""
    return create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})


def reader(url: str | None = None) -> Engine:
    url = normalize_url(url or get_settings().crm_database_url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_reader(url)
    return get_engine(url)


def _bucket(column: ColumnElement[Any], bounds: Sequence[datetime]) -> ColumnElement[Any]:
    """Which window (0…n-1) of consecutive `bounds` the instant falls in; callers keep it inside them."""
    if len(bounds) == 2:
        return literal(0)
    return case(*((column < bound, index) for index, bound in enumerate(bounds[1:-1])), else_=len(bounds) - 2)


def _in_range(column: ColumnElement[Any], bounds: Sequence[datetime]) -> ColumnElement[bool]:
    return (column >= bounds[0]) & (column < bounds[-1])


def _millis(engine: Engine, later: ColumnElement[Any], earlier: ColumnElement[Any]) -> ColumnElement[Any]:
    if engine.dialect.name == "postgresql":
        return func.extract("epoch", later - earlier) * 1000.0
    return (func.julianday(later) - func.julianday(earlier)) * 86_400_000.0


def _grouped(engine: Engine, inner: Any, *keys: str) -> list[Any]:
    """`SELECT keys…, count(*) FROM (inner) GROUP BY keys…`: the CASE is written once, in the subquery, so
    PostgreSQL does not see two differently parameterised copies of it."""
    sub = inner.subquery()
    columns = [sub.c[key] for key in keys]
    with engine.connect() as connection:
        return list(connection.execute(select(*columns, func.count()).group_by(*columns)))


def collect(bounds: Sequence[datetime], engine: Engine | None = None) -> list[Tally]:
    """One `Tally` per window between consecutive `bounds` (ascending UTC instants)."""
    engine = engine or reader()
    tallies = [Tally() for _ in bounds[:-1]]
    _bookings(engine, bounds, tallies)
    _reconciliation(engine, bounds, tallies)
    _messages(engine, bounds, tallies)
    _engagement(engine, bounds, tallies)
    _consent(engine, bounds, tallies)
    _latency(engine, bounds, tallies)
    _webhook_outcomes(engine, bounds, tallies)
    return tallies


def _bookings(engine: Engine, bounds: Sequence[datetime], tallies: list[Tally]) -> None:
    received = _INBOX.c.received_at
    inner = select(_bucket(received, bounds).label("day"), _INBOX.c.status.label("status")).where(
        _INBOX.c.source.in_(BOOKING_SOURCES), _in_range(received, bounds)
    )
    for day, status, count in _grouped(engine, inner, "day", "status"):
        tally = tallies[day]
        tally.bookings_received += count
        if status == InboxStatus.PROCESSED:
            tally.bookings_applied += count
        elif status == InboxStatus.FAILED:
            tally.bookings_failed += count


def _reconciliation(engine: Engine, bounds: Sequence[datetime], tallies: list[Tally]) -> None:
    finished = _RECONCILE.c.finished_at
    day = _bucket(finished, bounds).label("day")
    sub = (
        select(day, _RECONCILE.c.wix_total.label("wix_total"), _RECONCILE.c.matching.label("matching"))
        .where(_RECONCILE.c.status == "completed", _in_range(finished, bounds))
        .subquery()
    )
    query = select(sub.c.day, func.count(), func.sum(sub.c.wix_total), func.sum(sub.c.matching)).group_by(
        sub.c.day
    )
    with engine.connect() as connection:
        for index, runs, wix_total, matching in connection.execute(query):
            tally = tallies[index]
            tally.reconcile_runs += runs
            tally.reconcile_wix_total += int(wix_total or 0)
            tally.reconcile_matching += int(matching or 0)


def _messages(engine: Engine, bounds: Sequence[datetime], tallies: list[Tally]) -> None:
    """Accepted (or sandboxed) messages by the day they were accepted; refused ones by the day refused."""
    m = _OUTBOX.c
    moment = func.coalesce(m.sent_at, m.updated_at)
    refused = (m.sent_at.is_(None)) & m.status.in_([MessageStatus.FAILED, MessageStatus.BLOCKED])
    inner = select(
        _bucket(moment, bounds).label("day"),
        m.channel.label("channel"),
        m.status.label("status"),
        func.coalesce(m.provider, "").label("provider"),
        case((m.sent_at.is_(None), 1), else_=0).label("unsent"),
    ).where(
        m.channel.in_([Channel.SMS, Channel.EMAIL]),
        m.sent_at.is_not(None) | refused,
        _in_range(moment, bounds),
    )
    for day, channel, status, provider, unsent, count in _grouped(
        engine, inner, "day", "channel", "status", "provider", "unsent"
    ):
        tally = tallies[day]
        if channel == Channel.SMS:
            if unsent:
                tally.sms_refused += count
            elif status == MessageStatus.SANDBOXED:
                tally.sms_sandboxed += count
            else:
                tally.sms_sent += count
                tally.sms_delivered += count if status == MessageStatus.DELIVERED else 0
                tally.sms_failed += count if status == MessageStatus.FAILED else 0
        elif unsent:
            tally.email_refused += count
        elif status == MessageStatus.SANDBOXED:
            tally.email_sandboxed += count
        else:
            tally.email_sent += count
            tally.email_sent_gmail += count if provider == "gmail" else 0
            tally.email_sent_sendgrid += count if provider == "sendgrid" else 0
            tally.email_delivered += count if status == MessageStatus.DELIVERED else 0
            undeliverable = status in (MessageStatus.BOUNCED, MessageStatus.FAILED)
            tally.email_bounced += count if undeliverable else 0


def _engagement(engine: Engine, bounds: Sequence[datetime], tallies: list[Tally]) -> None:
    m = _OUTBOX.c
    for column, attribute in ((m.opened_at, "campaign_opens"), (m.clicked_at, "campaign_clicks")):
        inner = select(_bucket(column, bounds).label("day")).where(
            m.campaign_id.is_not(None), _in_range(column, bounds)
        )
        for day, count in _grouped(engine, inner, "day"):
            setattr(tallies[day], attribute, getattr(tallies[day], attribute) + count)


def _consent(engine: Engine, bounds: Sequence[datetime], tallies: list[Tally]) -> None:
    c = _LEDGER.c
    actions = [ConsentAction.WITHDRAWN, ConsentAction.GRANTED]
    # One per address and channel and day, whatever purposes it covered (a STOP writes up to three rows).
    distinct = (
        select(
            _bucket(c.at, bounds).label("day"),
            c.action.label("action"),
            c.channel.label("channel"),
            c.address_hash.label("address"),
        )
        .where(c.action.in_(actions), _in_range(c.at, bounds))
        .distinct()
    )
    for day, action, count in _grouped(engine, distinct, "day", "action"):
        if action == ConsentAction.WITHDRAWN:
            tallies[day].opt_outs += count
        else:
            tallies[day].opt_ins += count


def _latency(engine: Engine, bounds: Sequence[datetime], tallies: list[Tally]) -> None:
    e = _INBOX.c
    processed = case(
        (e.status == InboxStatus.PROCESSED, _millis(engine, e.processed_at, e.arrived_at)),
        else_=literal(None),
    )
    query = select(
        _bucket(e.received_at, bounds), _millis(engine, e.received_at, e.arrived_at), processed
    ).where(e.arrived_at.is_not(None), e.source.not_in(NOT_POSTED_SOURCES), _in_range(e.received_at, bounds))
    with engine.connect() as connection:
        for day, committed_ms, processed_ms in connection.execute(query):
            tally = tallies[day]
            tally.committed_ms.append(float(committed_ms))
            if processed_ms is not None:
                tally.processed_ms.append(float(processed_ms))


def _webhook_outcomes(engine: Engine, bounds: Sequence[datetime], tallies: list[Tally]) -> None:
    o = _OUTCOMES.c
    day = _bucket(o.minute, bounds).label("day")
    sub = (
        select(day, o.status.label("status"), o.reason.label("reason"), o.count.label("n"))
        .where(_in_range(o.minute, bounds))
        .subquery()
    )
    query = select(sub.c.day, sub.c.status, sub.c.reason, func.sum(sub.c.n)).group_by(
        sub.c.day, sub.c.status, sub.c.reason
    )
    with engine.connect() as connection:
        for index, status, reason, count in connection.execute(query):
            tally, n = tallies[index], int(count or 0)
            tally.webhook_requests += n
            if 400 <= status < 500:
                tally.webhook_4xx[reason] += n
            elif status >= 500:
                tally.webhook_5xx[reason] += n


def backlog_at(moment: datetime, engine: Engine | None = None) -> tuple[int, float | None]:
    """Inbox events stored before `moment` and neither processed nor failed at it; the oldest one's age (s).
    A `moment` in the future is taken as now."""
    engine = engine or reader()
    moment = min(moment, utcnow())
    e = _INBOX.c
    query = select(func.count(), func.min(e.received_at)).where(
        e.received_at < moment, e.processed_at.is_(None) | (e.processed_at >= moment)
    )
    with engine.connect() as connection:
        count, oldest = connection.execute(query).one()
    if oldest is None:
        return int(count), None
    oldest = oldest.replace(tzinfo=UTC) if oldest.tzinfo is None else oldest  # SQLite returns it naive
    return int(count), (moment - oldest).total_seconds()


def kpis(window: Window, engine: Engine | None = None) -> Kpis:
    """The KPIs of one window (e.g. `clinic_day(day, tz)`)."""
    engine = engine or reader()
    (tally,) = collect([window.start, window.end], engine)
    return Kpis(window, tally, *backlog_at(window.end, engine))


@dataclass(frozen=True)
class Days:
    """Consecutive clinic-local days, one tally each: what the daily report and its charts are made of."""

    days: list[date]
    bounds: list[datetime]
    tallies: list[Tally]
    backlog: tuple[int, float | None]  # at the end of the last day

    def last(self, n: int) -> Kpis:
        """The KPIs of the last `n` days summed (`last(1)`: the final day)."""
        total = Tally()
        for tally in self.tallies[-n:]:
            total = total + tally
        window = Window(self.bounds[-n - 1], self.bounds[-1])
        return Kpis(window, total, *self.backlog)


def daily(last_day: date, days: int = 30, tz: ZoneInfo | None = None, engine: Engine | None = None) -> Days:
    tz = tz or clinic_timezone()
    engine = engine or reader()
    first = last_day - timedelta(days=days - 1)
    bounds = day_boundaries(first, last_day, tz)
    return Days(
        [first + timedelta(days=n) for n in range(days)],
        bounds,
        collect(bounds, engine),
        backlog_at(bounds[-1], engine),
    )
