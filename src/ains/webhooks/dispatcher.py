"""The dispatcher: sends due webhook deliveries in the background, never inside an API request.

Order is kept per task, not per webhook (SPEC 15): a delivery may go only when
no earlier delivery of the same task to the same webhook is still pending, and
up to `webhook_max_in_flight` deliveries of other tasks go to one webhook at
once. A slow or failing event therefore holds back only its own task's later
events.

Claiming locks the webhook rows (`FOR NO KEY UPDATE SKIP LOCKED`), counts what is in
flight to each, and leases due, eligible deliveries within that budget
(`FOR UPDATE SKIP LOCKED` again): their `next_attempt_at` and `leased_until`
move past the attempt's timeout before the transaction commits. Several
dispatchers on one PostgreSQL therefore never send one delivery at the same time
nor exceed the limit together, and a crashed dispatcher's lease simply runs out.
A pass that finds a webhook with due deliveries locked (by another dispatcher, or
by this one recording that webhook's last attempt, which may have started before
the new deliveries existed) looks again within moments, not after the interval.
Sending happens outside any transaction, over one pool of kept-alive connections.
Finished attempts are recorded in batches, all that have finished whenever the
recorder is free: one transaction writes their outcomes, next attempt times or
final statuses, and their webhooks' health, and leases what those webhooks may
send next, so a backlog drains without waiting for a pass. On PostgreSQL a batch
that all succeeded is one autocommitted statement, which hands each place its
deliveries held to the webhook's next due delivery: places change hands inside
one commit, so what is in flight does not grow with any number of dispatchers
(a place is handed on only while its lease has a margin left, and never past the
limit as the statement counts it), and a busy webhook's place is free again
after one round trip. A webhook with room to spare is filled by a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from pydantic_core import to_json

from ains.background.duty import Duty, PassResult
from ains.core.clock import utc_text, utcnow
from ains.core.config import Settings
from ains.core.context import AppContext
from ains.core.database import dialect_name, driver_connection
from ains.core.metrics import DB_STATEMENTS, WEBHOOK_ATTEMPTS, WEBHOOK_EVENT_TO_DELIVERY
from ains.core.work import Work
from ains.webhooks import pinning
from ains.webhooks import statements as sql
from ains.webhooks.outbox import DEADLINE_DELIVERY
from ains.webhooks.schemas import DeliveryStatus
from ains.webhooks.signing import signature_headers
from ains.webhooks.url_guard import ForbiddenTarget, Resolver

log = logging.getLogger("ains.webhooks")

# A leased delivery is retaken only after its attempt's timeout plus this margin.
LEASE_MARGIN_SECONDS = 10
# The most finished attempts one recording transaction writes.
RECORD_BATCH = 500
# A pass that found a webhook with due deliveries locked by another transaction looks again this soon.
LOCKED_RETRY_SECONDS = 0.05


def retry_delay(attempts_made: int, settings: Settings) -> float:
    """Seconds before the next attempt, after `attempts_made` (≥ 1) have failed.

    The list `webhook_retry_delays` (its last value repeats past its end), or base·2ⁿ when
    `webhook_backoff_base_seconds` is set.
    """
    if settings.webhook_backoff_base_seconds is not None:
        return settings.webhook_backoff_base_seconds * 2 ** max(0, attempts_made - 1)
    delays = settings.webhook_retry_delays
    return delays[min(max(attempts_made, 1), len(delays)) - 1]


def retry_after_seconds(answer: pinning.Answer) -> float | None:
    """A Retry-After header (seconds or an HTTP date) on a 429 or 503 answer."""
    if answer.status_code not in (429, 503):
        return None
    value = answer.header("retry-after")
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

    id: int
    delivery_id: str
    webhook_id: str
    attempt: int
    event_id: str
    url: str
    secret: str
    body: str


@dataclass(frozen=True)
class Outcome:
    """One finished attempt, waiting to be recorded."""

    leased: Leased
    code: int | None
    error: str | None
    retry_after: float | None
    duration_ms: float


@dataclass(frozen=True)
class _Target:
    webhook_id: str
    url: str
    secret: str


@dataclass
class _Health:
    """A webhook as a recording finds it (locked), and its health as the batch's outcomes leave it."""

    webhook_id: str
    url: str
    secret: str
    active: bool
    consecutive_failures: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    disabled_reason: str | None

    def parameters(self, now: datetime) -> dict[str, object]:
        """statements.RECORD_HEALTH's parameters."""
        return {
            "b_id": self.webhook_id,
            "b_active": self.active,
            "b_failures": self.consecutive_failures,
            "b_success": self.last_success_at,
            "b_failure": self.last_failure_at,
            "b_reason": self.disabled_reason,
            "b_now": now,
        }


