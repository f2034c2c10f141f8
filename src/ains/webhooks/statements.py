"""The dispatcher's SQL, built once: Core statements with named parameters.

The dispatcher runs these for every batch of deliveries. Built per call, an ORM statement cost more CPU to
construct and key for the compiled cache than the database took to run it; built here once, each is keyed once
and compiled once per database. `status = 'pending'` is written as a literal, not a parameter, so PostgreSQL can
use the partial indexes on pending deliveries in a prepared statement's generic plan too.
"""

from __future__ import annotations

from sqlalchemy import Integer, String, Update, bindparam, case, func, literal_column, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from ains.core.database import UTCDateTime, table_of
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery
from ains.webhooks.schemas import DeliveryStatus

deliveries = table_of(WebhookDelivery)
webhooks = table_of(Webhook)
events = table_of(TaskEvent)

PENDING: ColumnElement[str] = literal_column(f"'{DeliveryStatus.PENDING.value}'", String)
_NOW = bindparam("now", type_=UTCDateTime)


# Webhook ids (distinct) of active webhooks with a pending delivery due by :now.
DUE_WEBHOOKS = (
    select(deliveries.c.webhook_id)
    .join(webhooks, webhooks.c.webhook_id == deliveries.c.webhook_id)
    .where(
        webhooks.c.active.is_(True),
        deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at <= _NOW,
    )
    .distinct()
)

# The dispatcher locks webhook rows FOR NO KEY UPDATE (`key_share=True`), the lock its own UPDATE of their health
# takes anyway: a transaction inserting a delivery takes FOR KEY SHARE on its webhook (the foreign key), which FOR
# UPDATE would make wait, so every task event of a busy webhook would queue behind the dispatcher's recordings (and
# they behind it). Deleting a webhook still waits for them.

# The active webhooks among :ids, locked in id order; those another transaction holds are skipped.
LOCK_WEBHOOKS = (
    select(webhooks.c.webhook_id, webhooks.c.url, webhooks.c.secret)
    .where(webhooks.c.active.is_(True), webhooks.c.webhook_id.in_(bindparam("ids", expanding=True)))
    .order_by(webhooks.c.webhook_id)
    .with_for_update(skip_locked=True, key_share=True)
)

# Lease up to min(:free, :max_in_flight − what is in flight to it) due deliveries of one (locked) webhook,
# :hook, oldest first, none while an earlier delivery of its task to that webhook is still pending, locking
# them (SKIP LOCKED) and moving their `next_attempt_at` and `leased_until` to :lease. Returns each leased delivery
# with its attempt number (`attempts` after the increment) and its event's body; in no particular order.
_candidate = deliveries.alias("candidate")
_earlier = deliveries.alias("earlier")
_in_flight = deliveries.alias("in_flight")
_max = bindparam("max_in_flight", type_=Integer)
_free = bindparam("free", type_=Integer)
_leased = (
    select(func.count().label("n"))
    .select_from(_in_flight)
    .where(_in_flight.c.webhook_id == bindparam("hook"), _in_flight.c.leased_until > _NOW)
    .subquery("leased")
)
# A CASE rather than LEAST/MIN (their names differ by database); never negative (SQLite reads that as no limit).
_budget = select(
    case((_leased.c.n >= _max, 0), (_max - _leased.c.n < _free, _max - _leased.c.n), else_=_free)
).scalar_subquery()
# An earlier delivery of the candidate's task to its webhook, still pending. A scalar subquery, not NOT EXISTS:
# PostgreSQL turns NOT EXISTS into an anti-join, and on a table it has no statistics for yet (a fresh backlog) it
# chose one that reads every pending delivery of the webhook for each candidate. This stays one probe of
# ix_webhook_deliveries_pending_task per candidate, whatever the statistics.
_earlier_pending = (
    select(_earlier.c.id)
    .where(
        _earlier.c.webhook_id == _candidate.c.webhook_id,
        _earlier.c.task_id == _candidate.c.task_id,
        _earlier.c.status == PENDING,
        _earlier.c.id < _candidate.c.id,
    )
    .limit(1)
    .scalar_subquery()
)
_due = (
    select(_candidate.c.id)
    .where(
        _candidate.c.webhook_id == bindparam("hook"),
        _candidate.c.status == PENDING,
        _candidate.c.next_attempt_at <= _NOW,
        _earlier_pending.is_(None),
    )
    .order_by(_candidate.c.id)
    .limit(_budget)
    .with_for_update(skip_locked=True)
)


