"""Child processes for benchmarks: each service runs as `marketdata ...` in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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


def local_env(data_dir: os.PathLike[str] | str, **settings: str) -> dict[str, str]:
    """Settings for `marketdata up` with every port setting (every service's gRPC, metrics and HTTP
    port, the replay exchange's) on its own free port and the data in data_dir; keyword arguments are
    further settings by field name (instruments="..."). New services' ports are covered as they are
    declared in core/config.py."""
    from marketdata.core.config import Settings, env_name

    names = {f.name for f in dataclasses.fields(Settings)}
    env = {env_name(name): str(free_port()) for name in names if name.endswith("_port")}
    env[env_name("data_dir")] = str(data_dir)
    env[env_name("storage_uri")] = f"sqlite:///{os.path.join(data_dir, 'store.db')}"
    env.update({env_name(name): value for name, value in settings.items()})
    for name in names:  # each service's address points at its port (collector_addr -> collector_port)
        port = env.get(env_name(name.removesuffix("_addr") + "_port")) if name.endswith("_addr") else None
        if port is not None and name not in settings:
            env[env_name(name)] = f"127.0.0.1:{port}"
    return env


def rss_bytes(pid: int, kind: str = "VmRSS") -> int:
    """Resident memory of a process now (Linux /proc), 0 when it is gone. `kind`: VmRSS (all),
    RssAnon (heap and stacks: where a leak shows) or RssFile (mapped files, e.g. SQLite's mmap: page
    cache the kernel can reclaim)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(kind + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def child_processes(parent: int) -> dict[int, str]:
    """Direct children of `parent`: pid -> their command line (Linux /proc)."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                found[int(entry)] = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
    return found
