"""Small helpers the tests share: principals, signed registrations, task bodies, servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from ains import testing
from ains.identity import Identity
from ains.testing import free_port  # noqa: F401  (re-exported for tests)

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
    response = await client.post(
        "/ains/api-keys", json={"client_id": client_id, "name": "test", **extra}, headers=ADMIN
    )
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


async def wait_for(predicate, timeout: float = 20, interval: float = 0.1):
    """Poll an async predicate until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


@dataclass
class SeenStatements:
    through_sqlalchemy: list[str]
    through_driver: list[str]  # asyncpg's own, including what hot paths send past SQLAlchemy

    def work(self) -> list[str]:
        """Both, one line each, without transaction control or asyncpg's look-ups of types new to a connection."""
        lines = [" ".join(sql.split()) for sql in self.through_sqlalchemy + self.through_driver]
        return [
            sql
            for sql in lines
            if sql.rstrip(";") not in ("BEGIN", "COMMIT", "ROLLBACK")
            and "set_config('jit'" not in sql
            and "typeinfo_tree" not in sql
        ]


@contextlib.asynccontextmanager
async def statements_seen(engine: Any) -> AsyncIterator[SeenStatements]:
    """The statements an engine's connections run inside the block, through SQLAlchemy and (PostgreSQL) the driver."""
    seen = SeenStatements([], [])
    watched: list[Any] = []

    def note(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        seen.through_sqlalchemy.append(statement)

    def watch(dbapi_connection, _record, _proxy) -> None:
        connection = dbapi_connection.driver_connection
        if not hasattr(connection, "add_query_logger") or connection in watched:  # SQLite: all through SQLAlchemy
            return
        connection.add_query_logger(lambda query: seen.through_driver.append(query.query))
        watched.append(connection)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    event.listen(engine.sync_engine, "checkout", watch)
    try:
        yield seen
        await asyncio.sleep(0)  # the driver calls its query loggers soon, not at once
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)
        event.remove(engine.sync_engine, "checkout", watch)
        for connection in watched:
            connection._query_loggers.clear()


class ServerProcess(testing.ServerProcess):
    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        super().__init__({"AINS_ADMIN_KEY": ADMIN_KEY} | env, args)


class WorkerProcess(testing.WorkerProcess):
    def __init__(self, env: dict[str, str]) -> None:
        super().__init__({"AINS_ADMIN_KEY": ADMIN_KEY} | env)


class RestartableServer(ServerProcess):
    """A real `ains serve` that can be SIGKILLed and started again on the same port (and database).

    `port` picks the port (e.g. one an agent already dials before the server is up); `start=False` leaves it
    down until `restart()`.
    """

    def __init__(
        self, env: dict[str, str], args: tuple[str, ...] = (), *, port: int | None = None, start: bool = True
    ) -> None:
        import os
        import tempfile

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = os.environ | {"AINS_LOG_LEVEL": self.log_level, "AINS_ADMIN_KEY": ADMIN_KEY} | env
        self._args = args
        self.log = tempfile.NamedTemporaryFile(prefix="ains-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = None
        if start:
            self.restart()

    def restart(self) -> None:
        import subprocess
        import sys

        command = [sys.executable, "-m", "ains", "serve", "--port", str(self.port), *self._args]
        self.process = subprocess.Popen(command, env=self._env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no draining; connections are cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop_keeping_log(self) -> None:
        if self.process is not None:
            super().stop_keeping_log()


# -- the processes of `ains serve --workers N` ------------------------------------------------------------


def server_processes(serve_pid: int) -> list[int]:
    """The uvicorn server processes `ains serve --workers N` started (whichever of its threads started them)."""
    children = []
    for thread in Path(f"/proc/{serve_pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            children += [int(pid) for pid in (thread / "children").read_text().split()]
    return [pid for pid in children if "spawn_main" in command_line(pid)]


async def started_server_processes(serve_pid: int, count: int = 2) -> list[int]:
    """The server processes of `ains serve --workers N`, once `count` of them have started (within 30 s)."""
    deadline = time.monotonic() + 30
    while len(servers := server_processes(serve_pid)) < count:
        assert time.monotonic() < deadline, f"{count} server processes did not start"
        await asyncio.sleep(0.1)
    return servers


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except FileNotFoundError:
        return ""


def running(pid: int) -> bool:
    """Alive, and not a zombie its new parent has yet to reap."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def process_environment(pid: int) -> dict[str, str]:
    """The environment a running process was started with."""
    items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in items if b"=" in item)
