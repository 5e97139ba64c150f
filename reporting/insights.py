"""Booking insights: the weekly section of the report, what a clinic manager would act on, with the numbers.

Over the appointments of a clinic-local week (Monday to Sunday by default: the 7 days ending on the day
reported) beside the week before, computed from the CRM's own rows (definitions in docs/reporting.md):

- **cancellation rate** and **no-reply rate** by service, weekday, time of day and lead time;
- **reminders followed by a confirmation**, per reminder offset (24h, 2h…);
- **reschedules**: how many appointments were moved, by service, which way and how far, and from which slot;
- **busiest and emptiest slots** (weekday × time of day);
- **week-on-week changes** that are statistically real (`reporting/stats.py`: a two-proportion z-test, or
  Fisher's exact test for small expected counts; at least `MIN_SAMPLE` per group; Holm-adjusted, α 0.05).

The database does the grouping: each booking is put in its clinic-local hour by a `CASE` over the hour
boundaries (a balanced tree of comparisons, so DST and half-hour zones come out right on SQLite and
PostgreSQL alike), and rows are counted by hour, service (its blind index `service_key`), status, lead-time
band and flags. Only the few distinct service names are decrypted, for display; no contact is read, and no
patient detail reaches the sentences, the charts or the optional language model (`phrase_summary`).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Engine, and_, case, exists, func, literal_column, select

from messaging.reminder_policy import ReminderPolicy
from models import (
    AuditLog,
    Booking,
    BookingStatus,
    Channel,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Settings,
    get_settings,
)
from reporting import charts
from reporting.charts import Series
from reporting.kpis import clinic_timezone, day_boundaries, reader
from reporting.stats import ALPHA, MIN_SAMPLE, TEST_NAMES, Proportion, Result, compare, describe_p, holm

_BOOKING = Booking.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboundMessage.__table__  # type: ignore[attr-defined]
_AUDIT = AuditLog.__table__  # type: ignore[attr-defined]

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Time of day, clinic-local: (label, first hour).
BANDS = (("morning", 0), ("afternoon", 12), ("evening", 17))
# Lead time (booked → appointment): (label, from days). The CRM's first record of the booking is the booking.
LEADS = (
    ("under 1 day", 0.0),
    ("1–3 days", 1.0),
    ("3–7 days", 3.0),
    ("1–2 weeks", 7.0),
    ("2 weeks or more", 14.0),
)
NOT_TAKEN = (BookingStatus.DECLINED, BookingStatus.WAITING_LIST)  # requests the clinic never took: left out
REACHED = (MessageStatus.SENT, MessageStatus.DELIVERED)  # a reminder the provider accepted
THIS, PREVIOUS = "this week", "previous week"
COLORS = {THIS: "#1c7ed6", PREVIOUS: "#adb5bd", "cancelled": "#e03131", "no reply": "#f08c00"}


def band_of(hour: int) -> str:
    return [label for label, first in BANDS if hour >= first][-1]


# --- reading -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A count of appointments sharing everything the insights look at."""

    week: int  # 0: the previous week, 1: this week
    weekday: int  # 0 = Monday, clinic-local
    hour: int  # clinic-local
    service: str  # display name ("unnamed service" when the booking has none)
    status: str
    lead: str
    reminded: bool  # a reminder SMS the provider accepted
    replied: bool  # an SMS reply from the patient attributed to the booking
    confirmed: bool  # the patient confirmed by SMS
    moved: bool  # the appointment time changed at least once
    count: int

    @property
    def cancelled(self) -> bool:
        return self.status == BookingStatus.CANCELED

    @property
    def slot(self) -> str:
        return f"{WEEKDAYS[self.weekday][:3]} {band_of(self.hour)}"


@dataclass(frozen=True)
class Reminder:
    week: int
    label: str  # the reminder offset's label (`24h`), "other" for one the settings no longer name
    followed: (
        bool  # the next thing after it (before another reminder, before the appointment): a confirmation
    )
    count: int


@dataclass(frozen=True)
class Move:
    week: int  # of the appointment's time now
    service: str
    earlier: bool
    shift_days: float
    from_slot: str  # weekday × time of day it was moved from
    notice_hours: float  # how long before the old time it was moved


