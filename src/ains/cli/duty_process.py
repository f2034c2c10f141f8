"""The background duties' own process under `ains serve --workers N`: one `ains worker` beside the servers.

With several server processes each would run every background duty, and each webhook dispatcher would share a busy
event loop with the API, where a delivery waits for turns of the loop that requests fill (benchmarks/README.md,
fourteenth session: 50-140 ms a delivery under load, against about 10 ms in a process of its own). So `ains serve
--workers N` starts its servers with AINS_RUN_BACKGROUND=false and one `ains worker` beside them, starts that again
should it fail (end other than by a stop signal), and stops it when the servers stop. The worker watches its parent
too: should `ains serve` be killed outright, the worker stops within a second instead of running on unsupervised.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

log = logging.getLogger(__name__)

# How long a worker that ended waits before it is started again, and how long it is given to stop.
RESTART_DELAY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 10.0


class DutyProcess:
    """One `ains worker` child, kept running until `stop`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def start(self) -> None:
        with self._lock:
            self._process = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="ains-duties-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The worker shares this process's stdout and stderr (so its log lines go where the servers' go) and its
        # environment (the same database, settings and admin key).
        return subprocess.Popen([sys.executable, "-m", "ains", "worker", "--parent-pid", str(os.getpid())])

    def _watch(self) -> None:
        while True:
            with self._lock:
                process = self._process
            if process is None:
                return
            code = process.wait()
            if code == 0:
                # It stopped as asked (a signal it handles: Ctrl-C reaches the whole process group, say).
                if not self._stopping.is_set():
                    log.warning("the background duties' process stopped; not starting it again")
                return
            if self._stopping.wait(RESTART_DELAY_SECONDS):
                return
            log.error("the background duties' process ended; starting it again", extra={"exit_code": code})
            with self._lock:
                if self._stopping.is_set():
                    return
                self._process = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(STOP_TIMEOUT_SECONDS)
