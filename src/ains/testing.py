"""Real `ains serve` and `ains worker` processes on free ports, for tests and benchmarks whose
behaviour crosses processes. Their output goes to a temporary file (JSON log lines)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `ains serve` on a free port, for tests whose behaviour crosses processes."""

    command = "serve"
    log_level = "WARNING"

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = os.environ | {"AINS_LOG_LEVEL": self.log_level} | env
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks the server.
        # Kept open for the process's lifetime, hence no context manager.
        self.log = tempfile.NamedTemporaryFile(prefix=f"ains-{self.command}-", suffix=".log", delete=False)  # noqa: SIM115
        command = ["serve", "--port", str(self.port)] if self.command == "serve" else [self.command]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ains", *command, *args],
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
