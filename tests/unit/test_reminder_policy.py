"""The reminder policy: exact send times and deadlines, in Brisbane (no DST) and Sydney across both 2026 DST
changes, quiet hours on the local wall clock, late bookings, per-service offsets and configuration errors.

Sydney 2026: DST ends Sun 5 Apr 03:00 AEDT → 02:00 AEST (Sat 4 Apr 16:00 UTC); it starts Sun 4 Oct 02:00 AEST
→ 03:00 AEDT (Sat 3 Oct 16:00 UTC). Brisbane is AEST (+10) all year.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.reminder_policy import (
    PlannedReminder,
    ReminderPlan,
    ReminderPolicy,
    label,
    parse_duration,
    parse_offsets,
    parse_quiet_hours,
)
from models.settings import Settings

BRISBANE = "Australia/Brisbane"
SYDNEY = "Australia/Sydney"
H = timedelta(hours=1)
M = timedelta(minutes=1)
DEFAULT = ReminderPolicy()


def local(timezone: str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(timezone))  # type: ignore[misc]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def wall(moment: datetime, timezone: str) -> str:
    """ "2026-10-04 09:00 AEDT": what the clinic's clock shows."""
    return f"{moment.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M %Z}"


def plan(
    start_at: datetime,
    timezone: str,
    *,
    now: datetime | None = None,
    policy: ReminderPolicy = DEFAULT,
    service: str | None = None,
) -> ReminderPlan:
    return policy.plan(start_at, now=now or start_at - timedelta(days=7), timezone=timezone, service=service)


# --- parsing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", 24 * H),
        ("2h", 2 * H),
        ("90m", 90 * M),
        ("2d", 48 * H),
        ("1h30m", 90 * M),
        ("1d12h", 36 * H),
        (" 2H ", 2 * H),
        ("0m", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "2 h", "1.5h", "30m1h", "2h2h", "-2h", "2w", "٣h", "1h 30m"])
def test_parse_duration_refuses_anything_else_and_says_how_to_write_it(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; write it like 24h, 2h, 90m, 2d or 1h30m"):
        parse_duration(text)


def test_parse_duration_refuses_an_overflowing_value() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("1000000000d")


def test_parse_offsets_sorts_longest_first_and_drops_duplicates() -> None:
    assert parse_offsets("2h,24h") == (24 * H, 2 * H)
    assert parse_offsets(" 2h , 120m,1d,24h,90m ") == (24 * H, 2 * H, 90 * M)
    assert parse_offsets("") == ()  # no reminders (e.g. for one service)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24h,,2h", "has an empty entry"),
        ("24h,2h,", "has an empty entry"),
        ("24h,0m", "must be a positive whole number of minutes"),
        ("24h,soon", "'soon' is not a duration"),
    ],
)
def test_parse_offsets_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_offsets(text)


def test_parse_quiet_hours() -> None:
    assert parse_quiet_hours("20:00-08:00") == (time(20), time(8))
    assert parse_quiet_hours(" 12:00 - 13:30 ") == (time(12), time(13, 30))
    assert parse_quiet_hours("7:05-9:00") == (time(7, 5), time(9))
    assert parse_quiet_hours("") is None
    assert parse_quiet_hours("   ") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("20:00-20:00", "start and end at the same time; leave them empty for none"),
        ("25:00-08:00", "has a time that does not exist"),
        ("20:60-08:00", "has a time that does not exist"),
        ("8pm-8am", "is not a window; write it like 20:00-08:00"),
        ("20:00", "is not a window"),
        ("20:00-08:00,12:00-13:00", "is not a window"),
    ],
)
def test_parse_quiet_hours_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_quiet_hours(text)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (24 * H, "24h"),
        (2 * H, "2h"),
        (90 * M, "90m"),
        (48 * H, "2d"),
        (72 * H, "3d"),
        (36 * H, "36h"),
        (45 * M, "45m"),
        (timedelta(days=1, minutes=1), "1441m"),
    ],
)
def test_label_is_stable_and_one_to_one(offset: timedelta, expected: str) -> None:
    assert label(offset) == expected
    assert parse_duration(expected) == offset


@pytest.mark.parametrize("offset", [timedelta(0), -H, timedelta(seconds=90)])
def test_label_refuses_offsets_a_policy_would_refuse(offset: timedelta) -> None:
    with pytest.raises(ValueError, match="positive whole number of minutes"):
        label(offset)


