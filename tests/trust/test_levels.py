"""SPEC 8 levels and their boundaries, and the probation limits each level puts on claims."""

import pytest

from ains.trust.levels import claim_limits, clamp, trust_level


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


def test_repeated_steps_land_on_boundaries():
    score = 0.5
    for _ in range(10):
        score = clamp(score + 0.02)
    assert score == 0.7 and trust_level(score) == "high"
    assert clamp(1.3) == 1.0 and clamp(-0.2) == 0.0


def test_claim_limits_by_level():
    assert claim_limits(0.29).blocked
    low = claim_limits(0.3)
    assert not low.blocked and low.max_in_flight == 1 and low.max_priority == 7
    assert claim_limits(0.5).max_in_flight is None and claim_limits(0.5).max_priority is None
