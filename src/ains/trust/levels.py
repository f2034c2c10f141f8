"""Trust levels (SPEC 8) and what each allows a claim to take."""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_SCORE = 0.5
COMPLETED_DELTA = 0.02
FAILED_DELTA = -0.05

# Lower bounds, highest first.
LEVELS = (("excellent", 0.9), ("high", 0.7), ("medium", 0.5), ("low", 0.3), ("very_low", 0.0))


def trust_level(score: float) -> str:
    for name, floor in LEVELS:
        if score >= floor:
            return name
    return "very_low"


@dataclass(frozen=True)
class ClaimLimits:
    """What an agent's trust level lets it claim: nothing, or a bounded number and priority."""

    blocked: bool = False
    max_in_flight: int | None = None
    max_priority: int | None = None

    def describe(self, score: float) -> str | None:
        level = trust_level(score)
        if self.blocked:
            return f"trust level {level} ({score}): no claims until an admin raises the score"
        if self.max_in_flight is not None:
            return (
                f"trust level {level} ({score}): probation, at most {self.max_in_flight} task at a time "
                f"and priority <= {self.max_priority}"
            )
        return None


# Below CLAIM_FLOOR nothing is claimed; from it to FULL_ROUTING_FLOOR an agent is on probation.
CLAIM_FLOOR = dict(LEVELS)["low"]
FULL_ROUTING_FLOOR = dict(LEVELS)["medium"]
PROBATION_MAX_PRIORITY = 7
# An agent's submissions move their assignees' trust only from this level (`high`) on.
TRUSTED_SUBMITTER_FLOOR = dict(LEVELS)["high"]


def claim_limits(score: float) -> ClaimLimits:
    if score < CLAIM_FLOOR:
        return ClaimLimits(blocked=True)
    if score < FULL_ROUTING_FLOOR:
        # Probation: one task at a time, nothing urgent.
        return ClaimLimits(max_in_flight=1, max_priority=PROBATION_MAX_PRIORITY)
    return ClaimLimits()


def clamp(score: float) -> float:
    # Rounded so that repeated steps land exactly on the level boundaries (0.3, 0.5, …).
    return round(min(1.0, max(0.0, score)), 6)