def _lease(chosen: ColumnElement[bool]) -> Update:
    return (
        update(deliveries)
        .where(chosen)
        .values(
            attempts=deliveries.c.attempts + 1,
            next_attempt_at=bindparam("lease", type_=UTCDateTime),
            leased_until=bindparam("lease", type_=UTCDateTime),
            updated_at=_NOW,
        )
        .returning(
            deliveries.c.id,
            deliveries.c.delivery_id,
            deliveries.c.attempts,
            deliveries.c.event_id,
            # Named in full: SQLite's RETURNING is rendered without table names, which here would compare the
            # event's id with itself.
            select(events.c.body)
            .where(literal_column(f"{events.name}.event_id") == literal_column(f"{deliveries.name}.event_id"))
            .scalar_subquery(),
        )
    )


LEASE = {
    # `id = ANY(ARRAY(...))`: the chosen ids first, then a primary-key lookup each. With `id IN (...)` PostgreSQL
    # may hash-join the few chosen ids against a scan of the whole table.
    "postgresql": _lease(deliveries.c.id == func.any(func.array(_due.scalar_subquery()))),
    "sqlite": _lease(deliveries.c.id.in_(_due)),
}

# SQLite: the deliveries among :ids (locked in id order elsewhere): what recording needs to know they are still this
# attempt's. PostgreSQL checks, locks and writes them in one statement, RECORD_OUTCOMES_POSTGRESQL.
LOCK_DELIVERIES = (
    select(deliveries.c.id, deliveries.c.status, deliveries.c.attempts, deliveries.c.created_at)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(deliveries.c.id)
    .with_for_update()
)

# The webhooks among :ids with their health, locked in id order.
LOCK_HEALTH = (
    select(
        webhooks.c.webhook_id,
        webhooks.c.url,
        webhooks.c.secret,
        webhooks.c.active,
        webhooks.c.consecutive_failures,
        webhooks.c.last_success_at,
        webhooks.c.last_failure_at,
        webhooks.c.disabled_reason,
    )
    .where(webhooks.c.webhook_id.in_(bindparam("ids", expanding=True)))
    .order_by(webhooks.c.webhook_id)
    .with_for_update(key_share=True)
)

# SQLite: one attempt's outcome, run once per delivery of a batch (executemany) after LOCK_DELIVERIES: its history
# gains :entry (a JSON object, as text) in the database, so the history is never read back.
RECORD_OUTCOME_SQLITE = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"))
    .values(
        history=func.json_insert(deliveries.c.history, "$[#]", func.json(bindparam("b_entry"))),
        response_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime),
        finished_at=bindparam("b_finished", type_=UTCDateTime),
        leased_until=None,
        updated_at=bindparam("b_now", type_=UTCDateTime),
    )
)

# A place is passed on only while its lease has this long left: a recording that waits (for the webhook's lock,
# say) while the lease runs out must not hand on a place a pass elsewhere has already counted as free.
PLACE_MARGIN = "5 seconds"

