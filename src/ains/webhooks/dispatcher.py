"""The dispatcher: sends due deliveries in the background, never inside an API request.

A pass takes due deliveries with `FOR UPDATE SKIP LOCKED`, only the oldest
pending one of each active webhook (so a receiver sees a task's events in order
and at most one delivery per webhook is in flight), and leases them: their
`next_attempt_at` moves past the attempt's timeout before the transaction
commits. Several dispatchers on one PostgreSQL therefore never send one
delivery at the same time, and a crashed dispatcher's lease simply runs out.
Sending happens outside any transaction; the outcome, the next attempt time or
the final status, and the webhook's health are then written in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ains.background.duty import Duty, PassResult
from ains.core.clock import utcnow
from ains.core.config import Settings
from ains.core.context import AppContext
from ains.core.database import after_commit
from ains.core.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_EVENT_TO_DELIVERY
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery
from ains.webhooks.outbox import DEADLINE_DELIVERY
from ains.webhooks.signing import signature_headers
from ains.webhooks.url_guard import ForbiddenTarget, check_target

log = logging.getLogger("ains.webhooks")

# A leased delivery is retaken only after its attempt's timeout plus this margin.
LEASE_MARGIN_SECONDS = 10


def backoff_delay(attempts_made: int, base: float) -> float:
    """Seconds before the next attempt: base, 2×base, 4×base…"""
    return base * 2 ** max(0, attempts_made - 1)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """A Retry-After header (seconds or an HTTP date) on a 429 or 503 answer."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    return None


@dataclass(frozen=True)
class Leased:
    """A delivery this dispatcher holds the lease of, with what sending it needs."""

    delivery_id: str
    attempt: int
    event_id: str
    url: str
    secret: str
    body: str


