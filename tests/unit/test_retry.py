"""Retry delays: each policy's schedule, the cap, an agent's own delay, jitter."""

import random

import pytest

from ains.tasks.retry import RetryBases, policy_delay, retry_delay

BASES = RetryBases(exponential_base_seconds=2, linear_base_seconds=5, fixed_seconds=10, max_delay_seconds=3600)


@pytest.mark.parametrize(("retries_used", "delay"), [(0, 2), (1, 4), (2, 8), (5, 64)])
def test_exponential_doubles_from_the_base(retries_used, delay):
    assert policy_delay("exponential", retries_used, BASES) == delay


@pytest.mark.parametrize(("retries_used", "delay"), [(0, 5), (1, 10), (3, 20)])
def test_linear_adds_the_base_each_time(retries_used, delay):
    assert policy_delay("linear", retries_used, BASES) == delay


@pytest.mark.parametrize("retries_used", [0, 1, 7])
def test_fixed_is_always_the_same(retries_used):
    assert policy_delay("fixed", retries_used, BASES) == 10


def test_an_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="sometimes"):
        policy_delay("sometimes", 0, BASES)


def test_the_cap_bounds_a_policy_delay():
    assert retry_delay("exponential", 20, BASES) == 3600


def test_a_huge_retry_count_does_not_overflow():
    assert retry_delay("exponential", 10**6, BASES) == 3600


def test_an_agents_delay_replaces_the_policy():
    assert retry_delay("exponential", 0, BASES, requested_seconds=42) == 42


def test_an_agents_delay_is_capped_too():
    assert retry_delay("fixed", 0, BASES, requested_seconds=10**9) == 3600


def test_an_agents_delay_is_not_jittered():
    assert retry_delay("fixed", 0, BASES, requested_seconds=7, jitter=True, rng=random.Random(1)) == 7


def test_jitter_stays_within_half_to_whole_delay():
    rng = random.Random(7)
    delays = [retry_delay("fixed", 0, BASES, jitter=True, rng=rng) for _ in range(200)]
    assert all(5 <= d <= 10 for d in delays)


def test_jitter_spreads_the_delays():
    rng = random.Random(7)
    assert len({retry_delay("fixed", 0, BASES, jitter=True, rng=rng) for _ in range(20)}) > 1
