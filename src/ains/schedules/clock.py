"""The schedules' "now": the process clock, or, for tests only, a time read from a file.

`AINS_TEST_CLOCK_FILE` (test-only; never set it in production) names a file holding an ISO 8601 time: while it
is set, the schedules (their next tick at creation, and the duty that submits due ticks) take "now" from that
file, read afresh each time. Several `ains serve` processes given the same file share one clock a test moves
by rewriting it, so "a tick comes due" happens at an instant the test chooses, in every process at once.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from ains.core.clock import utcnow

TEST_CLOCK_ENV = "AINS_TEST_CLOCK_FILE"


def test_clock_file() -> str | None:
    return os.environ.get(TEST_CLOCK_ENV) or None


# The last time read from the test clock file: a read that catches the file half rewritten answers this, not
# the real clock (which would jump the schedules to today and submit ticks the test never made due).
_last_read: datetime | None = None


def schedule_now() -> datetime:
    global _last_read
    path = test_clock_file()
    if path is None:
        return utcnow()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
        value = datetime.fromisoformat(text)
    except (OSError, ValueError):
        return _last_read if _last_read is not None else utcnow()
    _last_read = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return _last_read
