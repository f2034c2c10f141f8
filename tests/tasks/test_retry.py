"""The SPEC 4 delay table, the cap, agent-requested delays and jitter, on the pure retry module."""

import random

import pytest

from ains.tasks.retry import RetryBases, retry_delay

DEFAULTS = RetryBases()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("exponential", [2, 4, 8, 16, 32]), ("linear", [5, 10, 15, 20, 25]), ("fixed", [10, 10, 10, 10, 10])],
)
def test_spec_delay_table(policy, expected):
    assert [retry_delay(policy, n, DEFAULTS) for n in range(5)] == expected


def test_bases_are_configurable():
    bases = RetryBases(exponential_base_seconds=0.1, linear_base_seconds=0.5, fixed_seconds=3)
    assert [retry_delay("exponential", n, bases) for n in range(3)] == pytest.approx([0.1, 0.2, 0.4])
    assert [retry_delay("linear", n, bases) for n in range(3)] == pytest.approx([0.5, 1.0, 1.5])
    assert retry_delay("fixed", 7, bases) == 3


def test_the_cap_bounds_every_delay():
    bases = RetryBases(max_delay_seconds=60)
    assert retry_delay("exponential", 5, bases) == 60  # 64 capped
    assert retry_delay("exponential", 10_000, bases) == 60
    assert retry_delay("linear", 100, bases) == 60
    assert retry_delay("fixed", 0, RetryBases(fixed_seconds=100, max_delay_seconds=60)) == 60


def test_agent_requested_delay_replaces_the_policy_but_not_the_cap():
    assert retry_delay("exponential", 0, DEFAULTS, requested_seconds=30) == 30
    assert retry_delay("fixed", 0, DEFAULTS, requested_seconds=0) == 0
    assert retry_delay("linear", 0, RetryBases(max_delay_seconds=20), requested_seconds=30) == 20


def test_jitter_spreads_over_half_to_full_delay():
    rng = random.Random(7)
    draws = [retry_delay("exponential", 3, DEFAULTS, jitter=True, rng=rng) for _ in range(500)]
    assert all(8 <= d <= 16 for d in draws)
    assert max(draws) - min(draws) > 6  # really spread, not one value
    assert retry_delay("exponential", 3, DEFAULTS, jitter=False) == 16


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError):
        retry_delay("random", 0, DEFAULTS)
