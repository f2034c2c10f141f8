"""A clock the auth tests move by hand (no sleeping): `utcnow()` answers it while the test runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ains.core import clock as clock_module


class TestClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def at(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture
def clock() -> Iterator[TestClock]:
    test_clock = TestClock()
    clock_module.set_clock(test_clock)
    try:
        yield test_clock
    finally:
        clock_module.set_clock(None)