def _hour_bounds(first: date, last: date, tz: ZoneInfo) -> list[datetime]:
    """Every clinic-local hour boundary from `first` 00:00 to the midnight after `last`, as UTC instants."""
    midnights = day_boundaries(first, last, tz)
    bounds = []
    for index, midnight in enumerate(midnights[:-1]):
        day = first + timedelta(days=index)
        bounds.append(midnight)
        for hour in range(1, 24):
            moment = datetime.combine(day, time(hour), tzinfo=tz).astimezone(UTC)
            if bounds[-1] < moment < midnights[index + 1]:  # a DST gap's hour does not exist
                bounds.append(moment)
    bounds.append(midnights[-1])
    return bounds


def _index(column: ColumnElement[Any], bounds: Sequence[datetime]) -> ColumnElement[Any]:
    """Which interval of `bounds` the instant falls in: a balanced tree of CASEs, log2(n) comparisons."""

    def tree(low: int, high: int) -> ColumnElement[Any]:
        if high - low == 1:
            return literal_column(str(low))
        middle = (low + high) // 2
        return case((column < bounds[middle], tree(low, middle)), else_=tree(middle, high))

    return tree(0, len(bounds) - 1)


def _days_between(
    engine: Engine, later: ColumnElement[Any], earlier: ColumnElement[Any]
) -> ColumnElement[Any]:
    if engine.dialect.name == "postgresql":
        return func.extract("epoch", later - earlier) / 86_400.0
    return func.julianday(later) - func.julianday(earlier)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return case((condition, 1), else_=0)


def _service_names(engine: Engine, keys: Iterable[str | None]) -> dict[str | None, str]:
    """The display name of each service blind index: one booking's name per key, decrypted (a handful)."""
    wanted = [key for key in set(keys) if key is not None]
    names: dict[str | None, str] = {None: "unnamed service"}
    if not wanted:
        return names
    b = _BOOKING.c
    first = select(func.min(b.id)).where(b.service_key.in_(wanted)).group_by(b.service_key)
    with engine.connect() as connection:
        for key, name in connection.execute(select(b.service_key, b.service_name).where(b.id.in_(first))):
            names[key] = name or "unnamed service"
    return names


def _reminded(b: Any) -> ColumnElement[bool]:
    o = _OUTBOX.c
    return exists().where(
        o.booking_id == b.id, o.kind == MessageKind.REMINDER, o.channel == Channel.SMS, o.status.in_(REACHED)
    )


def _audit_on(b: Any, action: str) -> Any:
    a = _AUDIT.c
    return exists().where(a.entity_type == "booking", a.entity_id == b.id, a.action == action)


def _moved(a: Any) -> ColumnElement[bool]:
    return a.detail["previous_start_at"].as_string() != a.detail["start_at"].as_string()


def read_cells(
    engine: Engine, bounds: Sequence[datetime], second_week: datetime, tz: ZoneInfo
) -> tuple[list[Cell], dict[str | None, str]]:
    """The appointments of the fortnight in `bounds` (hourly; the second week from `second_week`), counted by
    everything the insights use."""
    b, a = _BOOKING.c, _AUDIT.c
    moved = exists().where(
        a.entity_type == "booking", a.entity_id == b.id, a.action == "booking.updated", _moved(a)
    )
    days = _days_between(engine, b.start_at, b.created_at)
    lead = case(
        *((days < LEADS[i + 1][1], literal_column(str(i))) for i in range(len(LEADS) - 1)),
        else_=literal_column(str(len(LEADS) - 1)),
    )
    inner = select(
        _index(b.start_at, bounds).label("hour"),
        b.service_key.label("service"),
        b.status.label("status"),
        lead.label("lead"),
        _flag(_reminded(b)).label("reminded"),
        _flag(_audit_on(b, "sms.triaged")).label("replied"),
        _flag(b.patient_confirmed_at.is_not(None)).label("confirmed"),
        _flag(moved).label("moved"),
    ).where(b.start_at >= bounds[0], b.start_at < bounds[-1], b.status.not_in(NOT_TAKEN))
    sub = inner.subquery()
    columns = [
        sub.c[k] for k in ("hour", "service", "status", "lead", "reminded", "replied", "confirmed", "moved")
    ]
    with engine.connect() as connection:
        rows = list(connection.execute(select(*columns, func.count()).group_by(*columns)))
    names = _service_names(engine, (row[1] for row in rows))
    cells = []
    for hour, service, status, lead_index, reminded, replied, confirmed, was_moved, count in rows:
        local = bounds[int(hour)].astimezone(tz)
        week = 1 if bounds[int(hour)] >= second_week else 0
        cells.append(
            Cell(
                week,
                local.weekday(),
                local.hour,
                names.get(service, "unnamed service"),
                status,
                LEADS[int(lead_index)][0],
                bool(reminded),
                bool(replied),
                bool(confirmed),
                bool(was_moved),
                int(count),
            )
        )
    return cells, names


