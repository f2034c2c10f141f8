"""Unit tests: the pure pieces (retry delays, trust levels, the state machine, queue order, event payloads,
cursors), run in about a second with no database, no Redis and no server: `pytest tests/unit`."""