@dataclass(frozen=True)
class _Decided:
    """What one finished attempt makes of its delivery: its changed fields and the attempt's result
    (succeeded, retrying, failed for good, or gone: the receiver answered 410)."""

    outcome: Outcome
    result: str
    change: dict[str, object]
    entry: dict[str, object]  # the delivery's history gains it
    retry_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.result == "succeeded"


def _decide(outcome: Outcome, now: datetime, settings: Settings) -> _Decided:
    leased = outcome.leased
    entry: dict[str, object] = {
        "attempt": leased.attempt,
        "at": utc_text(now),
        "response_code": outcome.code,
        "error": outcome.error,
        "duration_ms": outcome.duration_ms,
    }
    change: dict[str, object] = {
        "b_id": leased.id,
        "b_code": outcome.code,
        "b_error": outcome.error,
        "b_now": now,
        "b_status": DeliveryStatus.FAILED,
        "b_finished": now,
        "b_next": now,
    }
    retry_at = None
    if outcome.error is None:
        change["b_status"] = DeliveryStatus.SUCCEEDED
        result = "succeeded"
    elif outcome.code == 410:
        result = "gone"
    elif leased.attempt < settings.webhook_max_attempts:
        delay = retry_delay(leased.attempt, settings)
        if outcome.retry_after is not None:  # the receiver's wish, within the cap
            delay = max(delay, min(outcome.retry_after, settings.retry_max_delay_seconds))
        retry_at = now + timedelta(seconds=delay)
        change |= {"b_status": DeliveryStatus.PENDING, "b_finished": None, "b_next": retry_at}
        entry["retry_at"] = utc_text(retry_at)  # the history shows the schedule
        result = "retrying"
    else:
        result = "failed"
    return _Decided(outcome, result, change, entry, retry_at)


def _outcome_fields(decided: _Decided) -> dict[str, object]:
    """One item of statements.RECORD_OUTCOMES_POSTGRESQL's :outcomes."""
    change = decided.change
    return {
        "id": change["b_id"],
        "attempt": decided.outcome.leased.attempt,
        "code": change["b_code"],
        "error": change["b_error"],
        "status": change["b_status"],
        "next": change["b_next"],
        "finished": change["b_finished"],
        "entry": decided.entry,
    }


def _written(decided: list[_Decided], attempts: dict[int, int]) -> list[_Decided]:
    """The outcomes whose delivery a recording statement wrote (still at the attempt they are about), in order;
    `attempts` maps each delivery the statement wrote to its attempt number."""
    return [d for d in decided if attempts.get(d.outcome.leased.id) == d.outcome.leased.attempt]


def _count_results(decided: list[_Decided], created: dict[int, datetime], now: datetime) -> None:
    """The metrics of recorded attempts: each result, and each success's time from its event."""
    for result, n in Counter(d.result for d in decided).items():
        WEBHOOK_ATTEMPTS.labels(result).inc(n)
    for d in decided:
        if d.succeeded:
            WEBHOOK_EVENT_TO_DELIVERY.observe((now - created[d.outcome.leased.id]).total_seconds())


