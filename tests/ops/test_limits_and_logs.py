"""Oversized bodies are refused before parsing; logs are JSON lines that never carry keys."""

import json
import logging

import pytest

from ains.core.logging import JsonFormatter
from tests.helpers import ADMIN, create_client, task_body


@pytest.fixture
def settings_overrides():
    return {"max_input_bytes": 1000, "max_body_bytes": 2_000_000}


async def test_a_body_over_the_limit_is_413_json(client):
    headers = await create_client(client)
    body = json.dumps(task_body(input_data={"x": "y" * 2_300_000}))
    response = await client.post("/ains/tasks", content=body, headers=headers | {"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["detail"] == "Request body is larger than 2000000 bytes"
    assert (await client.get("/ains/tasks", headers=ADMIN)).json()["tasks"] == []


def test_log_lines_are_json_with_their_fields():
    record = logging.LogRecord("ains.access", logging.INFO, __file__, 1, "request", None, None)
    record.route = "/ains/tasks"
    record.status = 201
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request" and line["route"] == "/ains/tasks" and line["status"] == 201
    assert line["level"] == "info" and line["time"].endswith("Z")


async def test_request_logs_never_show_the_key(client, caplog):
    headers = await create_client(client)
    with caplog.at_level(logging.INFO):
        await client.get("/ains/tasks", headers=headers)
    secret = headers["Authorization"].split()[1]
    assert caplog.records and all(secret not in JsonFormatter().format(r) for r in caplog.records)
