"""A retry strategy says how long a failed task waits before it may be claimed again (SPEC 4).

Pure functions, no I/O: with `n` the number of retries already used (0 for the
first retry), `exponential` waits `base * 2**n`, `linear` waits `step * (1 + n)`,
`fixed` always waits the same. An agent's own `retry_after_seconds` replaces the
policy's delay. The cap bounds every delay. With jitter, the delay is drawn
uniformly from [delay/2, delay] so that many tasks failing together do not all
come back at the same instant; an agent's explicit delay is not jittered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

POLICIES = ("exponential", "linear", "fixed")


@dataclass(frozen=True)
class RetryBases:
    exponential_base_seconds: float = 2
    linear_base_seconds: float = 5
    fixed_seconds: float = 10
    max_delay_seconds: float = 3600

    @classmethod
    def from_settings(cls, settings: object) -> RetryBases:
        return cls(
            exponential_base_seconds=settings.retry_exponential_base_seconds,  # type: ignore[attr-defined]
            linear_base_seconds=settings.retry_linear_base_seconds,  # type: ignore[attr-defined]
            fixed_seconds=settings.retry_fixed_seconds,  # type: ignore[attr-defined]
            max_delay_seconds=settings.retry_max_delay_seconds,  # type: ignore[attr-defined]
        )


def policy_delay(policy: str, retries_used: int, bases: RetryBases) -> float:
    """The policy's delay before retry number `retries_used + 1`, uncapped."""
    if policy == "exponential":
        # Past 2**64 the cap has long taken over; stop before floats overflow.
        return bases.exponential_base_seconds * 2.0 ** min(retries_used, 64)
    if policy == "linear":
        return bases.linear_base_seconds * (1 + retries_used)
    if policy == "fixed":
        return bases.fixed_seconds
    raise ValueError(f"unknown retry policy {policy!r}")


def retry_delay(
    policy: str,
    retries_used: int,
    bases: RetryBases,
    *,
    requested_seconds: float | None = None,
    jitter: bool = False,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt."""
    if requested_seconds is not None:
        return min(float(requested_seconds), bases.max_delay_seconds)
    delay = min(policy_delay(policy, retries_used, bases), bases.max_delay_seconds)
    if jitter:
        delay = (rng or random).uniform(delay / 2, delay)
    return delay
