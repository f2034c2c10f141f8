"""Prometheus metrics. Counters live for the process; gauges of stored state are read at scrape time."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("ains_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "ains_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CLAIMED_TASKS = Counter("ains_tasks_claimed_total", "Tasks handed to agents by claims")
TASKS_BY_STATUS = Gauge("ains_tasks", "Stored tasks by status", ["status"])
QUEUE_DEPTH = Gauge("ains_queue_depth", "Claimable PENDING tasks")
AGENTS_BY_STATUS = Gauge("ains_agents", "Registered agents by status", ["status"])
RETRIES_SCHEDULED = Counter("ains_task_retries_total", "Failed attempts sent back to the queue for a retry")
TASKS_FAILED = Counter(
    "ains_tasks_failed_total", "Tasks that ended FAILED, by the outcome of the last attempt", ["outcome"]
)
TASK_TIMEOUTS = Counter("ains_task_timeouts_total", "ACTIVE tasks failed by the timeout duty")
LEASES_EXPIRED = Counter("ains_task_leases_expired_total", "ASSIGNED tasks returned to the queue unstarted")
AGENTS_LOST = Counter("ains_agents_lost_total", "Agents marked INACTIVE for silence")
DUTY_RUNS = Counter("ains_background_duty_runs_total", "Background duty passes", ["duty"])
AGENT_TRUST = Gauge("ains_agent_trust_score", "Each agent's trust score", ["agent_id", "trust_level"])
AGENTS_BY_TRUST_LEVEL = Gauge("ains_agents_by_trust_level", "Agents by trust level", ["trust_level"])
WEBHOOK_ATTEMPTS = Counter("ains_webhook_delivery_attempts_total", "Webhook delivery attempts by result", ["result"])
WEBHOOK_EVENT_TO_DELIVERY = Histogram(
    "ains_webhook_event_to_delivery_seconds",
    "Time from a task event to its successful delivery",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CACHE_HITS = Counter("ains_cache_hits_total", "Cache hits", ["kind"])
CACHE_MISSES = Counter("ains_cache_misses_total", "Cache misses", ["kind"])
CACHE_ERRORS = Counter("ains_cache_errors_total", "Cache calls that failed and fell back to the database")
DB_STATEMENTS = Counter("ains_db_statements_total", "SQL statements sent to the database", ["kind"])
