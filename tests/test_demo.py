"""The README's demo runs to the end (200 tasks final, and a leaderboard), and `scripts/demo` leaves nothing
behind however it ends: no temporary files or database, no server process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _processes_under(directory: Path) -> list[int]:
    """Processes whose AINS_DATA_DIR or TMPDIR is inside `directory`: the demo, its server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours
        for item in environ:
            name, _, value = item.partition(b"=")
            if name in (b"AINS_DATA_DIR", b"TMPDIR") and value.decode(errors="replace").startswith(str(directory)):
                found.append(int(entry.name))
                break
    return found


def _server_processes_under(directory: Path) -> list[int]:
    found = []
    for pid in _processes_under(directory):
        try:
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue  # gone meanwhile
    return found


def _as_in_a_terminal() -> None:
    # A shell cannot trap a signal that was ignored when it started, and this test process may have inherited an
    # ignored SIGINT (a run started in the background does). A terminal's Ctrl-C reaches a demo that has not.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _run_demo(tmp: Path) -> subprocess.Popen:
    env = os.environ | {"TMPDIR": str(tmp), "AINS_DEMO_PYTHON": sys.executable}
    return subprocess.Popen(
        [str(ROOT / "scripts" / "demo")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )


def _assert_nothing_left(tmp: Path) -> None:
    deadline = time.monotonic() + 5
    while _processes_under(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_under(tmp) == [], "the demo left processes running"
    assert list(tmp.iterdir()) == [], f"the demo left files behind: {list(tmp.rglob('*'))}"


@pytest.mark.slow
def test_demo_runs_to_the_end():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all 200 tasks final" in result.stdout
    assert "Leaderboard" in result.stdout and "agent_steady" in result.stdout


@pytest.mark.slow
def test_scripts_demo_runs_and_cleans_up(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    demo = _run_demo(tmp)
    try:
        out, err = demo.communicate(timeout=300)
    finally:
        demo.kill()
    assert demo.returncode == 0, err[-3000:]
    assert "all 200 tasks final" in out and "Leaderboard" in out
    assert f"starting AINS on SQLite in {tmp}" in out  # its data directory was under the temporary directory
    _assert_nothing_left(tmp)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_scripts_demo_interrupted_cleans_up(tmp_path, signum):
    """Ctrl-C (or SIGTERM) while the server runs and the agents work: the server is stopped, its files gone."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    demo = _run_demo(tmp)
    try:
        deadline = time.monotonic() + 60
        while not _server_processes_under(tmp):
            assert demo.poll() is None, demo.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the demo's server never started"
            time.sleep(0.1)
        assert any(tmp.iterdir())  # its data directory, database and log exist while it runs
        time.sleep(1)  # the server answering, the agents registered and working
        demo.send_signal(signum)
        demo.communicate(timeout=30)
    finally:
        demo.kill()
    assert demo.returncode == 128 + signum
    _assert_nothing_left(tmp)
