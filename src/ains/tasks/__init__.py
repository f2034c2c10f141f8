"""Tasks: submission, the queue, claims, the state machine and attempt history (SPEC 3)."""
