"""Trust and reputation: scores, the hash-chained trust history, levels, leaderboard (SPEC 8)."""
