"""Per-key rate limits (SPEC 18): a token bucket per API key, in Redis when configured, else in the process.

A bucket holds up to `burst` tokens and refills at `rate` tokens a second; a
request takes one, and a request that finds less than one is refused (429).
With Redis the bucket is one hash per key, read, refilled, taken from and
written back by ONE Lua script (atomic in Redis: concurrent requests from any
number of processes never both spend the same token), timed by Redis's own
clock so processes on different machines agree. Without Redis each process
keeps its own buckets (one process is the only case where that is exact).
A Redis that fails or is slow costs nothing but sharing: the check falls back to
this process's own bucket for that request, never to an error.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from ains.core.config import Settings

log = logging.getLogger("ains.ratelimit")

# KEYS[1]: the bucket; ARGV: rate per second, burst. Answers {allowed (0|1), tokens left (as text)}.
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
local elapsed = now - at
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int  # the burst: the most requests at once
    remaining: int  # whole tokens left
    reset_seconds: int  # until the bucket is full again
    retry_after_seconds: int  # until the next token (0 when allowed)

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def verdict(allowed: bool, tokens: float, rate: float, burst: int) -> Verdict:
    return Verdict(
        allowed=allowed,
        limit=burst,
        remaining=max(0, int(tokens)),
        reset_seconds=max(0, math.ceil((burst - tokens) / rate)),
        retry_after_seconds=0 if allowed else max(1, math.ceil((1 - tokens) / rate)),
    )


class LocalBuckets:
    """This process's buckets: [tokens, monotonic time of the last refill] per key, LRU-bounded."""

    def __init__(self, maxsize: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: LRUCache[str, list[float]] = LRUCache(maxsize=maxsize)
        self._clock = clock  # a test holds it still: at 1,000 tokens a second, a loaded machine refills between calls

    def take(self, key: str, rate: float, burst: int) -> Verdict:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(burst), now]
        tokens = min(float(burst), bucket[0] + max(0.0, now - bucket[1]) * rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        bucket[0], bucket[1] = tokens, now
        return verdict(allowed, tokens, rate, burst)


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.rate = settings.rate_limit_per_second
        self.burst = settings.rate_limit_burst
        self.local = LocalBuckets()
        self._redis: Any = None
        self._script: Any = None
        self._prefix = f"{settings.redis_prefix}ratelimit:"
        self._failing = False
        if settings.redis_url:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
                retry_on_timeout=False,
            )
            self._script = self._redis.register_script(TAKE_SCRIPT)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    async def take(self, key: str, rate: float | None = None, burst: int | None = None) -> Verdict:
        """Spend one token of `key`'s bucket (None: the server's defaults)."""
        rate = rate or self.rate
        burst = burst or self.burst
        if self._script is not None:
            try:
                allowed, tokens = await self._script(keys=[self._prefix + key], args=[rate, burst])
            except Exception as exc:  # Redis down or slow: this process's own bucket answers
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "rate limit store unavailable; limiting per process",
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
            else:
                self._failing = False
                return verdict(bool(int(allowed)), float(tokens), rate, burst)
        return self.local.take(key, rate, burst)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
