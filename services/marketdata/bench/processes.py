"""Child processes for benchmarks: each service runs as `marketdata ...` in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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


class RedisServerError(RuntimeError):
    """redis-server is missing or did not start."""


@contextlib.contextmanager
def private_redis_server(directory: str | os.PathLike[str], timeout: float = 10.0) -> Iterator[str]:
    """A throw-away redis-server on a free loopback port (never one already running), keeping
    nothing on disk; yields its URL and stops it on exit. Used by benchmarks and test fixtures."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    args = [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]
    process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RedisServerError(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
