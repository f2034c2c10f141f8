"""Background duties: timeouts, expired leases, stale agents, due retries; and the runner that schedules them."""
