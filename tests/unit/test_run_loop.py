"""`ains worker` runs its duties on uvloop, as `ains serve` does through uvicorn (where uvloop is installed)."""

import asyncio

import pytest

from ains.cli.server import run_loop


def test_the_worker_loop_is_uvloops():
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed on this platform (Windows)")
    seen: list[object] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop())

    run_loop(main())
    assert isinstance(seen[0], uvloop.Loop)
