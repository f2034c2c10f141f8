"""Prometheus metrics. Counters and histograms count what this process did; the figures of stored state (tasks by
status, queue depth, agents, trust) are read from the database at each scrape (`stored_state`).

Under `ains serve --workers N` each server process writes its counters to a directory all of them share
(prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`), and a scrape answered by any of them sums
every process's (`scrape`): otherwise each scrape would show only the counts of whichever process answered it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# prometheus_client's own name for the shared directory; it also reads the lower-case spelling.
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter("ains_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "ains_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CLAIMED_TASKS = Counter("ains_tasks_claimed_total", "Tasks handed to agents by claims")
RETRIES_SCHEDULED = Counter("ains_task_retries_total", "Failed attempts sent back to the queue for a retry")
TASKS_FAILED = Counter(
    "ains_tasks_failed_total", "Tasks that ended FAILED, by the outcome of the last attempt", ["outcome"]
)
TASK_TIMEOUTS = Counter("ains_task_timeouts_total", "ACTIVE tasks failed by the timeout duty")
LEASES_EXPIRED = Counter("ains_task_leases_expired_total", "ASSIGNED tasks returned to the queue unstarted")
AGENTS_LOST = Counter("ains_agents_lost_total", "Agents marked INACTIVE for silence")
DUTY_RUNS = Counter("ains_background_duty_runs_total", "Background duty passes", ["duty"])
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


def stored_state(
    tasks_by_status: Mapping[str, int],
    queue_depth: int,
    agents_by_status: Mapping[str, int],
    trust: Iterable[tuple[str, str, float]],
    agents_by_trust_level: Mapping[str, int],
) -> list[GaugeMetricFamily]:
    """The gauges of stored state, as one scrape read them: built afresh each time, so an agent that left or changed
    level does not linger, and the same whichever process answers. `trust`: (agent id, trust level, score)."""
    tasks = GaugeMetricFamily("ains_tasks", "Stored tasks by status", labels=["status"])
    for status, count in tasks_by_status.items():
        tasks.add_metric([status], count)
    depth = GaugeMetricFamily("ains_queue_depth", "Claimable PENDING tasks", value=queue_depth)
    agents = GaugeMetricFamily("ains_agents", "Registered agents by status", labels=["status"])
    for status, count in agents_by_status.items():
        agents.add_metric([status], count)
    scores = GaugeMetricFamily("ains_agent_trust_score", "Each agent's trust score", labels=["agent_id", "trust_level"])
    for agent_id, level, score in trust:
        scores.add_metric([agent_id, level], score)
    levels = GaugeMetricFamily("ains_agents_by_trust_level", "Agents by trust level", labels=["trust_level"])
    for level, count in agents_by_trust_level.items():
        levels.add_metric([level], count)
    return [tasks, depth, agents, scores, levels]


def multiprocess_directory() -> str | None:
    """The directory the server processes share their counters through, when they do."""
    return os.environ.get(MULTIPROCESS_VARIABLE) or os.environ.get(MULTIPROCESS_VARIABLE.lower())


class _SharedCounts(Collector):
    """Every process's counters and histograms in the shared directory, summed. Only their files are read: gauges
    are built per scrape here (a gauge file an older AINS left would repeat a family), and the directory may hold
    other files."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator:
        files = [
            path
            for kind in ("counter", "histogram")
            for path in sorted(glob.glob(os.path.join(glob.escape(self.directory), f"{kind}_*.db")))
            # A file too short to hold its own length is one a process is creating this very moment (or a stray).
            if _size(path) >= _SMALLEST_FILE
        ]
        return iter(MultiProcessCollector.merge(files, accumulate=True))


# prometheus_client's files start with the 4-byte length of what they hold and its 4 bytes of padding.
_SMALLEST_FILE = 8


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # gone since the directory was read
        return 0


class _Scrape(Collector):
    def __init__(self, counted: Collector, state: list[GaugeMetricFamily]) -> None:
        self.counted = counted
        self.state = state

    def collect(self) -> Iterator:
        yield from self.counted.collect()
        yield from self.state


def scrape(state: list[GaugeMetricFamily]) -> bytes:
    """The Prometheus text of a scrape: what was counted (every server process's, summed, when they share a
    directory; this process's otherwise, with its process and runtime figures) and the stored state."""
    directory = multiprocess_directory()
    counted: Collector = _SharedCounts(directory) if directory else REGISTRY
    return generate_latest(_Scrape(counted, state))