def read_reminders(engine: Engine, weeks: Sequence[datetime], labels: Sequence[str]) -> list[Reminder]:
    """Reminders sent for the fortnight's appointments, by offset label and whether a confirmation
    followed."""
    b = _BOOKING.c
    r = _OUTBOX.alias("r")
    later = _OUTBOX.alias("later")
    label = case(
        *(
            (r.c.idempotency_key.like(f"%:reminder-{name}:%"), literal_column(f"'{index}'"))
            for index, name in enumerate(labels)
        ),
        else_=literal_column("'-1'"),
    )
    confirmed = b.patient_confirmed_at
    another_first = exists().where(
        later.c.booking_id == r.c.booking_id,
        later.c.kind == MessageKind.REMINDER,
        later.c.status.in_(REACHED),
        later.c.sent_at > r.c.sent_at,
        later.c.sent_at <= confirmed,
    )
    followed = and_(confirmed >= r.c.sent_at, confirmed < b.start_at, ~another_first)
    inner = (
        select(
            _index(b.start_at, weeks).label("week"),
            label.label("label"),
            _flag(followed).label("followed"),
        )
        .select_from(r.join(_BOOKING, b.id == r.c.booking_id))
        .where(
            r.c.kind == MessageKind.REMINDER,
            r.c.channel == Channel.SMS,
            r.c.status.in_(REACHED),
            b.start_at >= weeks[0],
            b.start_at < weeks[-1],
            b.status.not_in(NOT_TAKEN),
        )
    )
    sub = inner.subquery()
    columns = [sub.c.week, sub.c.label, sub.c.followed]
    with engine.connect() as connection:
        rows = connection.execute(select(*columns, func.count()).group_by(*columns))
        return [
            Reminder(int(week), labels[int(index)] if int(index) >= 0 else "other", bool(flag), int(count))
            for week, index, flag, count in rows
        ]


def read_moves(
    engine: Engine, weeks: Sequence[datetime], tz: ZoneInfo, names: dict[str | None, str]
) -> list[Move]:
    """Each time an appointment of the fortnight was moved (booking intake's audit: the old and new start)."""
    b, a = _BOOKING.c, _AUDIT.c
    query = (
        select(
            _index(b.start_at, weeks),
            b.service_key,
            a.at,
            a.detail["start_at"].as_string(),
            a.detail["previous_start_at"].as_string(),
        )
        .select_from(_AUDIT.join(_BOOKING, and_(a.entity_type == "booking", a.entity_id == b.id)))
        .where(
            a.action == "booking.updated",
            _moved(a),
            b.start_at >= weeks[0],
            b.start_at < weeks[-1],
            b.status.not_in(NOT_TAKEN),
        )
    )
    moves = []
    with engine.connect() as connection:
        for week, service, at, new, old in connection.execute(query):
            new_at, old_at = (datetime.fromisoformat(value) for value in (new, old))
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            local_old = old_at.astimezone(tz)
            moves.append(
                Move(
                    int(week),
                    names.get(service) or _service_names(engine, [service]).get(service, "unnamed service"),
                    new_at < old_at,
                    abs((new_at - old_at).total_seconds()) / 86_400,
                    f"{WEEKDAYS[local_old.weekday()][:3]} {band_of(local_old.hour)}",
                    (old_at - at).total_seconds() / 3600,
                )
            )
    return moves