# PostgreSQL: a batch's outcomes in one statement. Its deliveries are locked in id order, as LOCK_DELIVERIES does, and
# those still pending at the attempt the outcome is about are written; it returns those it wrote. `= ANY(ARRAY())`
# and the conditions on the locked rows (`ours`), not on the table: a primary-key lookup per outcome (a join, or
# the status beside the ids, let PostgreSQL read every pending delivery of a table it has no statistics for yet).
# :outcomes is a JSON array of each delivery's outcome (`id`, `attempt`, `code`, `error`, `status`, `next`,
# `finished`, `entry`: the history's new entry as an object).
_OUTCOMES_WRITTEN = f"""
    WITH outcome AS (
        SELECT * FROM jsonb_to_recordset(CAST(:outcomes AS JSONB)) AS o(id INTEGER, attempt INTEGER, code INTEGER,
            error TEXT, status TEXT, next TIMESTAMPTZ, finished TIMESTAMPTZ, entry JSONB)
    ), ours AS (
        SELECT d.id, d.status, d.attempts, d.leased_until FROM webhook_deliveries d
        WHERE d.id = ANY(ARRAY(SELECT id FROM outcome))
        ORDER BY d.id FOR UPDATE
    ), written AS (
        UPDATE webhook_deliveries d SET response_code = outcome.code, last_error = outcome.error,
            status = outcome.status, next_attempt_at = outcome.next, finished_at = outcome.finished,
            leased_until = NULL, updated_at = :now, history = d.history || jsonb_build_array(outcome.entry)
        FROM outcome, ours
        WHERE d.id = ours.id AND outcome.id = ours.id AND ours.status = 'pending' AND ours.attempts = outcome.attempt
        RETURNING d.id, d.attempts, d.created_at, d.webhook_id,
            ours.leased_until > :now + INTERVAL '{PLACE_MARGIN}' AS held
    )"""
RECORD_OUTCOMES_POSTGRESQL = (
    text(_OUTCOMES_WRITTEN + " SELECT id, attempts, created_at FROM written")
    .bindparams(bindparam("now", type_=UTCDateTime))
    .columns(id=Integer, attempts=Integer, created_at=UTCDateTime)
)
# PostgreSQL, every attempt of a batch succeeded: one autocommitted statement (asyncpg's own parameters: $1 the
# outcomes as above, $2 now, $3 the new leases' end, $4 webhook_max_in_flight) writes the outcomes and their
# webhooks' health (as RECORD_SUCCESSES does) and passes each freed place on: a webhook still active leases as many
# of its due deliveries as the batch held places of it (a place counts while its lease has PLACE_MARGIN left), but
# never more than leaves it at its limit by this statement's count (so a webhook found over it, after a lease
# ran out while a recording waited longer than the margin, comes back down), oldest first, none while
# an earlier delivery of its task is pending (SKIP LOCKED, as LEASE; the batch's own deliveries, which its snapshot
# still shows pending, no longer count: a task's next delivery goes once the one before it is recorded). It counts
# nothing: the places change hands inside one commit, so what is in flight to a webhook never grows, and the
# statement needs no newer snapshot than its own, which a count taken after waiting for the webhook's lock would (a
# pass holding that lock leases against a count that still includes these places; a delivery it leased meanwhile is
# seen as leased when locked here). Returns one row per delivery written (kind 'written') and per delivery leased
# (kind 'leased', with its event's body), each with its webhook's url and secret; a written row also carries the
# places its webhook freed and how many of its deliveries were in flight before (this statement's snapshot, the
# freed ones included): a webhook that filled every place it freed and had room to spare may have more to send.
RECORD_SUCCEEDED_AND_PASS_ON = (
    _OUTCOMES_WRITTEN.replace(":outcomes", "$1::text").replace(":now", "$2::timestamptz")
    + """, healthy AS (
        UPDATE webhooks SET consecutive_failures = 0, last_success_at = $2::timestamptz, updated_at = $2::timestamptz
        FROM (
            SELECT webhook_id FROM webhooks WHERE webhook_id IN (SELECT webhook_id FROM written)
            ORDER BY webhook_id FOR NO KEY UPDATE
        ) AS in_order
        WHERE webhooks.webhook_id = in_order.webhook_id
        RETURNING webhooks.webhook_id, webhooks.url, webhooks.secret, webhooks.active
    ), freed AS (
        SELECT written.webhook_id, count(*) AS places, (
            SELECT count(*) FROM webhook_deliveries f
            WHERE f.webhook_id = written.webhook_id AND f.leased_until > $2::timestamptz
        ) AS in_flight
        FROM written JOIN healthy ON healthy.webhook_id = written.webhook_id
        WHERE healthy.active AND written.held
        GROUP BY written.webhook_id
    ), chosen AS (
        SELECT next.id FROM freed, LATERAL (
            SELECT c.id FROM webhook_deliveries c
            WHERE c.webhook_id = freed.webhook_id AND c.status = 'pending' AND c.next_attempt_at <= $2::timestamptz
                AND (
                    SELECT e.id FROM webhook_deliveries e
                    WHERE e.webhook_id = c.webhook_id AND e.task_id = c.task_id AND e.status = 'pending' AND e.id < c.id
                        AND e.id <> ALL(ARRAY(SELECT id FROM written))
                    LIMIT 1
                ) IS NULL
            ORDER BY c.id LIMIT GREATEST(0, LEAST(freed.places, $4::integer - (freed.in_flight - freed.places)))
            FOR UPDATE SKIP LOCKED
        ) AS next
    ), leased AS (
        UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = $3::timestamptz,
            leased_until = $3::timestamptz, updated_at = $2::timestamptz
        WHERE d.id = ANY(ARRAY(SELECT id FROM chosen))
        RETURNING d.id, d.delivery_id, d.attempts, d.event_id, d.webhook_id
    )
    SELECT 'written' AS kind, written.id, written.attempts, written.created_at, written.webhook_id,
        NULL AS delivery_id, NULL AS event_id, NULL AS body, healthy.url, healthy.secret, freed.places, freed.in_flight
    FROM written JOIN healthy ON healthy.webhook_id = written.webhook_id
    LEFT JOIN freed ON freed.webhook_id = written.webhook_id
    UNION ALL
    SELECT 'leased', leased.id, leased.attempts, NULL, leased.webhook_id, leased.delivery_id, leased.event_id,
        (SELECT task_events.body FROM task_events WHERE task_events.event_id = leased.event_id),
        healthy.url, healthy.secret, NULL, NULL
    FROM leased JOIN healthy ON healthy.webhook_id = leased.webhook_id
    """
)

