"""When appointment reminders go out: pure rules, no I/O, so booking intake and the sweep agree on them.

Reminders that went wrong before: a "2 hours before" text sent after the appointment because the scheduler had
been down, and a reminder at 3am. So every reminder is planned with a deadline (half its offset before the
appointment; past it the message is dropped, never sent late), SMS quiet hours are checked on the clinic's
local wall clock (DST included), and a reminder that would land in quiet hours moves *earlier*, to just before
they began — or is skipped when that would move it more than half its offset, since a "2 hours before" text
sent the evening before is no longer one. A reminder due too soon after booking is not planned at all.

Offsets are absolute durations (24h before is 24 real hours, also across a DST change); only quiet hours
are wall-clock. All datetimes returned are timezone-aware UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_T = TypeVar("_T")
_R = TypeVar("_R")

_MINUTE = timedelta(minutes=1)
_DAY_MINUTES = 24 * 60
_DURATION = re.compile(r"(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?")
_WINDOW = re.compile(r"([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})")


# --- parsing the settings ----------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """ "24h", "2h", "90m", "2d", "1h30m" (units d, h, m, largest first, each at most once)."""
    cleaned = text.strip().lower()
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None:
        raise ValueError(f"{text!r} is not a duration; write it like 24h, 2h, 90m, 2d or 1h30m")
    days, hours, minutes = (int(match[unit] or 0) for unit in "dhm")
    try:
        return timedelta(days=days, hours=hours, minutes=minutes)
    except OverflowError:
        raise ValueError(f"{text!r} is too long to be a duration") from None


def parse_offsets(text: str) -> tuple[timedelta, ...]:
    """ "24h,2h" → (24h, 2h): longest first, duplicates removed. An empty string means no reminders."""
    if not text.strip():
        return ()
    offsets = []
    for part in text.split(","):
        if not part.strip():
            raise ValueError(f"{text!r} has an empty entry; separate offsets with single commas, e.g. 24h,2h")
        offsets.append(parse_duration(part))
    return _normalise_offsets(offsets)


def parse_quiet_hours(text: str) -> tuple[time, time] | None:
    """ "20:00-08:00" → (20:00, 08:00); the window may wrap midnight or not ("12:00-13:00"). Empty → None."""
    cleaned = text.strip()
    if not cleaned:
        return None
    match = _WINDOW.fullmatch(cleaned)
    if match is None:
        raise ValueError(f"{text!r} is not a window; write it like 20:00-08:00, or leave it empty for none")
    try:
        start, end = time(int(match[1]), int(match[2])), time(int(match[3]), int(match[4]))
    except ValueError:
        raise ValueError(f"{text!r} has a time that does not exist; use 00:00 to 23:59") from None
    _check_window((start, end))
    return start, end


def label(offset: timedelta) -> str:
    """ "24h", "2h", "90m", "2d": a stable name for an offset (it is part of each reminder's idempotency key).

    Whole days from two days up are "Nd", other whole hours "Nh" (so a day is "24h"), anything else "Nm"."""
    _check_offset(offset)
    minutes = offset // _MINUTE
    if minutes % _DAY_MINUTES == 0 and minutes >= 2 * _DAY_MINUTES:
        return f"{minutes // _DAY_MINUTES}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def _check_offset(offset: timedelta) -> None:
    if offset <= timedelta(0) or offset % _MINUTE:
        raise ValueError(f"an offset must be a positive whole number of minutes, not {offset}")


def _normalise_offsets(offsets: Iterable[timedelta]) -> tuple[timedelta, ...]:
    unique = set(offsets)
    for offset in unique:
        _check_offset(offset)
    return tuple(sorted(unique, reverse=True))


def _check_window(window: tuple[time, time]) -> None:
    if window[0] == window[1]:
        raise ValueError(
            f"quiet hours {window[0]:%H:%M}-{window[1]:%H:%M} start and end at the same time; "
            "leave them empty for none"
        )


def _service_key(name: str) -> str:
    return name.strip().casefold()


def _normalise_services(
    services: Mapping[str, Iterable[timedelta]],
) -> MappingProxyType[str, tuple[timedelta, ...]]:
    table: dict[str, tuple[timedelta, ...]] = {}
    names: dict[str, str] = {}
    for name, offsets in services.items():
        key = _service_key(name)
        if not key:
            raise ValueError("a service name must not be empty")
        if key in names:
            raise ValueError(f"{names[key]!r} and {name!r} name the same service (names ignore case)")
        names[key] = name
        table[key] = _normalise_offsets(offsets)
    return MappingProxyType(table)


class ReminderSettings(Protocol):
    """The part of `models.settings.Settings` the policy reads."""

    reminder_offsets: str
    reminder_service_offsets: dict[str, str]
    sms_quiet_hours: str
    reminder_min_lead_minutes: int


# --- the plan ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedReminder:
    label: str
    offset: timedelta
    send_at: datetime  # UTC; not before booking + min_lead, never inside quiet hours
    deadline: datetime  # UTC; start_at - offset / 2: not sent from then on
    moved_for_quiet_hours: bool


@dataclass(frozen=True)
class ReminderPlan:
    reminders: tuple[PlannedReminder, ...]  # longest offset (earliest send_at) first
    skipped: tuple[tuple[str, str], ...]  # (label, why), for the audit log


@dataclass(frozen=True)
class ReminderPolicy:
    offsets: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(hours=2))
    service_offsets: Mapping[str, tuple[timedelta, ...]] = field(default_factory=dict)
    quiet_hours: tuple[time, time] | None = (time(20, 0), time(8, 0))
    min_lead: timedelta = timedelta(minutes=60)
    quiet_margin: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", _normalise_offsets(self.offsets))
        object.__setattr__(self, "service_offsets", _normalise_services(self.service_offsets))
        if self.quiet_hours is not None:
            _check_window(self.quiet_hours)
        if self.min_lead < timedelta(0):
            raise ValueError(f"min_lead must not be negative, not {self.min_lead}")
        if self.quiet_margin <= timedelta(0):  # the first moment of quiet hours is already quiet
            raise ValueError(f"quiet_margin must be positive, not {self.quiet_margin}")

    @classmethod
    def from_settings(cls, settings: ReminderSettings) -> ReminderPolicy:
        """The policy the settings describe; a bad value raises ValueError naming its setting."""
        offsets = _read("REMINDER_OFFSETS", parse_offsets, settings.reminder_offsets)
        services = {
            name: _read(f"REMINDER_SERVICE_OFFSETS[{name!r}]", parse_offsets, text)
            for name, text in settings.reminder_service_offsets.items()
        }
        quiet_hours = _read("SMS_QUIET_HOURS", parse_quiet_hours, settings.sms_quiet_hours)
        minutes = settings.reminder_min_lead_minutes
        if minutes < 0:
            raise ValueError(f"REMINDER_MIN_LEAD_MINUTES: must be 0 or more, not {minutes}")
        return cls(
            offsets=offsets,
            service_offsets=_read("REMINDER_SERVICE_OFFSETS", _normalise_services, services),
            quiet_hours=quiet_hours,
            min_lead=timedelta(minutes=minutes),
        )

    def offsets_for(self, service: str | None) -> tuple[timedelta, ...]:
        """The service's own offsets if it has some (name matched ignoring case), else the default ones."""
        if service is not None:
            own = self.service_offsets.get(_service_key(service))
            if own is not None:
                return own
        return self.offsets

    def plan(self, start_at: datetime, *, now: datetime, timezone: str, service: str | None) -> ReminderPlan:
        """The reminders to queue for an appointment at `start_at`, booked (or re-planned) at `now`."""
        start_at, now, zone = _utc(start_at, "start_at"), _utc(now, "now"), _zone(timezone)
        kept: list[PlannedReminder] = []
        skipped: list[tuple[str, str]] = []
        for offset in self.offsets_for(service):
            outcome = self._plan_one(start_at, offset, now, zone, kept[-1] if kept else None)
            if isinstance(outcome, str):
                skipped.append((label(offset), outcome))
            else:
                kept.append(outcome)
        return ReminderPlan(tuple(kept), tuple(skipped))

    def sendable_now(self, now: datetime, timezone: str) -> datetime | None:
        """None if an SMS may go at `now`; otherwise the next moment it may: when quiet hours end (UTC)."""
        now, zone = _utc(now, "now"), _zone(timezone)
        moment = now
        for _ in range(4):  # a DST jump can end one quiet period inside the next; one pass is the usual case
            period = self._quiet_period(moment, zone)
            if period is None:
                return None if moment == now else moment
            moment = min(instant for instant in _instants_at(period[1], zone) if instant > moment)
        raise RuntimeError(f"no time outside quiet hours found after {now.isoformat()} in {timezone}")

    # --- one reminder ------------------------------------------------------------------------------------

    def _plan_one(
        self,
        start_at: datetime,
        offset: timedelta,
        now: datetime,
        zone: ZoneInfo,
        previous: PlannedReminder | None,
    ) -> PlannedReminder | str:
        """The reminder for one offset, or why there is none."""
        if start_at <= now:
            return "the appointment time has passed"
        intended = start_at - offset
        if intended < now + self.min_lead:  # moving it out of quiet hours could only make it earlier still
            return self._too_late(intended, now, moved=False)
        placed = self._out_of_quiet_hours(intended, offset, zone)
        if isinstance(placed, str):
            return placed
        moved = placed != intended
        if placed < now + self.min_lead:
            return self._too_late(placed, now, moved=moved)
        if previous is not None and placed <= previous.send_at + self.min_lead:
            gap = placed - previous.send_at
            when = f"{_span(gap)} after" if gap >= timedelta(0) else f"{_span(-gap)} before"
            return f"redundant: due {when} the {previous.label} reminder"
        return PlannedReminder(label(offset), offset, placed, start_at - offset / 2, moved)

    def _out_of_quiet_hours(self, intended: datetime, offset: timedelta, zone: ZoneInfo) -> datetime | str:
        """`intended`, or if in quiet hours the moment quiet_margin before they began; or why neither."""
        period = self._quiet_period(intended, zone)
        if period is None:
            return intended
        began = max((i for i in _instants_at(period[0], zone) if i <= intended), default=intended)
        moved = began - self.quiet_margin
        early = intended - moved
        if early > offset / 2:
            return (
                f"quiet hours: moving it earlier would send it {_span(early)} early, "
                f"which defeats a {label(offset)} reminder"
            )
        if self._quiet_period(moved, zone) is not None:  # only with a quiet window nearly a day long
            return f"quiet hours: there is no time outside them in the {_span(self.quiet_margin)} before"
        return moved

    def _too_late(self, send_at: datetime, now: datetime, *, moved: bool) -> str:
        when = f"{_span(send_at - now)} after" if send_at >= now else f"{_span(now - send_at)} before"
        why = " once moved out of quiet hours" if moved else ""
        return f"booked too late: due {when} booking{why} (needs {_span(self.min_lead)} notice)"

    # --- quiet hours -------------------------------------------------------------------------------------

    def _quiet_period(self, moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
        """The local wall-clock (naive) start and end of the quiet period `moment` falls in, or None.

        The window is half-open: with 20:00-08:00, 20:00 is quiet and 08:00 is not."""
        if self.quiet_hours is None:
            return None
        begin, end = self.quiet_hours
        local = _wall(moment, zone)
        clock, day = local.time(), local.date()
        if begin < end:
            return (_at(day, begin), _at(day, end)) if begin <= clock < end else None
        if clock >= begin:
            return _at(day, begin), _at(day + timedelta(days=1), end)
        if clock < end:
            return _at(day - timedelta(days=1), begin), _at(day, end)
        return None


# --- helpers -----------------------------------------------------------------------------------------------


def _read(setting: str, parse: Callable[[_T], _R], value: _T) -> _R:
    try:
        return parse(value)
    except ValueError as error:
        raise ValueError(f"{setting}: {error}") from None


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {moment.isoformat()}")
    return moment.astimezone(UTC)


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {timezone!r}") from None


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock)


def _instants_at(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the local clock reads `wall`: one on most days, two in the hour repeated when
    DST ends; a wall time skipped when DST starts gives the moment of the jump (the first instant past it)."""
    readings = sorted({wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)})
    shown = [instant for instant in readings if _wall(instant, zone) == wall]
    return shown or [_jump(readings[0], readings[-1], zone)]


def _jump(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (before, after] at which the UTC offset changed to after's (bisected to the second)."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _span(span: timedelta) -> str:
    """ "10 minutes", "1 minute", "2h", "11h45m": for the reasons a person reads."""
    minutes = span // _MINUTE
    if minutes < 60:
        return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest}m" if rest else f"{hours}h"
