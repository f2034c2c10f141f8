"""Task answers are built from rows as plain dicts (ains.tasks.answers), not one Pydantic model per task: every
route that answers with a task gives exactly what `TaskOut` would, in every state a task can be in."""

from datetime import timedelta

from sqlalchemy import select

from ains.core.clock import utcnow
from ains.tasks import queries
from ains.tasks.answers import task_answer
from ains.tasks.models import Task
from ains.tasks.reads import effective_priority
from ains.tasks.schemas import BatchResult, TaskOut
from tests.helpers import claim, create_client, register_agent, submit


def _as_task_out(task, now, settings) -> dict:
    out = TaskOut.model_validate(task)
    out.effective_priority = effective_priority(out, now, settings)
    return out.model_dump(mode="json")


async def test_answers_match_task_out_in_every_state(client, db, settings):
    owner = await create_client(client)
    agent = await register_agent(client, max_concurrency=10)
    await submit(
        client, owner, input_data={"text": "ünïcode ✓", "n": 1.5, "big": 10**15, "tiny": 1e-7, "nested": [None, True]}
    )
    await submit(client, owner, metadata={"k": "v"}, min_trust_score=0.25, idempotency_key="k1")
    failing = await submit(client, owner, max_retries=1, retry_policy="fixed")
    done = await submit(client, owner, priority=9)
    await submit(client, owner, priority=1)  # stays PENDING
    cancelled = await submit(client, owner)
    claimed = {t["task_id"]: t for t in await claim(client, agent, max_tasks=5, start=True)}
    assert failing["task_id"] in claimed and done["task_id"] in claimed
    path = "/ains/tasks/{}/{}"
    answers = {
        "complete": await client.post(
            path.format(done["task_id"], "complete"), json={"result_data": {"ok": [1, 2]}}, headers=agent.headers
        ),
        "fail": await client.post(
            path.format(failing["task_id"], "fail"), json={"error_message": "no ✗"}, headers=agent.headers
        ),
        "cancel": await client.post(path.format(cancelled["task_id"], "cancel"), headers=owner),
    }
    assert all(response.status_code == 200 for response in answers.values()), answers

    now = utcnow()
    async with db.read() as session:
        tasks = list(await session.scalars(select(Task)))
        rows = list(await session.execute(select(*queries.TASK_SELECT)))
    assert len(tasks) == len(rows) == 6
    statuses = {task.status for task in tasks}
    assert statuses >= {"PENDING", "ACTIVE", "COMPLETED", "CANCELLED"}
    by_id = {row.task_id: row for row in rows}
    shared: dict = {}  # one list's moments, written once (claims and lists answer so)
    for task in tasks:
        expected = _as_task_out(task, now, settings)
        assert task_answer(task, now, settings) == expected
        assert task_answer(task, now, settings, shared) == expected
        assert task_answer(by_id[task.task_id], now, settings) == expected
        assert list(task_answer(task, now, settings)) == list(expected)  # same field order too

    # What the routes answered is what a TaskOut of the stored row says (but for the effective priority's clock).
    for response in (answers["complete"], answers["fail"]):
        body = response.json()
        stored = _as_task_out(next(t for t in tasks if t.task_id == body["task_id"]), now, settings)
        assert body == stored
    listed = (await client.get("/ains/tasks", params={"limit": 10}, headers=owner)).json()["tasks"]
    for entry in listed:
        stored = _as_task_out(next(t for t in tasks if t.task_id == entry["task_id"]), now, settings)
        if entry["status"] == "PENDING":
            entry["effective_priority"] = stored["effective_priority"] = None
        assert entry == stored
    read = (await client.get(f"/ains/tasks/{done['task_id']}", headers=owner)).json()
    again = (await client.get(f"/ains/tasks/{done['task_id']}", headers=owner)).json()  # from the cache
    assert read == again == _as_task_out(next(t for t in tasks if t.task_id == done["task_id"]), now, settings)


async def test_a_cached_pending_task_ages(client, settings):
    owner = await create_client(client)
    task = await submit(client, owner, priority=3)
    first = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
    assert first["effective_priority"] >= 3.0
    # The cached answer's effective priority is worked out again on every read, from its available_at.
    later = utcnow() + timedelta(seconds=settings.aging_interval_seconds * 2)
    assert task_answer(_Row(first), later, settings)["effective_priority"] >= 5.0


class _Row(dict):
    """An answer read back as attributes, as `task_answer` reads a row."""

    def __getattr__(self, name):
        from datetime import datetime

        value = self["metadata" if name == "task_metadata" else name]
        if name.endswith("_at") and isinstance(value, str):
            return datetime.fromisoformat(value)
        return value


async def test_a_batch_answer_is_what_batch_result_would_serialise(client):
    """`POST /ains/tasks/batch` answers with dicts built once (`batch_answer`), field for field what `BatchResult`
    would give, submitted and failed items alike."""
    owner = await create_client(client)
    good = {"task_type": "t", "capability_required": "data:v1", "input_data": {"n": 1}}
    items = [good, {"task_type": "t"}, good | {"priority": 99}, good | {"idempotency_key": "k"}]
    answer = await client.post("/ains/tasks/batch", json={"tasks": items}, headers=owner)
    assert answer.status_code == 200
    body = answer.json()
    assert [item["index"] for item in body["submitted"]] == [0, 3] and [f["index"] for f in body["failed"]] == [1, 2]
    assert body == BatchResult.model_validate(body).model_dump(mode="json")
    stored = (await client.get(f"/ains/tasks/{body['submitted'][0]['task_id']}", headers=owner)).json()
    assert body["submitted"][0]["created_at"] == stored["created_at"] and body["submitted"][0]["status"] == "PENDING"
