"""The README's demo runs to the end: 200 tasks final, and a leaderboard."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_to_the_end():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all 200 tasks final" in result.stdout
    assert "Leaderboard" in result.stdout and "agent_steady" in result.stdout
