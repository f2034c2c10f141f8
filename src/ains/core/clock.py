"""The one source of "now" and the id format, so every module agrees on both."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

# Tests set this (`set_clock`) to a clock of their own, to move time without sleeping.
_now: Callable[[], datetime] | None = None


def utcnow() -> datetime:
    return datetime.now(UTC) if _now is None else _now()


def set_clock(now: Callable[[], datetime] | None) -> None:
    """Make `utcnow()` answer `now()` (None: the real clock again). For tests."""
    global _now
    _now = now


def utc_text(moment: datetime) -> str:
    """The wire form of a moment: ISO 8601 in UTC with a `Z` (`2026-11-27T15:04:05.123456Z`)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
