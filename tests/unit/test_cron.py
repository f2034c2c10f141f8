"""Cron ticks in a time zone (SPEC 17), daylight-saving changes as croniter handles them, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ains.schedules.cron import CronError, check, latest_tick, next_tick


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def ticks(expression: str, timezone: str, after: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        after = next_tick(expression, timezone, after)
        out.append(after)
    return out


def test_next_tick_is_strictly_after():
    assert next_tick("0 12 * * *", "UTC", utc(2026, 1, 1, 12)) == utc(2026, 1, 2, 12)
    assert next_tick("0 12 * * *", "UTC", utc(2026, 1, 1, 11, 59, 59)) == utc(2026, 1, 1, 12)


def test_a_time_zone_moves_the_tick():
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_tick("0 9 * * *", "Europe/Berlin", utc(2026, 1, 10)) == utc(2026, 1, 10, 8)
    assert next_tick("0 9 * * *", "Europe/Berlin", utc(2026, 7, 10)) == utc(2026, 7, 10, 7)


def test_spring_forward_a_missing_wall_time_fires_once_at_the_next_real_time():
    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST, so 02:30 does not exist that day.
    days = ticks("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 3)
    assert days == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]


def test_spring_forward_hourly_ticks_stay_an_hour_apart_in_utc():
    hours = ticks("0 * * * *", "Europe/Berlin", utc(2026, 3, 28, 23, 30), 4)
    assert hours == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2), utc(2026, 3, 29, 3)]


def test_fall_back_a_repeated_wall_time_fires_in_both_offsets():
    # 2026-10-25: Berlin goes back from 03:00 CEST to 02:00 CET, so 02:30 happens twice.
    days = ticks("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 3)
    assert days == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30)]


def test_fall_back_half_hourly_ticks_stay_even_in_utc():
    marks = ticks("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 45), 6)
    assert marks == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 0),
        utc(2026, 10, 25, 2, 30),
    ]


def test_latest_tick_includes_a_tick_exactly_now():
    assert latest_tick("0 12 * * *", "UTC", utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 12)
    assert latest_tick("0 12 * * *", "UTC", utc(2026, 1, 3, 11)) == utc(2026, 1, 2, 12)
    assert latest_tick("*/5 * * * *", "UTC", utc(2026, 1, 1, 12, 7, 30)) == utc(2026, 1, 1, 12, 5)


def test_aliases_are_accepted():
    check("@hourly", "UTC")
    assert next_tick("@daily", "UTC", utc(2026, 1, 1, 5)) == utc(2026, 1, 2)


@pytest.mark.parametrize(
    ("expression", "timezone", "field"),
    [
        ("61 * * * *", "UTC", "cron"),
        ("* * * *", "UTC", "cron"),
        ("* * * * * *", "UTC", "cron"),
        ("every minute", "UTC", "cron"),
        ("0 0 31 2 *", "UTC", "cron"),
        ("", "UTC", "cron"),
        ("* * * * *", "Mars/Olympus_Mons", "timezone"),
        ("* * * * *", "../../etc/passwd", "timezone"),
        ("* * * * *", "", "timezone"),
    ],
)
def test_bad_expressions_and_zones_are_refused(expression, timezone, field):
    with pytest.raises(CronError) as error:
        check(expression, timezone)
    assert error.value.field == field