# --- configuration ----------------------------------------------------------------------------------------


def test_default_settings_give_the_default_policy() -> None:
    policy = ReminderPolicy.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert policy == ReminderPolicy()
    assert policy.offsets == (24 * H, 2 * H)
    assert policy.quiet_hours == (time(20), time(8))
    assert policy.min_lead == 60 * M and policy.quiet_margin == 15 * M


def test_settings_are_read() -> None:
    policy = ReminderPolicy.from_settings(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            reminder_offsets="2h,1d",
            reminder_service_offsets={"MRI Scan": "48h,2h", "X-Ray": ""},
            sms_quiet_hours="",
            reminder_min_lead_minutes=30,
        )
    )
    assert policy.offsets == (24 * H, 2 * H)
    assert policy.offsets_for("MRI Scan") == (48 * H, 2 * H)
    assert policy.offsets_for("x-ray") == ()
    assert policy.quiet_hours is None
    assert policy.min_lead == 30 * M


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"reminder_offsets": "24h,tomorrow"}, r"^REMINDER_OFFSETS: 'tomorrow' is not a duration"),
        ({"reminder_offsets": "24h,0h"}, r"^REMINDER_OFFSETS: an offset must be a positive"),
        (
            {"reminder_service_offsets": {"MRI Scan": "2x"}},
            r"^REMINDER_SERVICE_OFFSETS\['MRI Scan'\]: '2x' is not a duration",
        ),
        (
            {"reminder_service_offsets": {"MRI Scan": "2h", "mri scan ": "3h"}},
            r"^REMINDER_SERVICE_OFFSETS: 'MRI Scan' and 'mri scan ' name the same service",
        ),
        (
            {"reminder_service_offsets": {" ": "2h"}},
            r"^REMINDER_SERVICE_OFFSETS: a service name must not be empty",
        ),
        ({"sms_quiet_hours": "8pm-8am"}, r"^SMS_QUIET_HOURS: '8pm-8am' is not a window"),
        ({"sms_quiet_hours": "08:00-08:00"}, r"^SMS_QUIET_HOURS: quiet hours 08:00-08:00 start and end"),
        ({"reminder_min_lead_minutes": -5}, r"^REMINDER_MIN_LEAD_MINUTES: must be 0 or more, not -5"),
    ],
)
def test_a_bad_setting_is_refused_by_name(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReminderPolicy.from_settings(Settings(_env_file=None, **values))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"offsets": (H, timedelta(0))}, "positive whole number of minutes"),
        ({"offsets": (timedelta(seconds=30),)}, "positive whole number of minutes"),
        ({"service_offsets": {"MRI": (-H,)}}, "positive whole number of minutes"),
        ({"quiet_hours": (time(8), time(8))}, "start and end at the same time"),
        ({"min_lead": -M}, "min_lead must not be negative"),
        ({"quiet_margin": timedelta(0)}, "quiet_margin must be positive"),
    ],
)
def test_a_policy_built_in_code_is_checked_too(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReminderPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_policy_built_in_code_is_normalised() -> None:
    policy = ReminderPolicy(offsets=(2 * H, 24 * H, 2 * H), service_offsets={" MRI Scan": (H, 3 * H)})
    assert policy.offsets == (24 * H, 2 * H)
    assert policy.offsets_for("mri scan") == (3 * H, H)


def test_plan_refuses_naive_datetimes_and_unknown_timezones() -> None:
    start = utc(2026, 6, 11, 4)
    with pytest.raises(ValueError, match="start_at must be timezone-aware"):
        DEFAULT.plan(start.replace(tzinfo=None), now=start - 7 * 24 * H, timezone=BRISBANE, service=None)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        DEFAULT.sendable_now(start.replace(tzinfo=None), BRISBANE)
    with pytest.raises(ValueError, match="unknown timezone 'Australia/Gotham'"):
        DEFAULT.plan(start, now=start - 7 * 24 * H, timezone="Australia/Gotham", service=None)


# --- plans in Brisbane (no DST) -----------------------------------------------------------------------------


def test_an_afternoon_appointment_gets_both_reminders_at_their_offsets_with_deadlines() -> None:
    start = local(BRISBANE, 2026, 6, 11, 14)  # Thu 11 Jun 2026 14:00 AEST = 04:00 UTC
    result = plan(start, BRISBANE)
    assert result.skipped == ()
    assert result.reminders == (
        PlannedReminder("24h", 24 * H, utc(2026, 6, 10, 4), utc(2026, 6, 10, 16), False),
        PlannedReminder("2h", 2 * H, utc(2026, 6, 11, 2), utc(2026, 6, 11, 3), False),
    )
    assert [wall(r.send_at, BRISBANE) for r in result.reminders] == [
        "2026-06-10 14:00 AEST",
        "2026-06-11 12:00 AEST",
    ]
    # a 24 h reminder may still go until 12 h before (02:00), a 2 h reminder until 1 h before (13:00)
    assert [wall(r.deadline, BRISBANE) for r in result.reminders] == [
        "2026-06-11 02:00 AEST",
        "2026-06-11 13:00 AEST",
    ]
    assert all(r.send_at.tzinfo is UTC and r.deadline.tzinfo is UTC for r in result.reminders)


def test_a_9am_appointment_gets_no_2h_reminder_because_7am_is_quiet_and_the_evening_before_is_too_early() -> (
    None
):
    start = local(BRISBANE, 2026, 6, 11, 9)
    result = plan(start, BRISBANE)
    [day_before] = result.reminders
    assert (day_before.label, wall(day_before.send_at, BRISBANE)) == ("24h", "2026-06-10 09:00 AEST")
    assert day_before.send_at == utc(2026, 6, 9, 23) and not day_before.moved_for_quiet_hours
    assert result.skipped == (
        ("2h", "quiet hours: moving it earlier would send it 11h15m early, which defeats a 2h reminder"),
    )


def test_a_7_30am_appointment_gets_its_24h_reminder_at_7_45pm_two_evenings_before() -> None:
    start = local(BRISBANE, 2026, 6, 11, 7, 30)  # Thu; 24 h before is Wed 07:30, inside quiet hours
    result = plan(start, BRISBANE)
    [day_before] = result.reminders
    assert day_before == PlannedReminder("24h", 24 * H, utc(2026, 6, 9, 9, 45), utc(2026, 6, 10, 9, 30), True)
    assert wall(day_before.send_at, BRISBANE) == "2026-06-09 19:45 AEST"  # moved 11h45m ≤ 12 h: kept
    assert wall(day_before.deadline, BRISBANE) == "2026-06-10 19:30 AEST"
    assert result.skipped == (
        ("2h", "quiet hours: moving it earlier would send it 9h45m early, which defeats a 2h reminder"),
    )


def test_a_late_evening_appointment_has_both_reminders_pulled_before_8pm() -> None:
    start = local(BRISBANE, 2026, 6, 11, 22, 30)
    result = plan(start, BRISBANE)
    assert [(r.label, wall(r.send_at, BRISBANE), r.moved_for_quiet_hours) for r in result.reminders] == [
        ("24h", "2026-06-10 19:45 AEST", True),  # 22:30 the day before, moved 2h45m
        ("2h", "2026-06-11 19:45 AEST", True),  # 20:30, moved 45 minutes ≤ 1 h
    ]
    assert [wall(r.deadline, BRISBANE) for r in result.reminders] == [
        "2026-06-11 10:30 AEST",
        "2026-06-11 21:30 AEST",
    ]


def test_quiet_hours_are_half_open_8pm_is_quiet_8am_is_not() -> None:
    at_8am = plan(local(BRISBANE, 2026, 6, 11, 8), BRISBANE)
    assert [(r.label, wall(r.send_at, BRISBANE), r.moved_for_quiet_hours) for r in at_8am.reminders] == [
        ("24h", "2026-06-10 08:00 AEST", False)
    ]
    at_10pm = plan(local(BRISBANE, 2026, 6, 11, 22), BRISBANE)
    assert [(r.label, wall(r.send_at, BRISBANE), r.moved_for_quiet_hours) for r in at_10pm.reminders] == [
        ("24h", "2026-06-10 19:45 AEST", True),
        ("2h", "2026-06-11 19:45 AEST", True),  # due at 20:00 exactly: quiet, moved 15 minutes
    ]
    just_before = plan(local(BRISBANE, 2026, 6, 11, 21, 59), BRISBANE)
    assert wall(just_before.reminders[-1].send_at, BRISBANE) == "2026-06-11 19:59 AEST"


def test_a_move_of_exactly_half_the_offset_is_kept_and_a_minute_more_is_not() -> None:
    kept = plan(local(BRISBANE, 2026, 6, 11, 7, 45), BRISBANE)  # 07:45 → 19:45 two evenings before: 12 h
    assert [(r.label, wall(r.send_at, BRISBANE)) for r in kept.reminders] == [
        ("24h", "2026-06-09 19:45 AEST")
    ]
    # A consequence of "move earlier or skip" with the defaults: 07:46–07:59 appointments get no reminder.
    lost = plan(local(BRISBANE, 2026, 6, 11, 7, 46), BRISBANE)
    assert lost.reminders == ()
    assert [reason for _, reason in lost.skipped] == [
        "quiet hours: moving it earlier would send it 12h1m early, which defeats a 24h reminder",
        "quiet hours: moving it earlier would send it 10h1m early, which defeats a 2h reminder",
    ]


def test_the_quiet_margin_sets_how_long_before_quiet_hours_a_moved_reminder_goes() -> None:
    policy = ReminderPolicy(quiet_margin=M)
    result = plan(local(BRISBANE, 2026, 6, 11, 22, 30), BRISBANE, policy=policy)
    assert [wall(r.send_at, BRISBANE) for r in result.reminders] == [
        "2026-06-10 19:59 AEST",
        "2026-06-11 19:59 AEST",
    ]


def test_a_quiet_window_leaving_less_than_the_margin_free_skips_instead_of_sending_inside_it() -> None:
    policy = ReminderPolicy(quiet_hours=(time(8, 5), time(8)))  # only 08:00-08:05 is allowed
    result = plan(local(BRISBANE, 2026, 6, 11, 14), BRISBANE, policy=policy)
    assert result.reminders == ()
    # 24 h: 14:00 the day before → 15 minutes before 08:05 is 07:50, still quiet
    assert result.skipped[0] == ("24h", "quiet hours: there is no time outside them in the 15 minutes before")


def test_quiet_hours_off_leaves_every_reminder_at_its_offset() -> None:
    policy = ReminderPolicy(quiet_hours=None)
    result = plan(local(BRISBANE, 2026, 6, 11, 7, 30), BRISBANE, policy=policy)
    assert [wall(r.send_at, BRISBANE) for r in result.reminders] == [
        "2026-06-10 07:30 AEST",
        "2026-06-11 05:30 AEST",
    ]
    assert policy.sendable_now(local(BRISBANE, 2026, 6, 11, 3), BRISBANE) is None


def test_a_quiet_window_that_does_not_wrap_midnight() -> None:
    policy = ReminderPolicy(quiet_hours=(time(12), time(13)))
    result = plan(local(BRISBANE, 2026, 6, 11, 14, 30), BRISBANE, policy=policy)
    assert [(r.label, wall(r.send_at, BRISBANE), r.moved_for_quiet_hours) for r in result.reminders] == [
        ("24h", "2026-06-10 14:30 AEST", False),
        ("2h", "2026-06-11 11:45 AEST", True),  # 12:30 is quiet: moved 45 minutes
    ]


# --- plans in Sydney across DST -----------------------------------------------------------------------------


def test_offsets_are_real_hours_across_the_start_of_dst() -> None:
    start = local(SYDNEY, 2026, 10, 4, 10)  # Sun 4 Oct 10:00 AEDT = Sat 3 Oct 23:00 UTC
    assert start == utc(2026, 10, 3, 23)
    result = plan(start, SYDNEY)
    assert result.skipped == ()
    # the clocks go forward in between, so 24 real hours before 10:00 is 09:00 on the wall
    assert [(r.label, r.send_at, wall(r.send_at, SYDNEY)) for r in result.reminders] == [
        ("24h", utc(2026, 10, 2, 23), "2026-10-03 09:00 AEST"),
        ("2h", utc(2026, 10, 3, 21), "2026-10-04 08:00 AEDT"),
    ]
    assert [wall(r.deadline, SYDNEY) for r in result.reminders] == [
        "2026-10-03 21:00 AEST",
        "2026-10-04 09:00 AEDT",
    ]


def test_the_day_after_dst_starts() -> None:
    start = local(SYDNEY, 2026, 10, 5, 9)  # Mon 5 Oct 09:00 AEDT = Sun 4 Oct 22:00 UTC
    result = plan(start, SYDNEY)
    [day_before] = result.reminders
    assert (day_before.send_at, wall(day_before.send_at, SYDNEY)) == (
        utc(2026, 10, 3, 22),
        "2026-10-04 09:00 AEDT",
    )
    assert result.skipped == (
        ("2h", "quiet hours: moving it earlier would send it 11h15m early, which defeats a 2h reminder"),
    )


def test_a_reminder_moved_back_across_the_start_of_dst() -> None:
    start = local(SYDNEY, 2026, 10, 5, 7, 30)  # Mon 07:30 AEDT; 24 h before is Sun 07:30 AEDT (quiet)
    [day_before] = plan(start, SYDNEY).reminders
    # the quiet night began Sat 20:00 AEST, an hour "longer" on the clock than in real time: moved 10h45m
    assert day_before == PlannedReminder(
        "24h", 24 * H, utc(2026, 10, 3, 9, 45), utc(2026, 10, 4, 8, 30), True
    )
    assert wall(day_before.send_at, SYDNEY) == "2026-10-03 19:45 AEST"
    assert wall(day_before.deadline, SYDNEY) == "2026-10-04 19:30 AEDT"


def test_offsets_are_real_hours_across_the_end_of_dst() -> None:
    start = local(SYDNEY, 2026, 4, 5, 10)  # Sun 5 Apr 10:00 AEST = Sun 00:00 UTC
    result = plan(start, SYDNEY)
    assert [(r.label, r.send_at, wall(r.send_at, SYDNEY)) for r in result.reminders] == [
        ("24h", utc(2026, 4, 4, 0), "2026-04-04 11:00 AEDT"),  # clocks go back in between: 11:00, not 10:00
        ("2h", utc(2026, 4, 4, 22), "2026-04-05 08:00 AEST"),
    ]
    assert [wall(r.deadline, SYDNEY) for r in result.reminders] == [
        "2026-04-04 23:00 AEDT",
        "2026-04-05 09:00 AEST",
    ]


def test_the_night_dst_ends_is_an_hour_longer_so_a_7_30_reminder_cannot_move_back() -> None:
    # Mon 6 Apr 07:30 AEST: 24 h before is Sun 07:30 AEST; quiet began Sat 20:00 AEDT, 12h45m (real) earlier
    result = plan(local(SYDNEY, 2026, 4, 6, 7, 30), SYDNEY)
    assert result.reminders == ()
    assert result.skipped[0] == (
        "24h",
        "quiet hours: moving it earlier would send it 12h45m early, which defeats a 24h reminder",
    )
    # the same appointment a week later (no DST change in between) keeps it, moved 11h45m
    [kept] = plan(local(SYDNEY, 2026, 4, 13, 7, 30), SYDNEY).reminders
    assert (wall(kept.send_at, SYDNEY), kept.moved_for_quiet_hours) == ("2026-04-11 19:45 AEST", True)


def test_a_reminder_in_the_repeated_hour_is_still_an_absolute_offset() -> None:
    policy = ReminderPolicy(quiet_hours=None)
    start = local(SYDNEY, 2026, 4, 5, 3, 30)  # 03:30 AEST = Sat 17:30 UTC
    result = plan(start, SYDNEY, policy=policy)
    assert [(r.send_at, wall(r.send_at, SYDNEY)) for r in result.reminders] == [
        (utc(2026, 4, 3, 17, 30), "2026-04-04 04:30 AEDT"),
        (
            utc(2026, 4, 4, 15, 30),
            "2026-04-05 02:30 AEDT",
        ),  # the first 02:30 of two; the clock shows 1 h before
    ]


def test_quiet_hours_that_begin_in_the_hour_skipped_by_dst_begin_at_the_jump() -> None:
    policy = ReminderPolicy(offsets=(24 * H,), quiet_hours=(time(2, 30), time(5)))
    start = utc(2026, 10, 4, 16, 30)  # Mon 5 Oct 03:30 AEDT; 24 h before is Sun 03:30 AEDT (quiet)
    [reminder] = plan(start, SYDNEY, policy=policy).reminders
    # 02:30 never happens on 4 Oct: quiet hours begin when the clock jumps to 03:00 (16:00 UTC)
    assert (reminder.send_at, wall(reminder.send_at, SYDNEY)) == (
        utc(2026, 10, 3, 15, 45),
        "2026-10-04 01:45 AEST",
    )
    assert policy.sendable_now(utc(2026, 10, 3, 16), SYDNEY) == utc(2026, 10, 3, 18)  # 05:00 AEDT
    assert policy.sendable_now(utc(2026, 10, 3, 15, 59), SYDNEY) is None  # 01:59 AEST


# --- late bookings, redundancy, services ------------------------------------------------------------------


def test_booked_3h_ahead_gets_only_the_2h_reminder() -> None:
    start = local(BRISBANE, 2026, 6, 11, 14)
    result = plan(start, BRISBANE, now=start - 3 * H)
    assert [(r.label, wall(r.send_at, BRISBANE)) for r in result.reminders] == [
        ("2h", "2026-06-11 12:00 AEST")
    ]
    assert result.skipped == (("24h", "booked too late: due 21h before booking (needs 1h notice)"),)


def test_booked_90_minutes_ahead_gets_no_reminder() -> None:
    start = local(BRISBANE, 2026, 6, 11, 14)
    result = plan(start, BRISBANE, now=start - 90 * M)
    assert result.reminders == ()
    assert result.skipped == (
        ("24h", "booked too late: due 22h30m before booking (needs 1h notice)"),
        ("2h", "booked too late: due 30 minutes before booking (needs 1h notice)"),
    )


def test_a_reminder_due_within_the_minimum_lead_is_not_planned() -> None:
    start = local(BRISBANE, 2026, 6, 11, 14)
    result = plan(start, BRISBANE, now=start - 2 * H - 50 * M)
    assert result.skipped[-1] == ("2h", "booked too late: due 50 minutes after booking (needs 1h notice)")
    exactly = plan(start, BRISBANE, now=start - 3 * H)  # due exactly min_lead after booking: planned
    assert [r.label for r in exactly.reminders] == ["2h"]


def test_moving_out_of_quiet_hours_can_make_a_reminder_too_late() -> None:
    start = local(BRISBANE, 2026, 6, 11, 7, 30)  # 24 h reminder would move to Tue 19:45
    result = plan(start, BRISBANE, now=local(BRISBANE, 2026, 6, 9, 19))
    assert result.reminders == ()
    assert result.skipped[0] == (
        "24h",
        "booked too late: due 45 minutes after booking once moved out of quiet hours (needs 1h notice)",
    )


def test_an_appointment_in_the_past_gets_nothing() -> None:
    start = local(BRISBANE, 2026, 6, 11, 14)
    result = plan(start, BRISBANE, now=start)
    assert result.reminders == ()
    assert result.skipped == (
        ("24h", "the appointment time has passed"),
        ("2h", "the appointment time has passed"),
    )


def test_a_shorter_reminder_too_close_to_the_previous_one_is_redundant() -> None:
    policy = ReminderPolicy(offsets=(3 * H, 2 * H))
    start = local(BRISBANE, 2026, 6, 11, 14)
    result = plan(start, BRISBANE, policy=policy)
    assert [r.label for r in result.reminders] == ["3h"]
    assert result.skipped == (("2h", "redundant: due 1h after the 3h reminder"),)
    relaxed = plan(start, BRISBANE, policy=ReminderPolicy(offsets=(3 * H, 2 * H), min_lead=30 * M))
    assert [wall(r.send_at, BRISBANE) for r in relaxed.reminders] == [
        "2026-06-11 11:00 AEST",
        "2026-06-11 12:00 AEST",
    ]
    # pulled out of quiet hours, the 2 h reminder (20:30 → 19:45) would land 15 minutes after the 3 h one
    late = plan(local(BRISBANE, 2026, 6, 11, 22, 30), BRISBANE, policy=policy)
    assert late.skipped == (("2h", "redundant: due 15 minutes after the 3h reminder"),)


def test_a_redundant_reminder_compares_with_the_last_one_kept() -> None:
    policy = ReminderPolicy(offsets=(24 * H, 3 * H, 2 * H))
    start = local(BRISBANE, 2026, 6, 11, 14)
    result = plan(start, BRISBANE, now=start - 4 * H, policy=policy)  # 24 h skipped: 3 h is the first kept
    assert [r.label for r in result.reminders] == ["3h"]
    assert [label for label, _ in result.skipped] == ["24h", "2h"]


def test_service_offsets_override_the_default_matched_ignoring_case() -> None:
    policy = ReminderPolicy(service_offsets={"MRI Scan": parse_offsets("48h,2h"), "Consult": ()})
    start = local(BRISBANE, 2026, 6, 11, 14)
    for name in ("MRI Scan", "mri scan", " MRI SCAN "):
        result = plan(start, BRISBANE, policy=policy, service=name)
        assert [(r.label, wall(r.send_at, BRISBANE)) for r in result.reminders] == [
            ("2d", "2026-06-09 14:00 AEST"),
            ("2h", "2026-06-11 12:00 AEST"),
        ]
        assert result.reminders[0].deadline == start - 24 * H
    assert [r.label for r in plan(start, BRISBANE, policy=policy, service="Ultrasound").reminders] == [
        "24h",
        "2h",
    ]
    assert [r.label for r in plan(start, BRISBANE, policy=policy, service=None).reminders] == ["24h", "2h"]
    assert plan(start, BRISBANE, policy=policy, service="consult") == ReminderPlan((), ())
    assert policy.offsets_for("MRI scan") == (48 * H, 2 * H)
    assert policy.offsets_for(None) == (24 * H, 2 * H)


def test_deadline_is_half_the_offset_before_the_appointment() -> None:
    policy = ReminderPolicy(offsets=(24 * H, 2 * H, 90 * M), min_lead=0 * M, quiet_hours=None)
    start = utc(2026, 6, 11, 4)
    result = plan(start, BRISBANE, policy=policy)
    assert [(r.label, r.deadline) for r in result.reminders] == [
        ("24h", start - 12 * H),
        ("2h", start - H),
        ("90m", start - 45 * M),
    ]


# --- sendable_now ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (local(BRISBANE, 2026, 6, 11, 19, 59), None),
        (local(BRISBANE, 2026, 6, 11, 20), local(BRISBANE, 2026, 6, 12, 8)),
        (local(BRISBANE, 2026, 6, 11, 23, 30), local(BRISBANE, 2026, 6, 12, 8)),
        (local(BRISBANE, 2026, 6, 12, 3), local(BRISBANE, 2026, 6, 12, 8)),
        (local(BRISBANE, 2026, 6, 12, 7, 59, 59), local(BRISBANE, 2026, 6, 12, 8)),
        (local(BRISBANE, 2026, 6, 12, 8), None),
        (local(BRISBANE, 2026, 6, 12, 12), None),
    ],
)
def test_sendable_now_in_brisbane(now: datetime, expected: datetime | None) -> None:
    result = DEFAULT.sendable_now(now, BRISBANE)
    assert result == expected
    assert result is None or result.tzinfo is UTC


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 10, 3, 15), utc(2026, 10, 3, 21)),  # Sun 4 Oct 01:00 AEST → 08:00 AEDT (7 h, not 8)
        (utc(2026, 10, 3, 16, 30), utc(2026, 10, 3, 21)),  # 03:30 AEDT, just after the jump
        (utc(2026, 4, 4, 14), utc(2026, 4, 4, 22)),  # Sun 5 Apr 01:00 AEDT → 08:00 AEST (8 h, not 7)
        (utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 22)),  # the first 02:30
        (utc(2026, 4, 4, 16, 30), utc(2026, 4, 4, 22)),  # the second 02:30
        (utc(2026, 4, 4, 9), utc(2026, 4, 4, 22)),  # Sat 20:00 AEDT
        (utc(2026, 4, 4, 8, 59), None),  # Sat 19:59 AEDT
    ],
)
def test_sendable_now_in_sydney_on_the_dst_nights(now: datetime, expected: datetime | None) -> None:
    assert DEFAULT.sendable_now(now, SYDNEY) == expected


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ((11, 59), None),
        ((12, 0), (13, 0)),
        ((12, 30), (13, 0)),
        ((13, 0), None),
        ((23, 0), None),
        ((3, 0), None),
    ],
)
def test_sendable_now_with_a_window_that_does_not_wrap_midnight(
    clock: tuple[int, int], expected: tuple[int, int] | None
) -> None:
    policy = ReminderPolicy(quiet_hours=parse_quiet_hours("12:00-13:00"))
    result = policy.sendable_now(local(BRISBANE, 2026, 6, 11, *clock), BRISBANE)
    assert result == (local(BRISBANE, 2026, 6, 11, *expected) if expected else None)


