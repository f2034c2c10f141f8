"""Cron expressions in a time zone, through `croniter` (pure: no database, no clock of its own).

Daylight-saving changes are handled as croniter handles them: a wall-clock time that does not exist on the
spring-forward day (02:30 in Europe/Berlin) fires at the first time that does (03:00); on the fall-back day a
time that happens twice fires twice (02:30 CEST and 02:30 CET); an hourly or minutely expression keeps
ticking evenly in UTC through both changes. Every time in and out is aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


class CronError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    """The time zone of an IANA name, or CronError."""
    if not name or len(name) > 64 or name.startswith("/") or ".." in name or "\x00" in name:
        raise CronError("timezone", f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CronError("timezone", f"unknown time zone {name!r}") from exc


def check(expression: str, timezone: str) -> None:
    """Refuse an expression croniter can't read, one with a seconds field, or an unknown time zone."""
    zone(timezone)
    text = expression.strip()
    fields = text.split()
    if text.lower() in ALIASES:
        return
    if len(fields) != 5:
        raise CronError("cron", f"{expression!r} is not a cron expression of 5 fields (minute hour day month weekday)")
    try:
        valid = croniter.is_valid(text)
    except Exception:  # croniter raises a variety of its own errors on odd input
        valid = False
    if not valid:
        raise CronError("cron", f"{expression!r} is not a valid cron expression")
    try:
        next_tick(text, timezone, datetime(2026, 1, 1, tzinfo=UTC))
    except CronError:
        raise
    except Exception as exc:  # valid syntax that never fires (31 February)
        raise CronError("cron", f"{expression!r} never fires") from exc


def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after `after`."""
    tz = zone(timezone)
    value = croniter(expression.strip(), after.astimezone(tz), max_years_between_matches=10).get_next(datetime)
    return value.astimezone(UTC)


def latest_tick(expression: str, timezone: str, at_or_before: datetime) -> datetime:
    """The last tick at or before `at_or_before` (the one tick replayed after a time nothing ran)."""
    tz = zone(timezone)
    start = (at_or_before + timedelta(microseconds=1)).astimezone(tz)
    value = croniter(expression.strip(), start, max_years_between_matches=10).get_prev(datetime)
    return value.astimezone(UTC)
