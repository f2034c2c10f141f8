"""Webhooks: the transactional outbox of task events, signed deliveries, retries and health (SPEC 9)."""