# A webhook's health after a batch (executemany).
RECORD_HEALTH = (
    update(webhooks)
    .where(webhooks.c.webhook_id == bindparam("b_id"))
    .values(
        active=bindparam("b_active"),
        consecutive_failures=bindparam("b_failures"),
        last_success_at=bindparam("b_success", type_=UTCDateTime),
        last_failure_at=bindparam("b_failure", type_=UTCDateTime),
        disabled_reason=bindparam("b_reason"),
        updated_at=bindparam("b_now", type_=UTCDateTime),
    )
)

# Every attempt of a batch succeeded: its webhooks' health in one statement, which locks them (in id order on
# PostgreSQL, as LOCK_HEALTH does) and returns what leasing their next deliveries needs.
_success_values = {"consecutive_failures": 0, "last_success_at": _NOW, "updated_at": _NOW}
_success_returns = (webhooks.c.webhook_id, webhooks.c.url, webhooks.c.secret, webhooks.c.active)
_in_order = (
    select(webhooks.c.webhook_id)
    .where(webhooks.c.webhook_id.in_(bindparam("ids", expanding=True)))
    .order_by(webhooks.c.webhook_id)
    .with_for_update(key_share=True)
    .subquery("in_order")
)
RECORD_SUCCESSES = {
    "postgresql": update(webhooks)
    .where(webhooks.c.webhook_id == _in_order.c.webhook_id)
    .values(_success_values)
    .returning(*_success_returns),
    # One writer at a time: no lock order to keep.
    "sqlite": update(webhooks)
    .where(webhooks.c.webhook_id.in_(bindparam("ids", expanding=True)))
    .values(_success_values)
    .returning(*_success_returns),
}

# The earliest time a pending delivery of an active webhook falls due after :now.
NEXT_DUE = (
    select(func.min(deliveries.c.next_attempt_at))
    .join(webhooks, webhooks.c.webhook_id == deliveries.c.webhook_id)
    .where(deliveries.c.status == PENDING, deliveries.c.next_attempt_at > _NOW, webhooks.c.active)
)
