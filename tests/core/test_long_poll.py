"""Long polls end early when the server stops or the caller hangs up, instead of sitting out their wait.

The fallback look-again is set far above the waits, so nothing but the stop or the hang-up can end them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from ains.identity import Identity
from tests.helpers import ADMIN, ServerProcess, bearer, task_body

WAIT_SECONDS = 30


@pytest.fixture
def server(tmp_path):
    process = ServerProcess({"AINS_DATA_DIR": str(tmp_path / "data"), "AINS_WAKEUP_FALLBACK_SECONDS": "60"})
    yield process
    process.stop()


async def _agent(http: httpx.AsyncClient, agent_id: str) -> dict[str, str]:
    body = Identity.generate().registration(agent_id) | {"capabilities": ["data:v1"]}
    response = await http.post("/ains/agents", json=body)
    assert response.status_code == 201, response.text
    return bearer(response.json()["api_key"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "field", "empty"),
    [("/ains/agents/agent_1/heartbeat", "cancelled_task_ids", []), ("/ains/agents/agent_1/tasks/claim", "tasks", [])],
    ids=["heartbeat", "claim"],
)
async def test_a_stop_answers_a_long_poll_at_once(server, path, field, empty):
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        agent = await _agent(http, "agent_1")
        waiting = asyncio.create_task(http.post(path, json={"wait_seconds": WAIT_SECONDS}, headers=agent))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        stopped_at = time.monotonic()
        server.process.terminate()
        answer = await waiting
        await asyncio.to_thread(server.process.wait, WAIT_SECONDS)
        took = time.monotonic() - stopped_at
    assert answer.status_code == 200
    assert answer.json()[field] == empty
    # Without the stop reaching the wait, the server would stop only once the 30 s wait had run out.
    assert took < WAIT_SECONDS / 2, took
    print(f"stopped with a waiting {path.rsplit('/', 1)[-1]} open in {took:.2f} s")


async def _client(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post("/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return bearer(response.json()["api_key"])


@pytest.mark.slow
async def test_a_claim_whose_agent_hung_up_takes_nothing(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        owner = await _client(http)
        agent = await _agent(http, "agent_1")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as doomed:
            waiting = asyncio.create_task(
                doomed.post("/ains/agents/agent_1/tasks/claim", json={"wait_seconds": WAIT_SECONDS}, headers=agent)
            )
            await asyncio.sleep(0.5)
            waiting.cancel()  # the agent gives up: its connection closes
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        await asyncio.sleep(0.5)
        task = (await http.post("/ains/tasks", json=task_body(), headers=owner)).json()
        await asyncio.sleep(1)  # a claim still parked for the gone agent would have taken it by now
        assert (await http.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()["status"] == "PENDING"
        # Still there for an agent that asks.
        claimed = await http.post("/ains/agents/agent_1/tasks/claim", json={}, headers=agent)
        assert [t["task_id"] for t in claimed.json()["tasks"]] == [task["task_id"]]
