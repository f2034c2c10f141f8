"""SPEC 11: metrics, readiness when the database is gone, JSON errors, the OpenAPI document."""

import asyncio
import os
import re
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from ains.core.config import Settings
from ains.main import create_app
from tests.helpers import (
    ADMIN,
    ADMIN_KEY,
    ServerProcess,
    WorkerProcess,
    claim,
    create_client,
    free_port,
    process_environment,
    register_agent,
    server_processes,
    started_server_processes,
    submit,
)


async def test_metrics_report_requests_tasks_and_claims(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    await submit(client, owner)
    await submit(client, owner)
    await claim(client, agent)
    response = await client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'ains_tasks{status="PENDING"} 1.0' in text
    assert 'ains_tasks{status="ASSIGNED"} 1.0' in text
    assert "ains_queue_depth 1.0" in text
    assert "ains_tasks_claimed_total" in text
    assert 'ains_http_requests_total{method="POST",route="/ains/tasks",status="201"}' in text
    assert "ains_http_request_duration_seconds_bucket" in text
    assert 'ains_db_statements_total{kind="read"}' in text and 'ains_db_statements_total{kind="write"}' in text


async def test_metrics_report_each_registered_agents_trust_and_forget_one_that_left(client):
    first = await register_agent(client, "agent_1")
    await register_agent(client, "agent_2")
    text = (await client.get("/metrics", headers=ADMIN)).text
    level = first.record["trust_level"]
    score = first.record["trust_score"]
    assert f'ains_agent_trust_score{{agent_id="agent_1",trust_level="{level}"}} {score}' in text
    assert f'ains_agent_trust_score{{agent_id="agent_2",trust_level="{level}"}} {score}' in text
    assert f'ains_agents_by_trust_level{{trust_level="{level}"}} 2.0' in text
    assert 'ains_agents{status="AVAILABLE"} 2.0' in text
    assert (await client.delete("/ains/agents/agent_1", headers=first.headers)).status_code == 204
    text = (await client.get("/metrics", headers=ADMIN)).text
    assert 'agent_id="agent_1"' not in text
    assert 'ains_agent_trust_score{agent_id="agent_2"' in text
    assert f'ains_agents_by_trust_level{{trust_level="{level}"}} 1.0' in text
    assert 'ains_agents{status="AVAILABLE"} 1.0' in text


async def test_metrics_need_the_admin(client):
    owner = await create_client(client)
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=owner)).status_code == 403


async def test_ready_is_503_when_the_database_is_unreachable(tmp_path):
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(Settings(database_url=dead, data_dir=tmp_path, admin_key=ADMIN_KEY, auto_migrate=False))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/health")).status_code == 200
        response = await http.get("/ready")
        assert response.status_code == 503 and response.json()["status"] == "unavailable"
        # A request that needs the database answers 503 JSON, not 500.
        failed = await http.get("/ains/agents")
        assert failed.status_code == 503 and failed.json() == {"detail": "Database unavailable"}


async def test_errors_are_json(client):
    response = await client.get("/no/such/path")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
    response = await client.post("/ains/tasks", json={}, headers=ADMIN)
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)