# --- findings ----------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One hypothesis test of the section; `adjusted` and `real` are set once all are known (Holm)."""

    about: str
    a: Proportion
    b: Proportion
    result: Result
    family: str  # "week": Holm-adjusted together; else alone (its p already Bonferroni'd for picking)
    adjusted: float | None = None

    @property
    def real(self) -> bool:
        return self.adjusted is not None and self.adjusted < ALPHA

    def verdict(self) -> str:
        if self.result.test is None or self.adjusted is None:
            return f"not tested: fewer than {MIN_SAMPLE} in a group"
        name = TEST_NAMES[self.result.test]
        if self.real:
            return f"a real difference ({name}, {self.adjustment} {describe_p(self.adjusted)})"
        return f"within chance at α = {ALPHA:g} ({name}, {self.adjustment} {describe_p(self.adjusted)})"

    @property
    def adjustment(self) -> str:
        return "Holm-adjusted" if self.family == "week" else "adjusted for the groups compared,"


@dataclass
class Finding:
    key: str
    title: str
    sentences: list[str] = field(default_factory=list)
    chart: str | None = None


@dataclass(frozen=True)
class Insights:
    first_day: date  # of this week
    last_day: date
    findings: list[Finding]
    tests: list[Check]
    facts: dict[str, Any]  # the aggregates the sentences are made of (what a language model may see)
    summary: str | None = None  # phrased by the language model, when configured

    @property
    def charts(self) -> dict[str, str]:
        return {f"insights-{f.key}": f.chart for f in self.findings if f.chart}

    @property
    def title(self) -> str:
        return f"Booking insights — week {self.first_day:%a %d %b} to {self.last_day:%a %d %b %Y}"

    def markdown(self) -> list[str]:
        lines = [f"## {self.title}", ""]
        if self.summary:
            lines += [
                f"> {self.summary}",
                "",
                "_(Summary phrased by the language model from the figures below.)_",
                "",
            ]
        for finding in self.findings:
            lines += [f"### {finding.title}", ""]
            lines += [f"- {sentence}" for sentence in finding.sentences] + [""]
            if finding.chart:
                lines += [charts.markdown_image(finding.title, finding.chart), ""]
        lines += [
            "Tests: two-proportion z-test (Fisher's exact test when an expected count is below 5), at "
            f"least {MIN_SAMPLE} per group, α = {ALPHA:g}; week-on-week changes Holm-adjusted over the "
            f"{sum(t.family == 'week' for t in self.tests)} compared, a highest group against the rest "
            "Bonferroni-adjusted for the groups it was picked from. Definitions: docs/reporting.md. "
            "Aggregates only, no patient details.",
            "",
        ]
        return lines

    def text(self) -> list[str]:
        lines = [self.title, ""]
        if self.summary:
            lines += [self.summary, ""]
        for finding in self.findings:
            lines += [finding.title + ":"] + [f"  - {sentence}" for sentence in finding.sentences] + [""]
        return lines


def _proportion(
    cells: Iterable[Cell], hit: Callable[[Cell], bool], among: Callable[[Cell], bool] = lambda c: True
) -> Proportion:
    counted = [c for c in cells if among(c)]
    return Proportion(sum(c.count for c in counted if hit(c)), sum(c.count for c in counted))


def _by(
    cells: Sequence[Cell],
    key: Callable[[Cell], str],
    order: Sequence[str] | None,
    hit: Callable[[Cell], bool],
    among: Callable[[Cell], bool],
) -> dict[str, Proportion]:
    groups: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[key(cell)].append(cell)
    names = [n for n in order if n in groups] if order else sorted(groups)
    return {name: _proportion(groups[name], hit, among) for name in names}


_Dimension = tuple[str, str, Callable[[Cell], str], Sequence[str] | None]
DIMENSIONS: tuple[_Dimension, ...] = (
    ("service", "service", lambda c: c.service, None),
    ("weekday", "weekday", lambda c: WEEKDAYS[c.weekday], WEEKDAYS),
    ("time-of-day", "time of day", lambda c: band_of(c.hour), [label for label, _ in BANDS]),
    ("lead-time", "lead time", lambda c: c.lead, [label for label, _ in LEADS]),
)


