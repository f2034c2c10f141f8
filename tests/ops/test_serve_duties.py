"""`ains serve --workers N` runs the background duties once, in one `ains worker` of its own (cli.duty_process):
not in the server processes, started again should it fail, and gone when `ains serve` is."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.core.test_wakeups import _client_key, _register
from tests.helpers import ServerProcess, task_body

pytestmark = pytest.mark.slow


class LoggingServer(ServerProcess):
    log_level = "INFO"  # "AINS started" (with whether it runs the duties) and "background duties started"


def _children(pid: int) -> list[int]:
    """The process's children, whichever of its threads started them."""
    children = []
    for thread in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            children += [int(child) for child in (thread / "children").read_text().split()]
    return children


def _command(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")
    except FileNotFoundError:
        return []


def _duty_processes(serve_pid: int) -> list[int]:
    return [pid for pid in _children(serve_pid) if "worker" in _command(pid)]


def _running(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except FileNotFoundError:
        return False
    return " Z " not in state and "zombie" not in state  # a killed child its new parent has not reaped yet


def _servers_started(server: ServerProcess) -> list[bool]:
    """Whether each server process that has started runs the duties."""
    return [line["background"] for line in server.log_lines() if line.get("message") == "AINS started"]


def _wait_for(check, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


@pytest.fixture
def served(postgres_only_url, tmp_path):
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path / "data"),
        "AINS_TIMEOUT_CHECK_SECONDS": "0.2",
    }
    server = LoggingServer(env, ("--workers", "2"))
    everyone = [server.process.pid, *_children(server.process.pid)]
    yield server
    server.stop()
    for pid in everyone + _duty_processes(server.process.pid):  # whatever a killed `ains serve` left behind
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


async def _a_task_timing_out(url: str) -> str:
    """Submit, claim and start a task with a one-second timeout: only the duties can fail it."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        _, owner = await _client_key(http)
        agent = await _register(http, "agent_1")
        task = (await http.post("/ains/tasks", json=task_body(timeout_seconds=1, max_retries=0), headers=owner)).json()
        claimed = await http.post("/ains/agents/agent_1/tasks/claim", json={"start": True}, headers=agent)
        assert [t["task_id"] for t in claimed.json()["tasks"]] == [task["task_id"]]
        deadline = time.monotonic() + 20
        while (
            status := (await http.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()["status"]
        ) == "ACTIVE":
            assert time.monotonic() < deadline, "the task did not time out"
            await asyncio.sleep(0.1)
        return status


async def test_the_duties_run_once_in_a_process_of_their_own(served):
    _wait_for(lambda: "background duties started" in served.output() and len(_servers_started(served)) == 2)
    assert _servers_started(served) == [False, False]  # neither server runs a duty
    duties = _duty_processes(served.process.pid)
    assert len(duties) == 1
    assert _command(duties[0])[-2:] == ["--parent-pid", str(served.process.pid)]
    assert await _a_task_timing_out(served.url) == "FAILED"


async def test_a_duties_process_that_dies_is_started_again(served):
    _wait_for(lambda: "background duties started" in served.output())  # killed only once it runs them
    (first,) = _duty_processes(served.process.pid)
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: [pid for pid in _duty_processes(served.process.pid) if pid != first and _running(pid)])
    _wait_for(lambda: served.output().count("background duties started") == 2)
    assert any(
        line.get("message", "").startswith("the background duties' process ended") for line in served.log_lines()
    )
    assert await _a_task_timing_out(served.url) == "FAILED"


def test_the_duties_process_stops_when_serve_is_killed(served):
    _wait_for(lambda: len(_duty_processes(served.process.pid)) == 1)
    (duties,) = _duty_processes(served.process.pid)
    served.process.kill()  # no chance to stop its children
    served.process.wait()
    _wait_for(lambda: not _running(duties), seconds=10)


def test_the_duties_process_stops_with_serve(served):
    _wait_for(lambda: len(_duty_processes(served.process.pid)) == 1)
    (duties,) = _duty_processes(served.process.pid)
    served.process.terminate()
    assert served.process.wait(30) == 0
    assert not _running(duties)
    assert "starting it again" not in served.output()


def test_without_duties_no_duties_process_is_started(postgres_only_url, tmp_path):
    env = {"AINS_DATABASE_URL": postgres_only_url, "AINS_DATA_DIR": str(tmp_path), "AINS_RUN_BACKGROUND": "false"}
    server = LoggingServer(env, ("--workers", "2"))
    try:
        _wait_for(lambda: len(_servers_started(server)) == 2)
        assert _servers_started(server) == [False, False]
        assert _duty_processes(server.process.pid) == []
    finally:
        server.stop()
