"""The Celery side of benchmarks/peers.py: a no-op task that counts itself in Redis.

Configured from the environment by peers.py: AINS_BENCH_CELERY_BROKER and AINS_BENCH_CELERY_COUNTER.
"""

import os

import redis
from celery import Celery

app = Celery("ains_bench", broker=os.environ.get("AINS_BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(worker_hijack_root_logger=False, task_ignore_result=True, broker_connection_retry_on_startup=True)
_counter = redis.Redis.from_url(app.conf.broker_url)


@app.task(name="noop")
def noop() -> None:
    _counter.incr(os.environ["AINS_BENCH_CELERY_COUNTER"])
