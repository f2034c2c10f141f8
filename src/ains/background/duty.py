"""What a background duty is: one pass over due rows, reporting how many it handled and when it is next due.

A pass takes at most `BATCH` rows with `FOR UPDATE SKIP LOCKED`, so any number of
processes can run the same duty: rows one process holds are skipped by the
others, and a crash rolls back to a state the next pass picks up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ains.core.context import AppContext

BATCH = 500


@dataclass(frozen=True)
class PassResult:
    handled: int
    next_due: datetime | None  # the earliest known future deadline, if any


@dataclass(frozen=True)
class Duty:
    name: str
    run: Callable[[AppContext], Awaitable[PassResult]]
    interval: Callable[[AppContext], float]  # the longest sleep between passes
    deadline_kind: str | None = None  # wake early when this process sets a nearer deadline of this kind
    close: Callable[[], Awaitable[None]] | None = None  # release what the duty holds (connections, tasks)