class WebhookDispatcher:
    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._in_flight: set[asyncio.Task] = set()

    def _http(self, ctx: AppContext) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=ctx.settings.webhook_timeout_seconds,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=ctx.settings.webhook_concurrency),
            )
        return self._client

    async def run_pass(self, ctx: AppContext) -> PassResult:
        settings = ctx.settings
        free = settings.webhook_concurrency - len(self._in_flight)
        now = utcnow()
        taken: list[tuple[WebhookDelivery, str, str, str]] = []
        if free > 0:
            # Each active webhook's oldest pending delivery: one index probe per webhook, not a scan of the backlog.
            older = aliased(WebhookDelivery)
            hook = aliased(Webhook)
            oldest_pending = (
                select(older.id)
                .where(older.webhook_id == hook.webhook_id, older.status == "pending")
                .order_by(older.id)
                .limit(1)
                .scalar_subquery()
            )
            oldest_of_its_webhook = WebhookDelivery.id.in_(select(oldest_pending).where(hook.active.is_(True)))
            async with ctx.db.transaction() as session:
                rows = await session.execute(
                    select(WebhookDelivery, Webhook.url, Webhook.secret, TaskEvent.body)
                    .join(Webhook, Webhook.webhook_id == WebhookDelivery.webhook_id)
                    .join(TaskEvent, TaskEvent.event_id == WebhookDelivery.event_id)
                    .where(
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= now,
                        Webhook.active.is_(True),
                        oldest_of_its_webhook,
                    )
                    .order_by(WebhookDelivery.id)
                    .limit(free)
                    .with_for_update(of=WebhookDelivery, skip_locked=True)
                )
                lease = now + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
                for delivery, url, secret, body in rows:
                    delivery.attempts += 1
                    delivery.next_attempt_at = lease
                    delivery.updated_at = now
                    taken.append((delivery, url, secret, body))
        for delivery, url, secret, body in taken:
            leased = Leased(delivery.delivery_id, delivery.attempts, delivery.event_id, url, secret, body)
            task = asyncio.create_task(self._deliver(ctx, leased))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return PassResult(len(taken), await self._next_due(ctx, now))

    async def _next_due(self, ctx: AppContext, now: datetime) -> datetime | None:
        async with ctx.db.read() as session:
            value = await session.scalar(
                select(func.min(WebhookDelivery.next_attempt_at))
                .join(Webhook, Webhook.webhook_id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at > now, Webhook.active)
            )
        return value

    async def _deliver(self, ctx: AppContext, leased: Leased | None) -> None:
        """Send a leased delivery; while its webhook has more due, send those next (the lease passes along)."""
        while leased is not None:
            code, error, wait, duration_ms = await self._send(ctx, leased)
            try:
                leased = await self._record(ctx, leased, code, error, duration_ms, wait)
            except Exception:  # the lease runs out and another pass retries the delivery
                log.exception("could not record a webhook delivery", extra={"delivery_id": leased.delivery_id})
                return

    async def _send(self, ctx: AppContext, leased: Leased) -> tuple[int | None, str | None, float | None, float]:
        settings = ctx.settings
        content = leased.body.encode()
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        wait: float | None = None
        try:
            await check_target(leased.url, allow_private=settings.webhook_allow_private)
            headers = signature_headers(leased.secret, leased.event_id, int(time.time()), content)
            response = await self._http(ctx).post(leased.url, content=content, headers=headers)
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
                wait = retry_after_seconds(response)
        except ForbiddenTarget as exc:
            error = str(exc)
        except httpx.TimeoutException:
            error = f"no answer within {settings.webhook_timeout_seconds} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        return code, error, wait, round((time.perf_counter() - started) * 1000, 1)

    async def _record(
        self,
        ctx: AppContext,
        leased: Leased,
        code: int | None,
        error: str | None,
        duration_ms: float,
        wait: float | None,
    ) -> Leased | None:
        """Write an attempt's outcome; when the delivery is done, lease its webhook's next one if it is due."""
        settings = ctx.settings
        now = utcnow()
        following: Leased | None = None
        async with ctx.db.transaction() as session:
            delivery = await session.scalar(
                select(WebhookDelivery).where(WebhookDelivery.delivery_id == leased.delivery_id).with_for_update()
            )
            if delivery is None or delivery.status != "pending" or delivery.attempts != leased.attempt:
                return None  # deleted, or our lease ran out and another dispatcher took over
            hook = await session.scalar(
                select(Webhook).where(Webhook.webhook_id == delivery.webhook_id).with_for_update()
            )
            delivery.history = [
                *delivery.history,
                {
                    "attempt": leased.attempt,
                    "at": now.isoformat().replace("+00:00", "Z"),
                    "response_code": code,
                    "error": error,
                    "duration_ms": duration_ms,
                },
            ]
            delivery.response_code = code
            delivery.last_error = error
            delivery.updated_at = now
            if error is None:
                delivery.status = "succeeded"
                delivery.finished_at = now
                hook.consecutive_failures = 0
                hook.last_success_at = now
                outcome = "succeeded"
                latency = (now - delivery.created_at).total_seconds()
                after_commit(session, lambda: WEBHOOK_EVENT_TO_DELIVERY.observe(latency))
            else:
                hook.last_failure_at = now
                if code == 410:
                    self._fail(delivery, hook, now)
                    hook.active = False
                    hook.disabled_reason = "the receiver answered 410 Gone"
                    outcome = "gone"
                elif leased.attempt < settings.webhook_max_attempts:
                    delay = backoff_delay(leased.attempt, settings.webhook_backoff_base_seconds)
                    if wait is not None:
                        delay = min(max(delay, wait), settings.retry_max_delay_seconds)
                    delivery.next_attempt_at = now + timedelta(seconds=delay)
                    outcome = "retrying"
                else:
                    self._fail(delivery, hook, now)
                    if hook.active and hook.consecutive_failures >= settings.webhook_disable_after:
                        hook.active = False
                        hook.disabled_reason = f"{hook.consecutive_failures} deliveries failed in a row"
                    outcome = "failed"
            hook.updated_at = now
            if delivery.status != "pending" and hook.active:
                following = await self._lease_next(session, hook, now, settings)
            after_commit(session, lambda: WEBHOOK_ATTEMPTS.labels(outcome).inc())
            if following is None:
                # This webhook's next delivery may go now, or at its retry time: a pass should look.
                after_commit(session, lambda: ctx.signals.deadline(DEADLINE_DELIVERY, now))
        if outcome in ("gone", "failed"):
            log.warning("webhook delivery failed", extra={"delivery_id": leased.delivery_id, "error": error})
        return following

    @staticmethod
    async def _lease_next(session: AsyncSession, hook: Webhook, now: datetime, settings: Settings) -> Leased | None:
        """The webhook's oldest pending delivery, leased, if it is due: a backlog drains without a pass per item.

        No SKIP LOCKED here: skipping the oldest because a pass holds it would send a newer one first.
        """
        await session.flush()  # the delivery just finished must no longer count as pending
        row = (
            await session.execute(
                select(WebhookDelivery, TaskEvent.body)
                .join(TaskEvent, TaskEvent.event_id == WebhookDelivery.event_id)
                .where(WebhookDelivery.webhook_id == hook.webhook_id, WebhookDelivery.status == "pending")
                .order_by(WebhookDelivery.id)
                .limit(1)
                .with_for_update(of=WebhookDelivery)
            )
        ).first()
        if row is None or row[0].next_attempt_at > now:
            return None
        delivery, body = row
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
        delivery.updated_at = now
        return Leased(delivery.delivery_id, delivery.attempts, delivery.event_id, hook.url, hook.secret, body)

    @staticmethod
    def _fail(delivery: WebhookDelivery, hook: Webhook, now: datetime) -> None:
        delivery.status = "failed"
        delivery.finished_at = now
        hook.consecutive_failures += 1

    async def close(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        for task in list(self._in_flight):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def webhook_duty() -> Duty:
    dispatcher = WebhookDispatcher()
    return Duty(
        "webhooks",
        dispatcher.run_pass,
        lambda ctx: ctx.settings.webhook_dispatch_interval_seconds,
        DEADLINE_DELIVERY,
        close=dispatcher.close,
    )
