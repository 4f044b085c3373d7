"""`marketdata up`: every service on localhost in one process tree (one child process per service,
as in Kubernetes), optionally against the built-in replay exchange; Ctrl-C stops them all."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

from marketdata.cli.mcp import up_token
from marketdata.core.config import ConfigError, Settings, env_name, load_settings

REPLAY_RATE = 20.0  # trades/s per instrument of the offline demo's synthetic market
START_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replay",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="run offline against the replay exchange: synthetic trades, or the recorded FILE",
    )
    parser.add_argument(
        "--replay-rate", type=float, default=REPLAY_RATE, help="synthetic trades/s per instrument"
    )
    parser.set_defaults(handler=run)


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    where: str


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def _wait_port(host: str, port: int, child: Child) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.process.returncode is not None:
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode} while starting")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not open {host}:{port} within {START_TIMEOUT_S:.0f} s")


def _child_setup() -> None:
    """In each child: its own process group, so a terminal's Ctrl-C reaches only `up`, which stops
    the children in order (a second signal would make them drop their graceful shutdown); and, on
    Linux, SIGTERM when `up` itself dies, so no service is left orphaned."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _spawn(name: str, args: list[str], env: dict[str, str], where: str) -> Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketdata.cli.main", *args, env=env, preexec_fn=_child_setup
    )
    return Child(name, process, where)


async def _stop(children: list[Child]) -> None:
    """Consumers first, one at a time: the collector stops before the exchange it reads from."""
    for child in reversed(children):
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.process.wait(), timeout=10)
        except TimeoutError:
            child.process.kill()
            await child.process.wait()


async def up(settings: Settings, replay: str | None, replay_rate: float) -> int:
    env = dict(os.environ)
    host = "127.0.0.1"
    children: list[Child] = []
    for port, what, setting in [
        (settings.collector_port, "collector gRPC", "collector_port"),
        (settings.collector_metrics_port, "collector metrics", "collector_metrics_port"),
        (settings.storage_port, "storage gRPC", "storage_port"),
        (settings.storage_metrics_port, "storage metrics", "storage_metrics_port"),
        (settings.volume_profile_port, "volume-profile gRPC", "volume_profile_port"),
        (settings.volume_profile_metrics_port, "volume-profile metrics", "volume_profile_metrics_port"),
        (settings.order_flow_port, "order-flow gRPC", "order_flow_port"),
        (settings.order_flow_metrics_port, "order-flow metrics", "order_flow_metrics_port"),
        (settings.mcp_port, "MCP HTTP", "mcp_port"),
        (settings.mcp_metrics_port, "MCP metrics", "mcp_metrics_port"),
    ]:
        if not _port_free(settings.bind_host, port):
            print(f"marketdata up: port {port} ({what}) is in use; set {env_name(setting)}", file=sys.stderr)
            return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if replay is not None:
            port = settings.replay_port
            if not _port_free(host, port):
                print(
                    f"marketdata up: replay port {port} is in use; set {env_name('replay_port')}",
                    file=sys.stderr,
                )
                return 2
            args = [
                "replay-exchange",
                "--host",
                host,
                "--port",
                str(port),
                "--instruments",
                ",".join(i.key for i in settings.instruments),
            ]
            args += ["--file", replay] if replay else ["--rate", str(replay_rate * len(settings.instruments))]
            child = await _spawn("replay-exchange", args, env, f"http://{host}:{port} (ws://{host}:{port})")
            children.append(child)
            await _wait_port(host, port, child)
            for name in ("binance_spot", "binance_futures", "bybit"):
                env[env_name(f"{name}_ws_url")] = f"ws://{host}:{port}"
                env[env_name(f"{name}_rest_url")] = f"http://{host}:{port}"
        # Storage first (the embedded store in the data directory unless MARKETDATA_STORAGE_URI says
        # otherwise), then the collector, wired to it.
        storage = await _spawn(
            "storage",
            ["serve", "storage"],
            env,
            f"grpc {settings.bind_host}:{settings.storage_port}, "
            f"metrics http://{settings.bind_host}:{settings.storage_metrics_port}/metrics, "
            f"store {_describe_store(settings)}",
        )
        children.append(storage)
        await _wait_port(settings.bind_host, settings.storage_port, storage)
        env[env_name("storage_addr")] = f"{host}:{settings.storage_port}"
        collector = await _spawn(
            "collector",
            ["serve", "collector"],
            env,
            f"grpc {settings.bind_host}:{settings.collector_port}, "
            f"metrics http://{settings.bind_host}:{settings.collector_metrics_port}/metrics",
        )
        children.append(collector)
        await _wait_port(settings.bind_host, settings.collector_port, collector)
        # The volume profile reads storage's footprints and the collector's live trades.
        env[env_name("collector_addr")] = f"{host}:{settings.collector_port}"
        volume_profile = await _spawn(
            "volume-profile",
            ["serve", "volume-profile"],
            env,
            f"grpc {settings.bind_host}:{settings.volume_profile_port}, "
            f"metrics http://{settings.bind_host}:{settings.volume_profile_metrics_port}/metrics",
        )
        children.append(volume_profile)
        await _wait_port(settings.bind_host, settings.volume_profile_port, volume_profile)
        order_flow = await _spawn(
            "order-flow",
            ["serve", "order-flow"],
            env,
            f"grpc {settings.bind_host}:{settings.order_flow_port}, "
            f"metrics http://{settings.bind_host}:{settings.order_flow_metrics_port}/metrics",
        )
        children.append(order_flow)
        await _wait_port(settings.bind_host, settings.order_flow_port, order_flow)
        # The MCP bridge calls the services above; a development token unless tokens are configured.
        mcp_token = up_token(settings, env)
        mcp_url = f"http://{host}:{settings.mcp_port}/mcp"
        mcp = await _spawn(
            "mcp",
            ["serve", "mcp"],
            env,
            f"{mcp_url}, metrics http://{settings.bind_host}:{settings.mcp_metrics_port}/metrics",
        )
        children.append(mcp)
        await _wait_port(settings.bind_host, settings.mcp_port, mcp)
        source = (
            "replay exchange" + (f" ({replay})" if replay else " (synthetic)")
            if replay is not None
            else "live exchanges"
        )
        print(f"\nmarketdata up: {len(settings.instruments)} instruments from {source}", file=sys.stderr)
        for child in children:
            print(f"  {child.name:<16} pid {child.process.pid:<8} {child.where}", file=sys.stderr)
        print(
            f"  MCP for AI agents: {mcp_url}  (Authorization: Bearer {mcp_token})\n"
            "  try: marketdata tail trades, marketdata profile --instrument KEY --anchor utc_day\n"
            "Ctrl-C stops everything.\n",
            file=sys.stderr,
        )
        waits = [asyncio.ensure_future(c.process.wait()) for c in children]
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for w in waits:
            w.cancel()
        if stopper not in done:
            dead = [c for c in children if c.process.returncode is not None]
            for c in dead:
                print(
                    f"marketdata up: {c.name} exited with code {c.process.returncode}; stopping",
                    file=sys.stderr,
                )
            return 1
        return 0
    except RuntimeError as exc:
        print(f"marketdata up: {exc}", file=sys.stderr)
        return 1
    finally:
        await _stop(children)


def _describe_store(settings: Settings) -> str:
    from marketdata.storage.backends import describe, storage_uri

    return describe(storage_uri(settings))


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"marketdata up: configuration error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(up(settings, args.replay, args.replay_rate))