def test_sendable_now_when_quiet_hours_end_in_the_repeated_hour() -> None:
    policy = ReminderPolicy(quiet_hours=(time(1), time(2, 30)))
    assert policy.sendable_now(utc(2026, 4, 4, 15, 15), SYDNEY) == utc(2026, 4, 4, 15, 30)  # 02:15 AEDT
    assert policy.sendable_now(utc(2026, 4, 4, 15, 45), SYDNEY) is None  # 02:45 AEDT
    assert policy.sendable_now(utc(2026, 4, 4, 16, 15), SYDNEY) == utc(2026, 4, 4, 16, 30)  # 02:15 AEST


# --- properties ---------------------------------------------------------------------------------------------

TIMEZONES = [
    BRISBANE,
    SYDNEY,
    "Australia/Adelaide",
    "Australia/Perth",
    "Australia/Lord_Howe",
    "Australia/Hobart",
]
DST_CHANGES = [utc(2026, 4, 4, 16), utc(2026, 10, 3, 16), utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)]

clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]) | st.integers(0, 59))
windows = (
    st.none()
    | st.just((time(20), time(8)))
    | st.tuples(clock_times, clock_times).filter(lambda w: w[0] != w[1])
)
moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
) | st.builds(
    lambda change, minutes: change + minutes * M,
    st.sampled_from(DST_CHANGES),
    st.integers(-4 * 24 * 60, 4 * 24 * 60),
)
policies = st.builds(
    ReminderPolicy,
    offsets=st.lists(st.integers(1, 4 * 24 * 60).map(lambda n: n * M), min_size=1, max_size=4).map(tuple),
    quiet_hours=windows,
    min_lead=st.integers(0, 240).map(lambda n: n * M),
    quiet_margin=st.integers(1, 60).map(lambda n: n * M),
)


