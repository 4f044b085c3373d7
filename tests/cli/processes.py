"""Running `marketdata` commands as child processes, as a user would, on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from marketdata.bench.processes import local_env


def up_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """Settings for `marketdata up` with every service on its own free port and data in data_dir."""
    return local_env(data_dir, **settings)


async def run_marketdata(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """Run `marketdata ARGS` to completion; returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketdata.cli.main", *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def running_up(env: dict[str, str], *args: str) -> AsyncIterator[str]:
    """`marketdata up ARGS` until its banner is printed; yields the banner; on exit, SIGTERM and a
    clean exit (code 0) are required."""
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketdata.cli.main", "up", *args,
        env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert up.stderr is not None
        banner = b""
        while b"Ctrl-C" not in banner:
            line = await asyncio.wait_for(up.stderr.readline(), 30)
            assert line, f"`marketdata up` ended early: {banner.decode()}"
            banner += line
        yield banner.decode()
    finally:
        up.terminate()
        assert await asyncio.wait_for(up.wait(), 20) == 0
