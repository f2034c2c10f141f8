"""Schedules: a task submitted on every tick of a cron expression in a time zone (SPEC 17)."""
