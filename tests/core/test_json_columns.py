"""JSON columns are read with pydantic-core's parser (`load_json`), with `json.loads`'s results on both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from ains.core.database import load_json
from tests.helpers import create_client, submit


@pytest.mark.parametrize(
    "document",
    [
        '{"a": [1, 2.5, null, true, false], "b": {"c": "é😀"}}',
        "12345678901234567890123456789",  # beyond 64 bits: still an exact int
        "[-1e400, 0.1000000000000000055511151231257827]",
        '"\\ud83d\\ude00"',  # an escaped surrogate pair
        '["\\ud800x"]',  # a lone surrogate escape: pydantic-core refuses it, json.loads reads it
    ],
)
def test_load_json_reads_what_json_loads_reads(document):
    assert load_json(document) == json.loads(document)
    assert load_json(document.encode()) == json.loads(document)


async def test_the_engine_reads_json_columns_with_load_json(client, app, backend):
    engine = app.state.ctx.db.engine
    assert engine.dialect._json_deserializer is load_json
    owner = await create_client(client, "client_1")
    big = 12345678901234567890123456789
    task = await submit(client, owner, input_data={"n": big, "text": "é😀", "list": [1.5, None]})
    assert task["input_data"] == {"n": big, "text": "é😀", "list": [1.5, None]}
    fresh = await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)
    assert fresh.json()["input_data"]["n"] == big
    if backend.name == "postgres":  # asyncpg decodes jsonb itself, through the engine's deserializer
        async with app.state.ctx.db.read() as session:
            query = text("SELECT input_data FROM tasks WHERE task_id = :t")
            stored = await session.scalar(query, {"t": task["task_id"]})
        assert stored == {"n": big, "text": "é😀", "list": [1.5, None]}