class WebhookDispatcher:
    def __init__(self, resolver: Resolver | None = None) -> None:
        # None: url_guard.resolver, the event loop's getaddrinfo unless replaced.
        self._resolver = resolver
        self._client: pinning.PinnedPool | None = None
        self._sending: set[asyncio.Task] = set()
        self._outcomes: list[Outcome] = []
        self._outcomes_ready = asyncio.Event()
        self._recorder: asyncio.Task | None = None
        # A pass left due deliveries behind for want of free slots in this process: when a recording frees
        # some, it asks for a pass rather than waiting for the interval.
        self._short_of_slots = False

    def _http(self, ctx: AppContext) -> pinning.PinnedPool:
        if self._client is None:
            # Connections go only to the address each attempt checked (see pinning), and are kept alive and
            # reused per host: a busy webhook costs no handshake per event.
            self._client = pinning.PinnedPool(
                timeout=ctx.settings.webhook_timeout_seconds, max_connections=ctx.settings.webhook_concurrency
            )
        return self._client

    def _free_slots(self, settings: Settings) -> int:
        return settings.webhook_concurrency - len(self._sending)

    async def run_pass(self, ctx: AppContext) -> PassResult:
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_loop(ctx), name="webhooks:record")
        now = utcnow()
        taken: list[Leased] = []
        skipped = False
        free = self._free_slots(ctx.settings)
        if free > 0:
            async with ctx.work(now) as work:
                targets, skipped = await self._lock_targets(work)
                taken = await self._lease(work, targets, free)
        else:
            self._short_of_slots = True
        self._start(ctx, taken)
        next_due = await self._next_due(ctx, now)
        if skipped:
            # A webhook with due deliveries was locked, by a recording here or a pass elsewhere, which may have
            # begun before those deliveries existed: look again soon rather than after the whole interval.
            soon = now + timedelta(seconds=LOCKED_RETRY_SECONDS)
            next_due = soon if next_due is None else min(next_due, soon)
        return PassResult(len(taken), next_due)

    @staticmethod
    async def _lock_targets(work: Work) -> tuple[list[_Target], bool]:
        """Active webhooks with due deliveries, locked; one another transaction holds is left to it.

        Also says whether any was left so: its due deliveries still wait for a pass.
        """
        session = work.session
        due = sorted(set(await session.scalars(sql.DUE_WEBHOOKS, {"now": work.now})))
        if not due:
            return [], False
        targets = [_Target(*row) for row in await session.execute(sql.LOCK_WEBHOOKS, {"ids": due})]
        return targets, len(targets) < len(due)

    async def _lease(self, work: Work, targets: list[_Target], free: int) -> list[Leased]:
        """Lease due deliveries of these (locked) webhooks: within each one's in-flight budget, oldest first,
        none while an earlier delivery of its task to that webhook is still pending. One statement per webhook
        picks, locks and leases them (see statements.LEASE)."""
        if not targets or free <= 0:
            return []
        session, now, settings = work.session, work.now, work.settings
        lease = now + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
        targets = list(targets)
        random.shuffle(targets)  # when slots are short, no webhook always comes first
        taken: list[Leased] = []
        for target in targets:
            rows = await session.execute(
                sql.LEASE[dialect_name(session)],
                {
                    "hook": target.webhook_id,
                    "now": now,
                    "lease": lease,
                    "max_in_flight": settings.webhook_max_in_flight,
                    "free": free - len(taken),
                },
            )
            taken.extend(
                Leased(row_id, delivery_id, target.webhook_id, attempt, event_id, target.url, target.secret, body)
                for row_id, delivery_id, attempt, event_id, body in sorted(rows.all())
            )
            if len(taken) >= free:
                self._short_of_slots = True
                break
        return taken

    async def _next_due(self, ctx: AppContext, now: datetime) -> datetime | None:
        async with ctx.db.read() as session:
            value: datetime | None = await session.scalar(sql.NEXT_DUE, {"now": now})
        return value

    def _start(self, ctx: AppContext, taken: list[Leased]) -> None:
        for leased in taken:
            task = asyncio.create_task(self._send_and_queue(ctx, leased))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_and_queue(self, ctx: AppContext, leased: Leased) -> None:
        outcome = await self._send(ctx, leased)
        # Only now look the list up: the recorder replaces it while sends are in flight.
        self._outcomes.append(outcome)
        self._outcomes_ready.set()

    async def _send(self, ctx: AppContext, leased: Leased) -> Outcome:
        settings = ctx.settings
        content = leased.body.encode()
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        wait: float | None = None
        try:
            headers = signature_headers(leased.secret, leased.event_id, int(time.time()), content)
            # Resolves the host once, checks every address, and connects to the one checked.
            response = await pinning.post(
                self._http(ctx),
                leased.url,
                content=content,
                headers=headers,
                allow_private=settings.webhook_allow_private,
                resolver=self._resolver,
            )
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
                wait = retry_after_seconds(response)
        except ForbiddenTarget as exc:
            error = str(exc)
        except pinning.Timeout:
            error = f"no answer within {settings.webhook_timeout_seconds} s"
        except pinning.DeliveryError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:  # a fault of ours, not the receiver's: still an outcome, or the lease resends it
            log.exception("webhook attempt failed unexpectedly", extra={"delivery_id": leased.delivery_id})
            error = f"internal error: {type(exc).__name__}"
        return Outcome(leased, code, error, wait, round((time.perf_counter() - started) * 1000, 1))

    async def _record_loop(self, ctx: AppContext) -> None:
        """Write finished attempts, as many as have gathered, one transaction at a time; send what it leased."""
        while True:
            # No waiting for the attempts still in flight to finish too: what finishes during this recording makes
            # the next batch, so sending and recording overlap instead of taking turns (a 2 ms wait for the rest
            # of the batch made one webhook's deliveries 15-20 % slower, benchmarks/README.md).
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            batch, self._outcomes = self._outcomes[:RECORD_BATCH], self._outcomes[RECORD_BATCH:]
            if self._outcomes:
                self._outcomes_ready.set()
            if not batch:
                continue
            try:
                taken = await self._record(ctx, batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # the leases run out and a later pass sends these deliveries again
                log.exception("could not record webhook deliveries", extra={"count": len(batch)})
                continue
            self._start(ctx, taken)

    async def _record(self, ctx: AppContext, batch: list[Outcome]) -> list[Leased]:
        """Write a batch of outcomes and the webhooks' health; lease what those webhooks may send next.

        Whatever the batch's size, on PostgreSQL: when every attempt succeeded, one autocommitted statement does it
        all (`_record_successes`); otherwise one statement writes the outcomes, two more lock and update the
        webhooks (their health follows the outcomes in order), then one per webhook leases. SQLite locks the
        deliveries, writes each (executemany), then the webhooks. The webhooks are locked last, for the shortest
        time: a recording elsewhere waits for them."""
        settings = ctx.settings
        if ctx.db.dialect == "postgresql" and all(outcome.error is None for outcome in batch):
            return await self._record_successes(ctx, batch)
        now = utcnow()
        async with ctx.work(now) as work:
            session = work.session
            # Deliveries, then webhooks, each in id order: two recorders never wait on each other in a circle.
            decided, created = await self._write_outcomes(work, batch)
            if not decided:
                return []
            hook_ids = sorted({d.outcome.leased.webhook_id for d in decided})
            if all(d.succeeded for d in decided):
                statement = sql.RECORD_SUCCESSES[dialect_name(session)]
                updated = await session.execute(statement, {"ids": hook_ids, "now": now})
                targets = [_Target(hook_id, url, secret) for hook_id, url, secret, active in updated if active]
            else:
                targets = await self._record_health(work, hook_ids, decided)
            taken = await self._lease(work, targets, self._free_slots(settings))
            work.after_commit(lambda: _count_results(decided, created, now))
            retry_at = min((d.retry_at for d in decided if d.retry_at is not None), default=None)
            if retry_at is not None:  # the sleeping pass must learn of the nearer deadline
                work.after_commit(lambda: ctx.signals.deadline(DEADLINE_DELIVERY, retry_at))
            if self._short_of_slots and self._free_slots(settings) > len(taken):
                self._short_of_slots = False
                work.after_commit(lambda: ctx.signals.deadline(DEADLINE_DELIVERY, now))
        for d in decided:
            if d.result in ("gone", "failed"):
                extra = {"delivery_id": d.outcome.leased.delivery_id, "error": d.outcome.error}
                log.warning("webhook delivery failed", extra=extra)
        return taken

    async def _record_successes(self, ctx: AppContext, batch: list[Outcome]) -> list[Leased]:
        """PostgreSQL, every attempt of the batch succeeded: one autocommitted statement writes the outcomes and the
        webhooks' health and passes the places they held on to the webhooks' next deliveries
        (statements.RECORD_SUCCEEDED_AND_PASS_ON); what it leased. One round trip instead of four (BEGIN, the
        outcomes, a lease per webhook, COMMIT): the place an answered attempt holds frees sooner, and a webhook's
        rate is its places per recording."""
        settings = ctx.settings
        async with driver_connection(ctx.db.engine) as connection:
            # The moment is read once a connection is in hand: a wait for one must not age it (see PLACE_MARGIN).
            now = utcnow()
            decided = [_decide(outcome, now, settings) for outcome in batch]
            payload = to_json([_outcome_fields(d) for d in decided]).decode()
            lease = now + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
            DB_STATEMENTS.labels("write").inc()
            statement = sql.RECORD_SUCCEEDED_AND_PASS_ON
            rows = await connection.fetch(statement, payload, now, lease, settings.webhook_max_in_flight)
        written = [row for row in rows if row["kind"] == "written"]
        taken = [
            Leased(
                row["id"],
                row["delivery_id"],
                row["webhook_id"],
                row["attempts"],
                row["event_id"],
                row["url"],
                row["secret"],
                row["body"],
            )
            for row in sorted((row for row in rows if row["kind"] == "leased"), key=lambda row: row["id"])
        ]
        written_ids = {row["id"]: row["attempts"] for row in written}
        _count_results(_written(decided, written_ids), {row["id"]: row["created_at"] for row in written}, now)
        # Places are only passed on here, never added: a webhook below its limit (it had caught up for a moment,
        # say) fills up again in a pass. Ask for one when a webhook passed on every place it freed (more may be
        # due) with room to spare, or this process has free slots that a pass left short.
        passed_on = Counter(leased.webhook_id for leased in taken)
        room = any(
            row["places"] is not None
            and passed_on[row["webhook_id"]] == row["places"]
            and row["in_flight"] < settings.webhook_max_in_flight
            for row in written
        )
        if room or (self._short_of_slots and self._free_slots(settings) > len(taken)):
            self._short_of_slots = False
            ctx.signals.deadline(DEADLINE_DELIVERY, now)
        return taken

    @staticmethod
    async def _write_outcomes(work: Work, batch: list[Outcome]) -> tuple[list[_Decided], dict[int, datetime]]:
        """Write the outcomes of the deliveries still this attempt's (not gone with their webhook, nor taken over by
        another dispatcher after the lease ran out); what each made of its delivery, in the order the attempts
        finished, and each written delivery's creation time."""
        session, now, settings = work.session, work.now, work.settings
        if dialect_name(session) == "postgresql":
            everything = [_decide(outcome, now, settings) for outcome in batch]
            payload = to_json([_outcome_fields(d) for d in everything]).decode()
            parameters = {"outcomes": payload, "now": now}
            rows = (await session.execute(sql.RECORD_OUTCOMES_POSTGRESQL, parameters)).all()
            written = _written(everything, {row.id: row.attempts for row in rows})
            return written, {row.id: row.created_at for row in rows}
        ids = sorted(o.leased.id for o in batch)
        locked = {row.id: row for row in await session.execute(sql.LOCK_DELIVERIES, {"ids": ids})}

        def still_ours(outcome: Outcome) -> bool:
            row = locked.get(outcome.leased.id)
            return row is not None and row.status == DeliveryStatus.PENDING and row.attempts == outcome.leased.attempt

        decided = [_decide(outcome, now, settings) for outcome in batch if still_ours(outcome)]
        if decided:
            changes = [d.change | {"b_entry": json.dumps(d.entry)} for d in decided]
            await session.execute(sql.RECORD_OUTCOME_SQLITE, changes)
        return decided, {row_id: row.created_at for row_id, row in locked.items()}

    @staticmethod
    async def _record_health(work: Work, hook_ids: list[str], decided: list[_Decided]) -> list[_Target]:
        """Some attempts failed: lock the webhooks, follow their health through the outcomes in order (a failure
        may disable one), write it; the webhooks still active."""
        session, now, settings = work.session, work.now, work.settings
        hooks = {row.webhook_id: _Health(*row) for row in await session.execute(sql.LOCK_HEALTH, {"ids": hook_ids})}
        for d in decided:
            hook = hooks[d.outcome.leased.webhook_id]
            if d.succeeded:
                hook.consecutive_failures = 0
                hook.last_success_at = now
                continue
            hook.last_failure_at = now
            if d.result == "gone":
                hook.consecutive_failures += 1
                hook.active = False
                hook.disabled_reason = "the receiver answered 410 Gone"
                work.announce_webhooks()
            elif d.result == "failed":
                hook.consecutive_failures += 1
                if hook.active and hook.consecutive_failures >= settings.webhook_disable_after:
                    hook.active = False
                    hook.disabled_reason = f"{hook.consecutive_failures} deliveries failed in a row"
                    work.announce_webhooks()
        await session.execute(sql.RECORD_HEALTH, [hook.parameters(now) for hook in hooks.values()])
        return [_Target(h.webhook_id, h.url, h.secret) for h in hooks.values() if h.active]

    async def close(self) -> None:
        tasks = [*self._sending, *([self._recorder] if self._recorder else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._recorder = None
        self._outcomes.clear()
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