class _Builder:
    def __init__(
        self, cells: list[Cell], reminders: list[Reminder], moves: list[Move], first: date, last: date
    ) -> None:
        self.cells, self.reminders, self.moves = cells, reminders, moves
        self.now = [c for c in cells if c.week == 1]
        self.before = [c for c in cells if c.week == 0]
        self.first, self.last = first, last
        self.tests: list[Check] = []
        self.pending: list[Callable[[], None]] = []  # sentences written once the tests are adjusted
        self.facts: dict[str, Any] = {"week": f"{first.isoformat()} to {last.isoformat()}"}

    def test(self, about: str, a: Proportion, b: Proportion, groups: int = 1, family: str = "") -> Check:
        """Test a against b; `groups`: how many candidates the tested one was picked from (Bonferroni)."""
        result = compare(a, b)
        if result.p is not None:
            result = Result(result.test, min(1.0, result.p * groups))
        test = Check(about, a, b, result, family)
        self.tests.append(test)
        return test

    # -- rates by dimension

    def rates(
        self, metric: str, noun: str, hit: Callable[[Cell], bool], among: Callable[[Cell], bool]
    ) -> list[Finding]:
        findings = []
        total = _proportion(self.now, hit, among)
        self.facts[f"{metric} rate"] = total.describe()
        for key, label, keyer, order in DIMENSIONS:
            finding = Finding(
                f"{metric.replace(' ', '-')}-by-{key}", f"{metric.capitalize()} rate by {label}"
            )
            groups = _by(self.now, keyer, order, hit, among)
            previous = _by(self.before, keyer, order, hit, among)
            eligible = {name: p for name, p in groups.items() if p.total >= MIN_SAMPLE}
            self.facts[f"{metric} rate by {label}"] = {
                name: p.describe() for name, p in groups.items() if p.total
            }
            if not total.total:
                finding.sentences.append(f"No {noun} this week.")
            elif len(eligible) < 2:
                finding.sentences.append(
                    f"{metric.capitalize()} rate {total.describe()} overall; too few {noun} to compare by "
                    f"{label} (fewer than {MIN_SAMPLE} in all but {len(eligible)} group(s))."
                )
            else:
                top = max(eligible, key=lambda n: (eligible[n].rate or 0.0, eligible[n].total))
                rest = Proportion(total.hits - groups[top].hits, total.total - groups[top].total)
                test = self.test(
                    f"{metric} rate: {label} {top} against the rest", groups[top], rest, len(eligible)
                )

                sentence = (
                    f"Highest {metric} rate by {label}: {top}, {groups[top].describe()}, against "
                    f"{rest.describe()} for the rest — "
                )
                self.pending.append(
                    lambda f=finding, s=sentence, t=test: f.sentences.insert(0, f"{s}{t.verdict()}.")
                )
                small = [name for name, p in groups.items() if 0 < p.total < MIN_SAMPLE]
                if small:
                    finding.sentences.append(
                        f"Not compared (fewer than {MIN_SAMPLE} {noun}): "
                        + ", ".join(f"{n} {groups[n].describe()}" for n in small)
                        + "."
                    )
            names = list(dict.fromkeys([*groups, *previous]))
            finding.chart = charts.grouped_bars(
                f"{metric.capitalize()} rate by {label} (%)",
                names,
                [
                    Series(THIS, COLORS[THIS], [_pct(groups.get(n)) for n in names]),
                    Series(PREVIOUS, COLORS[PREVIOUS], [_pct(previous.get(n)) for n in names]),
                ],
                unit="%",
            )
            findings.append(finding)
        return findings

    # -- reminders followed by a confirmation

    def reminder_finding(self) -> Finding:
        finding = Finding("reminders", "Reminders followed by a confirmation")
        by_week: dict[int, dict[str, Proportion]] = {0: {}, 1: {}}
        for r in self.reminders:
            table = by_week[r.week]
            table[r.label] = table.get(r.label, Proportion(0, 0)) + Proportion(
                r.count if r.followed else 0, r.count
            )
        now, before = by_week[1], by_week[0]
        labels = list(dict.fromkeys([*now, *before]))
        self.facts["reminders followed by a confirmation"] = {n: p.describe() for n, p in now.items()}
        if not now:
            finding.sentences.append("No reminder was sent for this week's appointments.")
        for name in labels:
            if name in now:
                finding.sentences.append(
                    f"The {name} reminder was followed by the patient's confirmation {now[name].describe()}"
                    + (f" (previous week {before[name].describe()})." if name in before else ".")
                )
        eligible = {n: p for n, p in now.items() if p.total >= MIN_SAMPLE}
        if len(eligible) >= 2:
            best = max(eligible, key=lambda n: eligible[n].rate or 0.0)
            worst = min(eligible, key=lambda n: eligible[n].rate or 0.0)
            test = self.test(
                f"confirmations after the {best} reminder against the {worst}",
                eligible[best],
                eligible[worst],
                len(eligible) * (len(eligible) - 1) // 2,
            )
            self.pending.append(
                lambda: finding.sentences.append(
                    f"The {best} reminder brings the most confirmations, {eligible[best].describe()}, "
                    "against "
                    f"{eligible[worst].describe()} for the {worst} — {test.verdict()}."
                )
            )
        finding.chart = charts.grouped_bars(
            "Reminders followed by a confirmation (%)",
            labels,
            [
                Series(THIS, COLORS[THIS], [_pct(now.get(n)) for n in labels]),
                Series(PREVIOUS, COLORS[PREVIOUS], [_pct(before.get(n)) for n in labels]),
            ],
            unit="%",
        )
        return finding

    # -- reschedules

    def reschedule_finding(self) -> Finding:
        finding = Finding("reschedules", "Reschedules")
        moved = _proportion(self.now, lambda c: c.moved)
        self.facts["appointments moved"] = moved.describe()
        finding.sentences.append(
            f"{moved.describe()} of this week's appointments had been moved at least once."
        )
        moves = [m for m in self.moves if m.week == 1]
        if moves:
            earlier = sum(m.earlier for m in moves)
            shift = statistics.median(m.shift_days for m in moves)
            short = sum(0 <= m.notice_hours < 48 for m in moves)
            finding.sentences.append(
                f"{len(moves):,} move(s): {len(moves) - earlier:,} later, {earlier:,} earlier, "
                "by a median of "
                f"{shift:.1f} days; {short:,} made less than 48 hours before the old time."
            )
            slot, count = Counter(m.from_slot for m in moves).most_common(1)[0]
            finding.sentences.append(f"Most often moved away from: {slot} ({count:,} of {len(moves):,}).")
            self.facts["moves"] = {
                "later": len(moves) - earlier,
                "earlier": earlier,
                "median shift days": round(shift, 1),
                "moved away from": slot,
            }
        by_service = _by(self.now, lambda c: c.service, None, lambda c: c.moved, lambda c: True)
        eligible = {n: p for n, p in by_service.items() if p.total >= MIN_SAMPLE}
        if len(eligible) >= 2:
            top = max(eligible, key=lambda n: eligible[n].rate or 0.0)
            rest = Proportion(moved.hits - by_service[top].hits, moved.total - by_service[top].total)
            test = self.test(f"moved: service {top} against the rest", by_service[top], rest, len(eligible))
            self.pending.append(
                lambda: finding.sentences.append(
                    f"Moved most: {top}, {by_service[top].describe()}, against {rest.describe()} "
                    "for the other "
                    f"services — {test.verdict()}."
                )
            )
        names = list(by_service)
        finding.chart = charts.grouped_bars(
            "Appointments moved, by service (%)",
            names,
            [Series(THIS, COLORS[THIS], [_pct(by_service[n]) for n in names])],
            unit="%",
        )
        return finding

    # -- slots

    def slot_finding(self) -> Finding:
        finding = Finding("slots", "Busiest and emptiest slots")
        active = [c for c in self.cells if not c.cancelled]
        order = [f"{day[:3]} {band}" for day in WEEKDAYS for band, _ in BANDS]
        now = Counter(
            {c.slot: 0 for c in active}
        )  # a slot with appointments in either week is one the clinic runs
        before = Counter({c.slot: 0 for c in active})
        for c in active:
            (now if c.week == 1 else before)[c.slot] += c.count
        slots = [s for s in order if s in now]
        if not slots:
            finding.sentences.append("No appointment this week or the week before.")
            return finding
        ranked = sorted(slots, key=lambda s: (-now[s], order.index(s)))
        busiest = ranked[:3]
        emptiest = sorted(slots, key=lambda s: (now[s], order.index(s)))[:3]
        total = sum(now.values())
        finding.sentences.append(
            "Busiest: "
            + ", ".join(f"{s} ({now[s]:,} appointments, {_share(now[s], total)})" for s in busiest)
            + "."
        )
        finding.sentences.append(
            "Emptiest of the slots the clinic ran in the fortnight: "
            + ", ".join(f"{s} ({now[s]:,}; previous week {before[s]:,})" for s in emptiest)
            + "."
        )
        self.facts["appointments kept, by slot"] = {s: now[s] for s in slots}
        finding.chart = charts.grouped_bars(
            "Appointments kept, by weekday and time of day",
            slots,
            [
                Series(THIS, COLORS[THIS], [now[s] for s in slots]),
                Series(PREVIOUS, COLORS[PREVIOUS], [before[s] for s in slots]),
            ],
        )
        return finding

    # -- week on week

    def changes_finding(self) -> tuple[Finding, list[Check]]:
        finding = Finding("week-on-week", "Week-on-week changes")
        cancelled = (lambda c: c.cancelled, lambda c: True)
        no_reply = (lambda c: not c.replied, lambda c: c.reminded)
        moved = (lambda c: c.moved, lambda c: True)
        candidates: list[tuple[str, Proportion, Proportion]] = []
        for metric, (hit, among) in (
            ("cancellation rate", cancelled),
            ("no-reply rate", no_reply),
            ("share moved", moved),
        ):
            candidates.append(
                (metric, _proportion(self.before, hit, among), _proportion(self.now, hit, among))
            )
            services = sorted({c.service for c in self.cells})
            for service in services:

                def of(c: Cell, service: str = service, among: Callable[[Cell], bool] = among) -> bool:
                    return c.service == service and among(c)

                candidates.append(
                    (
                        f"{metric} of {service}",
                        _proportion(self.before, hit, of),
                        _proportion(self.now, hit, of),
                    )
                )
        reminders = [r for r in self.reminders]
        if reminders:
            confirm = {
                w: Proportion(
                    sum(r.count for r in reminders if r.week == w and r.followed),
                    sum(r.count for r in reminders if r.week == w),
                )
                for w in (0, 1)
            }
            candidates.append(("share of reminders followed by a confirmation", confirm[0], confirm[1]))
        tests = [
            self.test(f"week on week: {about}", before, now, family="week")
            for about, before, now in candidates
            if before.total or now.total
        ]
        count_now, count_before = sum(c.count for c in self.now), sum(c.count for c in self.before)
        finding.sentences.append(f"{count_now:,} appointments this week, {count_before:,} the week before.")
        self.facts["appointments"] = {"this week": count_now, "previous week": count_before}

        def write() -> None:
            real = [t for t in tests if t.real]
            for t in real:
                about = t.about.removeprefix("week on week: ")
                way = "rose" if (t.b.rate or 0) > (t.a.rate or 0) else "fell"
                finding.sentences.append(
                    f"The {about} {way} from {t.a.describe()} to {t.b.describe()}: {t.verdict()}."
                )
            untested = sum(t.result.test is None for t in tests)
            if not real:
                finding.sentences.append(
                    f"No week-on-week change is statistically real at α = {ALPHA:g} "
                    f"({len(tests) - untested} tested; {untested} with fewer than {MIN_SAMPLE} a week "
                    "not tested)."
                )
            elif untested:
                finding.sentences.append(
                    f"{untested} rate(s) with fewer than {MIN_SAMPLE} a week not tested."
                )
            self.facts["real week-on-week changes"] = [
                f"{t.about.removeprefix('week on week: ')}: {t.a.describe()} → {t.b.describe()}" for t in real
            ]
            shown = real or [t for t in tests if t.result.test is not None and "of " not in t.about][:4]
            labels = [t.about.removeprefix("week on week: ") for t in shown]
            finding.chart = charts.grouped_bars(
                "Week on week: real changes (%)" if real else "Week on week: overall rates (%)",
                labels,
                [
                    Series(PREVIOUS, COLORS[PREVIOUS], [_pct(t.a) for t in shown]),
                    Series(THIS, COLORS[THIS], [_pct(t.b) for t in shown]),
                ],
                unit="%",
            )

        self.pending.append(write)
        return finding, tests

    def build(self) -> Insights:
        changes, _ = self.changes_finding()
        findings = [changes]
        findings += self.rates("cancellation", "appointments", lambda c: c.cancelled, lambda c: True)
        findings += self.rates(
            "no-reply", "reminded appointments", lambda c: not c.replied, lambda c: c.reminded
        )
        findings += [self.reminder_finding(), self.reschedule_finding(), self.slot_finding()]
        weekly = [t for t in self.tests if t.result.p is not None and t.family == "week"]
        for t, adjusted in zip(weekly, holm([t.result.p for t in weekly]), strict=True):  # type: ignore[misc]
            t.adjusted = adjusted
        for t in self.tests:
            if t.family != "week":
                t.adjusted = t.result.p
        for write in self.pending:
            write()
        return Insights(self.first, self.last, findings, self.tests, self.facts)


