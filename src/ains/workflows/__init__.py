"""Workflows: tasks that wait for other tasks, and graphs of them submitted at once (SPEC 17)."""
