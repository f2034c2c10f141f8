"""Agents: signed registration, profile, heartbeats, liveness (SPEC 2)."""