def _pct(p: Proportion | None) -> float | None:
    return None if p is None or p.rate is None else round(p.rate * 100, 1)


def _share(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f} %" if whole else "—"


def reminder_labels(settings: Settings) -> list[str]:
    """The offset labels reminders are keyed by (`booking:…:reminder-<label>:…`), per the settings."""
    from messaging.reminder_policy import label

    try:
        policy = ReminderPolicy.from_settings(settings)
    except ValueError:
        policy = ReminderPolicy()
    offsets = {*policy.offsets, *(o for own in policy.service_offsets.values() for o in own)}
    return [label(o) for o in sorted(offsets, reverse=True)]


def weekly(last_day: date, settings: Settings | None = None, engine: Engine | None = None) -> Insights:
    """The insights for the 7 clinic-local days ending on `last_day`, beside the 7 before them."""
    settings = settings or get_settings()
    engine = engine or reader(settings.crm_database_url)
    tz = clinic_timezone(settings)
    first = last_day - timedelta(days=13)
    bounds = _hour_bounds(first, last_day, tz)
    weeks = day_boundaries(first, last_day, tz)[::7]
    cells, names = read_cells(engine, bounds, weeks[1], tz)
    reminders = read_reminders(engine, weeks, reminder_labels(settings))
    moves = read_moves(engine, weeks, tz, names)
    return _Builder(cells, reminders, moves, last_day - timedelta(days=6), last_day).build()