async def test_openapi_describes_every_endpoint(client):
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    expected = {
        "/ains/api-keys": {"get", "post"},
        "/ains/api-keys/{key_id}": {"delete"},
        "/ains/audit-logs": {"get"},
        "/ains/agents": {"get", "post"},
        "/ains/agents/{agent_id}": {"get", "patch", "delete"},
        "/ains/agents/{agent_id}/token": {"post"},
        "/ains/agents/{agent_id}/heartbeat": {"post"},
        "/ains/agents/{agent_id}/tasks/claim": {"post"},
        "/ains/tasks": {"get", "post"},
        "/ains/tasks/{task_id}": {"get"},
        "/ains/tasks/{task_id}/attempts": {"get"},
        "/ains/tasks/{task_id}/start": {"post"},
        "/ains/tasks/{task_id}/complete": {"post"},
        "/ains/tasks/{task_id}/fail": {"post"},
        "/health": {"get"},
        "/ready": {"get"},
        "/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    for name in ("TaskOut", "TaskSubmit", "AgentRegister", "AgentOut", "ApiKeyCreated", "ClaimRequest"):
        assert name in document["components"]["schemas"]


async def test_every_request_is_counted_once_under_its_route_and_status(client):
    from prometheus_client import REGISTRY

    def count(status: str) -> float:
        labels = {"method": "POST", "route": "/ains/tasks", "status": status}
        return REGISTRY.get_sample_value("ains_http_requests_total", labels) or 0.0

    def observed() -> float:
        labels = {"method": "POST", "route": "/ains/tasks"}
        return REGISTRY.get_sample_value("ains_http_request_duration_seconds_count", labels) or 0.0

    owner = await create_client(client)
    created, refused, timed = count("201"), count("422"), observed()
    for _ in range(3):
        await submit(client, owner)
    assert (await client.post("/ains/tasks", json={"task_type": "x"}, headers=owner)).status_code == 422
    assert (count("201") - created, count("422") - refused, observed() - timed) == (3, 1, 4)


def _ready_answers(metrics: str) -> float:
    found = re.search(r'^ains_http_requests_total\{method="GET",route="/ready",status="200"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
async def test_a_scrape_of_serve_with_two_workers_counts_what_both_processes_did(postgres_only_url, tmp_path):
    """Each server process of `ains serve --workers 2` answers some requests; a scrape, whichever process answers
    it, reports them all. One process is paused (SIGSTOP) while the other takes a round of requests on new
    connections, so each process certainly answered some."""
    env = {"AINS_DATABASE_URL": postgres_only_url, "AINS_DATA_DIR": str(tmp_path / "data")}
    server = ServerProcess(env, ("--workers", "2"))
    shared = None
    try:
        servers = await started_server_processes(server.process.pid)
        shared = process_environment(servers[0])["PROMETHEUS_MULTIPROC_DIR"]
        assert Path(shared).is_dir()
        rounds = {servers[0]: 3, servers[1]: 4}
        for answering, paused in (servers, reversed(servers)):
            os.kill(paused, signal.SIGSTOP)
            try:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:  # new connections
                    for _ in range(rounds[answering]):
                        assert (await http.get("/ready")).status_code == 200
            finally:
                os.kill(paused, signal.SIGCONT)
        for _ in range(6):  # each on a new connection, so either process may answer
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                scraped = await http.get("/metrics", headers=ADMIN)
            assert scraped.status_code == 200
            assert _ready_answers(scraped.text) == 7
    finally:
        server.stop()
    assert shared is not None and not Path(shared).exists()  # the shared directory goes with ains serve


@pytest.mark.slow
@pytest.mark.parametrize("serve_args", [(), ("--workers", "2")], ids=["one process", "two server processes"])
async def test_a_worker_given_the_same_directory_is_counted_in_the_servers_metrics(
    postgres_only_url, tmp_path, serve_args
):
    """Servers without duties beside an `ains worker`, all told one PROMETHEUS_MULTIPROC_DIR: the duties' passes,
    which only the worker makes, show in a scrape of the servers; the directory, the operator's, is kept."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    # What else the directory may hold is not read: an older AINS's gauge file, anything else named *.db, a file a
    # process is only now creating.
    (shared / "gauge_all_1.db").write_bytes(b"not a metrics file")
    (shared / "notes.db").write_bytes(b"not a metrics file")
    (shared / "counter_2.db").write_bytes(b"")
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    server = ServerProcess(env | {"AINS_RUN_BACKGROUND": "false"}, serve_args)
    worker = WorkerProcess(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                scraped = await http.get("/metrics", headers=ADMIN)
            assert scraped.status_code == 200
            if re.search(r'^ains_background_duty_runs_total\{duty="timeouts"\} [1-9]', scraped.text, re.M):
                break
            assert time.monotonic() < deadline, "the worker's duty passes never showed in the servers' metrics"
            await asyncio.sleep(0.2)
        # The processes that count write there; `ains serve --workers N` itself, which serves nothing, does not.
        own_files = list(shared.glob(f"counter_{server.process.pid}.db"))
        assert len(own_files) == (0 if serve_args else 1)
        assert list(shared.glob(f"counter_{worker.process.pid}.db"))
    finally:
        worker.stop()
        server.stop()
    assert shared.is_dir() and any(shared.iterdir())  # the operator's: kept


@pytest.mark.slow
async def test_a_server_process_restarted_after_the_directory_was_removed_makes_it_again(postgres_only_url, tmp_path):
    """A cleaner of old temporary files may remove the directory under a long-running `ains serve --workers N`; a
    server process that dies and is started again makes it anew rather than failing as it starts, over and over."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    server = ServerProcess(env, ("--workers", "2"))
    try:
        servers = await started_server_processes(server.process.pid)
        shutil.rmtree(shared)
        os.kill(servers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not list(shared.glob("counter_*.db")):
            assert time.monotonic() < deadline, "no server process counts in the directory again"
            await asyncio.sleep(0.1)
        restarted = set(server_processes(server.process.pid)) - set(servers)
        assert len(restarted) == 1
        (pid,) = restarted
        assert list(shared.glob(f"counter_{pid}.db"))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.get("/metrics", headers=ADMIN)).status_code == 200
    finally:
        server.stop()
