"""SPEC 8 levels and their boundaries, and the probation limits each level puts on claims."""

import pytest

from ains.trust.levels import ClaimLimits, claim_limits, clamp, trust_level


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0.0, "very_low"),
        (0.29, "very_low"),
        (0.3, "low"),
        (0.49, "low"),
        (0.5, "medium"),
        (0.69, "medium"),
        (0.7, "high"),
        (0.89, "high"),
        (0.9, "excellent"),
        (1.0, "excellent"),
    ],
)
def test_level_boundaries(score, level):
    assert trust_level(score) == level


def test_repeated_steps_land_exactly_on_a_boundary():
    score = 0.5
    for _ in range(10):
        score = clamp(score + 0.02)
    assert score == 0.7


def test_a_score_is_clamped_above_at_one():
    assert clamp(1.3) == 1.0


def test_a_score_is_clamped_below_at_zero():
    assert clamp(-0.2) == 0.0


def test_below_low_nothing_is_claimed():
    assert claim_limits(0.29).blocked


def test_low_is_probation_with_one_task_at_a_time():
    assert claim_limits(0.3).max_in_flight == 1


def test_probation_takes_nothing_above_priority_seven():
    assert claim_limits(0.49).max_priority == 7


def test_medium_claims_without_limits():
    assert claim_limits(0.5) == ClaimLimits()


def test_the_limit_is_described_for_the_agent():
    assert "probation" in claim_limits(0.3).describe(0.3)


def test_no_limit_needs_no_description():
    assert claim_limits(0.9).describe(0.9) is None
