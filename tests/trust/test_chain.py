"""SPEC 8 hash chain: /trust/verify detects a record edited, deleted or inserted directly in the database."""

import hashlib
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, select, update

from ains.trust.models import TrustRecord
from ains.trust.service import record_digest
from tests.helpers import ADMIN, claim, create_client, register_agent, statements_seen, submit


@pytest.fixture
async def chained(client):
    await register_agent(client, "agent_1")
    for n in range(4):
        await client.post("/ains/agents/agent_1/trust/adjust", json={"delta": 0.05, "reason": f"r{n}"}, headers=ADMIN)
    return "/ains/agents/agent_1/trust/verify"


async def records(db):
    async with db.read() as session:
        return list(await session.scalars(select(TrustRecord).order_by(TrustRecord.seq)))


async def test_an_untouched_chain_verifies(client, chained):
    response = await client.get(chained, headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"valid": True, "records_checked": 4, "first_bad_record_id": None}
    assert (await client.get(chained)).status_code == 401
    owner = await create_client(client)
    assert (await client.get(chained, headers=owner)).json()["valid"] is True
    assert (await client.get("/ains/agents/agent_9/trust/verify", headers=ADMIN)).status_code == 404


async def test_an_edited_record_is_detected(client, chained, db):
    target = (await records(db))[1]
    async with db.transaction() as session:
        await session.execute(
            update(TrustRecord).where(TrustRecord.record_id == target.record_id).values(trust_score_after=0.99)
        )
    check = (await client.get(chained, headers=ADMIN)).json()
    assert check["valid"] is False and check["first_bad_record_id"] == target.record_id


async def test_a_deleted_record_is_detected(client, chained, db):
    rows = await records(db)
    async with db.transaction() as session:
        await session.execute(delete(TrustRecord).where(TrustRecord.record_id == rows[1].record_id))
    check = (await client.get(chained, headers=ADMIN)).json()
    assert check["valid"] is False and check["first_bad_record_id"] == rows[2].record_id


async def test_deleting_the_newest_record_is_detected(client, chained, db):
    rows = await records(db)
    async with db.transaction() as session:
        await session.execute(delete(TrustRecord).where(TrustRecord.record_id == rows[-1].record_id))
    check = (await client.get(chained, headers=ADMIN)).json()
    assert check["valid"] is False and check["records_checked"] == 3


async def test_an_inserted_record_is_detected(client, chained, db):
    last = (await records(db))[-1]
    async with db.transaction() as session:
        session.add(
            TrustRecord(
                record_id="trust_forged",
                agent_id="agent_1",
                seq=last.seq + 1,
                event_type="manual_adjustment",
                task_id=None,
                trust_delta=0.3,
                trust_score_before=last.trust_score_after,
                trust_score_after=last.trust_score_after + 0.3,
                reason="forged",
                created_at=datetime.now(UTC),
                previous_hash=last.record_hash,
                record_hash="0" * 64,
            )
        )
    check = (await client.get(chained, headers=ADMIN)).json()
    assert check["valid"] is False and check["first_bad_record_id"] == "trust_forged"


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [{"run_background": False}])
async def test_a_report_writes_its_records_and_the_agent_in_one_statement_on_postgres(client, db):
    """The chained records (one INSERT of all of them, as a WITH) and the agent's score, head and metrics: one
    statement per report; the chain it leaves verifies."""
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=3)
    for _ in range(3):
        await submit(client, owner)
    tasks = await claim(client, agent, max_tasks=3, start=True)
    async with statements_seen(db.engine) as statements:
        items = [{"task_id": t["task_id"], "attempt": t["attempt"]} for t in tasks]
        answer = await client.post("/ains/tasks/complete-batch", json={"items": items}, headers=agent.headers)
        assert answer.status_code == 200
    seen = statements.work()
    touching = [sql for sql in seen if "INTO trust_records" in sql or sql.startswith("UPDATE agents")]
    assert len(touching) == 1 and touching[0].startswith("WITH records AS (INSERT INTO trust_records"), touching
    assert "UPDATE agents SET trust_score" in touching[0]
    trust = (await client.get("/ains/agents/agent_1/trust")).json()
    assert trust["metrics"]["total_tasks_completed"] == 3 and trust["trust_score"] == pytest.approx(0.56)
    chain = (await client.get("/ains/agents/agent_1/trust/verify", headers=ADMIN)).json()
    assert chain["valid"] and chain["records_checked"] == 3


def test_the_digest_is_sha256_over_the_previous_hash_and_canonical_json():
    """The chain's canonical form never changes (verifying recomputes every stored record's digest): SHA-256 of the
    previous hash followed by the record's fields as json.dumps writes them sorted, compact, unescaped."""
    fields = {
        "record_id": "trust_1",
        "agent_id": "agent_é",
        "seq": 7,
        "event_type": "task_failed",
        "task_id": "task_1",
        "trust_delta": -1e-06,  # json.dumps writes "-1e-06"; other serialisers write "-0.000001"
        "trust_score_before": 0.100001,
        "trust_score_after": 0.1,
        "reason": 'line\nbreak "quoted" 😀',
    }
    created_at = datetime(2026, 11, 28, 6, 0, 0, 123456, tzinfo=UTC)
    record = SimpleNamespace(**fields, created_at=created_at)
    canonical = json.dumps(
        fields | {"created_at": created_at.isoformat()}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert record_digest("ab" * 32, record) == hashlib.sha256(("ab" * 32 + canonical).encode()).hexdigest()