# --- the optional language model -------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You write a short weekly summary for the manager of a medical-imaging clinic. You are given only "
    "aggregate figures about appointments (rates and counts by service, weekday, time of day, lead time, "
    "reminder offset, slot) and the week-on-week changes a statistical test found real. Write 3 to 5 plain "
    "sentences saying what to act on, using only these figures; invent nothing, and do not call a change "
    "real "
    'unless it is listed as real. Answer as JSON: {"summary": "..."}.'
)


def summary_prompt(insights: Insights) -> str:
    """What the model is given: the aggregates only (counts, rates, service names), as JSON."""
    return json.dumps(insights.facts, ensure_ascii=False, sort_keys=True)


async def phrase_summary(
    insights: Insights, settings: Settings | None = None, *, transport: Any = None
) -> str | None:
    """A summary phrased by the configured model from the aggregates, or None (no model, or it failed: the
    sentences computed here stand on their own)."""
    from providers.llm import LlmClient, LlmError

    settings = settings or get_settings()
    if not settings.sms_llm_url:
        return None
    try:
        async with LlmClient.from_settings(settings, transport=transport) as client:
            answer = await client.chat_json(SYSTEM_PROMPT, summary_prompt(insights))
    except LlmError:
        return None
    summary = answer.get("summary")
    return summary.strip() if isinstance(summary, str) and summary.strip() else None
