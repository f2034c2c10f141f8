"""The hot statements of the agents domain, as plain SQL: the heartbeat.

A heartbeat is every agent's most frequent call. It runs in a lean transaction on PostgreSQL
(`Database.transaction(lean=True)`), so it is plain SQL like the claim's own heartbeat
(`ains.tasks.queries.CLAIM_LOCK_AGENT`), with no ORM object to load and flush.
"""

from __future__ import annotations

from sqlalchemy import String, bindparam, text

from ains.core.database import UTCDateTime

# Record the heartbeat (locking the agent's row) and set the status it reports, or bring an INACTIVE agent back to
# AVAILABLE. No row: the agent is unknown or deregistered.
HEARTBEAT = text(
    """
    UPDATE agents SET last_heartbeat_at = :now,
        status = COALESCE(:status, CASE WHEN status = 'INACTIVE' THEN 'AVAILABLE' ELSE status END)
    WHERE agent_id = :agent_id AND status <> 'DEREGISTERED'
    RETURNING agent_id
    """
).bindparams(bindparam("now", type_=UTCDateTime), bindparam("status", type_=String))
