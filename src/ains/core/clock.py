"""The one source of "now" and the id format, so every module agrees on both.

Tests move time without sleeping, in one of two ways: inside the test's own process
`set_clock` hands `utcnow()` a clock of the test's; across processes
`AINS_TEST_CLOCK_FILE` (test-only; never set it in production) names a file holding
an ISO 8601 time, read afresh on every call, so several `ains serve` processes given
the same file share one clock the test moves by rewriting it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

TEST_CLOCK_ENV = "AINS_TEST_CLOCK_FILE"

# Tests set this (`set_clock`) to a clock of their own.
_now: Callable[[], datetime] | None = None
# The last time read from the test clock file: a read that catches the file half rewritten answers this, not
# the real clock (which would jump to today, and, say, submit schedule ticks the test never made due).
_last_read: datetime | None = None


def utcnow() -> datetime:
    if _now is not None:
        return _now()
    path = os.environ.get(TEST_CLOCK_ENV)
    if path:
        return _read_clock_file(path)
    return datetime.now(UTC)


def set_clock(now: Callable[[], datetime] | None) -> None:
    """Make `utcnow()` answer `now()` (None: the real clock again). For tests."""
    global _now
    _now = now


def moved_by_tests() -> bool:
    """Whether "now" is a test's clock: the background runner sleeps by the real one, so its deadlines mean little."""
    return _now is not None or bool(os.environ.get(TEST_CLOCK_ENV))


def _read_clock_file(path: str) -> datetime:
    global _last_read
    try:
        with open(path, encoding="utf-8") as handle:
            value = datetime.fromisoformat(handle.read().strip())
    except (OSError, ValueError):
        return _last_read if _last_read is not None else datetime.now(UTC)
    _last_read = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return _last_read


def utc_text(moment: datetime) -> str:
    """The wire form of a moment: ISO 8601 in UTC with a `Z` (`2026-11-27T15:04:05.123456Z`)."""
    # Moments read from the database are already in UTC: converting them again cost a quarter of the call.
    return (moment if moment.tzinfo is UTC else moment.astimezone(UTC)).isoformat().replace("+00:00", "Z")


def exact_text(moment: datetime) -> str:
    """A moment as people read it exactly, to the second, in UTC: `2026-11-27 15:04:05 UTC`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative_text(moment: datetime, now: datetime, *, just_now_seconds: float = 2) -> str:
    """How long ago (or until) `moment` is, as people say it: `3 min ago`, `in 2 h`, `just now`."""
    seconds = (now - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds >= just_now_seconds:
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            if seconds >= size:
                amount = f"{int(seconds // size)} {unit}"
                return f"in {amount}" if future else f"{amount} ago"
    return "just now"


def new_id(prefix: str) -> str:
    """`prefix_` and 32 random hex digits (128 bits, as a UUID's text without its fixed bits; a fifth of the cost
    of `uuid4().hex`, and a batch of a hundred tasks takes four ids per task)."""
    return f"{prefix}_{os.urandom(16).hex()}"


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
