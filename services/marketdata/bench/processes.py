"""Child processes for benchmarks: each service runs as `marketdata ...` in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Service:
    name: str
    process: asyncio.subprocess.Process
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_service(name: str, args: list[str], env: dict[str, str], port: int) -> Service:
    """Start `marketdata <args>` and wait until it listens on port."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketdata.cli.main", *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    service = Service(name, process, port)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return service
        await asyncio.sleep(0.1)
    await service.stop()
    raise RuntimeError(f"{name} did not listen on {port}")
