"""Small helpers the tests share: principals, signed registrations, task bodies, servers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ains.identity import Identity

ADMIN_KEY = "ains_admin_test-key-for-the-suite-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class RegisteredAgent:
    agent_id: str
    identity: Identity
    api_key: str
    record: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.api_key)


async def create_client(client: httpx.AsyncClient, client_id: str = "client_1", **extra: Any) -> dict[str, str]:
    response = await client.post("/ains/api-keys", json={"client_id": client_id, "name": "test", **extra}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return bearer(response.json()["api_key"])


async def register_agent(
    client: httpx.AsyncClient,
    agent_id: str = "agent_1",
    capabilities: list[str] | None = None,
    max_concurrency: int = 5,
    **extra: Any,
) -> RegisteredAgent:
    identity = Identity.generate()
    body = identity.registration(agent_id) | {
        "capabilities": capabilities if capabilities is not None else ["data:v1"],
        "max_concurrency": max_concurrency,
        **extra,
    }
    response = await client.post("/ains/agents", json=body)
    assert response.status_code == 201, response.text
    record = response.json()
    return RegisteredAgent(agent_id, identity, record["api_key"], record)


def task_body(**overrides: Any) -> dict[str, Any]:
    return {"task_type": "analysis", "capability_required": "data:v1", "input_data": {"n": 1}} | overrides


async def submit(client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = await client.post("/ains/tasks", json=task_body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def claim(client: httpx.AsyncClient, agent: RegisteredAgent, **body: Any) -> list[dict[str, Any]]:
    response = await client.post(f"/ains/agents/{agent.agent_id}/tasks/claim", json=body, headers=agent.headers)
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `ains serve` on a free port, for tests whose behaviour crosses processes."""

    command = "serve"
    log_level = "WARNING"

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = os.environ | {"AINS_ADMIN_KEY": ADMIN_KEY, "AINS_LOG_LEVEL": self.log_level} | env
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks the server.
        self.log = tempfile.NamedTemporaryFile(prefix=f"ains-{self.command}-", suffix=".log", delete=False)
        args = ["serve", "--port", str(self.port)] if self.command == "serve" else [self.command]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ains", *args],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start within 30 s")

    def output(self) -> str:
        with open(self.log.name) as handle:
            return handle.read()

    def stop(self) -> None:
        self.stop_keeping_log()
        self.discard_log()

    def stop_keeping_log(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def discard_log(self) -> None:
        self.log.close()
        if os.path.exists(self.log.name):
            os.unlink(self.log.name)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]


class WorkerProcess(ServerProcess):
    """A real `ains worker`: background duties only."""

    command = "worker"
    log_level = "INFO"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.output()[-2000:]}")
            if "background duties started" in self.output():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("worker did not start within 30 s")


async def wait_for(predicate, timeout: float = 20, interval: float = 0.1):
    """Poll an async predicate until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