def quiet(moment: datetime, timezone: str, window: tuple[time, time] | None) -> bool:
    """An oracle independent of the module: is the local wall clock inside the half-open window?"""
    if window is None:
        return False
    clock = moment.astimezone(ZoneInfo(timezone)).time()
    begin, end = window
    return begin <= clock < end if begin < end else clock >= begin or clock < end


@settings(max_examples=400, deadline=None)
@given(
    policy=policies,
    start_at=moments,
    ahead=st.integers(-60, 6 * 24 * 60),
    timezone=st.sampled_from(TIMEZONES),
)
def test_every_planned_reminder_keeps_every_rule(
    policy: ReminderPolicy, start_at: datetime, ahead: int, timezone: str
) -> None:
    now = start_at - ahead * M
    result = policy.plan(start_at, now=now, timezone=timezone, service=None)
    labels = [label(offset) for offset in policy.offsets]
    # every offset is accounted for once, in order: planned or skipped with a reason
    assert sorted([r.label for r in result.reminders] + [s[0] for s in result.skipped]) == sorted(labels)
    previous: PlannedReminder | None = None
    for reminder in result.reminders:
        intended = start_at - reminder.offset
        assert reminder.label == label(reminder.offset)
        assert not quiet(reminder.send_at, timezone, policy.quiet_hours)
        assert reminder.send_at >= now + policy.min_lead
        assert reminder.send_at < reminder.deadline < start_at
        assert reminder.deadline == start_at - reminder.offset / 2
        assert intended - reminder.offset / 2 <= reminder.send_at <= intended
        assert reminder.moved_for_quiet_hours == (reminder.send_at != intended)
        assert reminder.moved_for_quiet_hours == quiet(intended, timezone, policy.quiet_hours)
        if previous is not None:
            assert reminder.offset < previous.offset
            assert reminder.send_at > previous.send_at + policy.min_lead
        previous = reminder
    for name, reason in result.skipped:
        offset = next(o for o in policy.offsets if label(o) == name)
        if reason.startswith("quiet hours"):
            assert quiet(start_at - offset, timezone, policy.quiet_hours)
        if (
            not quiet(start_at - offset, timezone, policy.quiet_hours)
            and start_at - offset >= now + policy.min_lead
        ):
            assert reason.startswith(
                "redundant"
            )  # a reminder due at a fine time is only ever dropped as a repeat


@settings(max_examples=400, deadline=None)
@given(window=windows, now=moments, timezone=st.sampled_from(TIMEZONES))
def test_sendable_now_names_the_first_moment_out_of_quiet_hours(
    window: tuple[time, time] | None, now: datetime, timezone: str
) -> None:
    policy = ReminderPolicy(quiet_hours=window)
    result = policy.sendable_now(now, timezone)
    if not quiet(now, timezone, window):
        assert result is None
        return
    assert result is not None and result > now and result.tzinfo is UTC
    assert not quiet(result, timezone, window)
    assert quiet(result - timedelta(seconds=1), timezone, window)
