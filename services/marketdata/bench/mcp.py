"""`marketdata bench mcp`: get_volume_profile for a whole UTC day, end to end over MCP streamable HTTP.

`--trades` trades of one instrument over one closed UTC day are stored through the embedded storage
(its own process); the volume-profile service and the MCP bridge (`marketdata serve mcp`) run in their
own processes, as in `marketdata up`. An MCP client (fastmcp.Client, one session, bearer token) calls
get_volume_profile for that day: the first (cold) call, then `--rounds` warm calls, latency percentiles
as the agent's client sees them (HTTP, JSON-RPC, the bridge, gRPC, the service). The same request straight
over gRPC is timed too, so the bridge's share shows.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from marketdata.bench.collector import machine
from marketdata.bench.processes import Service, free_port, start_service
from marketdata.bench.profile import _volume_profile
from marketdata.bench.storage import DAY_MS, INSTRUMENT, _ingest, _percentiles, _requests, _storage
from marketdata.core.grpc_client import create_channel
from marketdata.mcp.shaping import iso
from marketdata.v1 import volume_profile_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2_grpc as pb_grpc


@dataclass
class Scenario:
    name: str
    arguments: dict[str, Any]
    cold_ms: float = 0.0
    warm_ms: dict[str, float] = field(default_factory=dict)
    answer_bytes: int = 0


@dataclass
class Report:
    machine: dict[str, Any]
    trades: int
    rounds: int
    rows: int = 0
    grpc_ms: dict[str, float] = field(default_factory=dict)
    # The bridge's own histogram: mean time from tool call received to answer ready (server side).
    bridge_mean_ms: float = 0.0
    scenarios: list[Scenario] = field(default_factory=list)


async def _bridge(profile_port: int, token: str, metrics_port: int) -> tuple[Service, str]:
    port = free_port()
    env = {
        "MARKETDATA_MCP_PORT": str(port),
        "MARKETDATA_MCP_METRICS_PORT": str(metrics_port),
        "MARKETDATA_MCP_TOKENS": f"{token}:unlimited",
        "MARKETDATA_INSTRUMENTS": INSTRUMENT.key,
        "MARKETDATA_VOLUME_PROFILE_ADDR": f"127.0.0.1:{profile_port}",
        # no collector in this benchmark: the bridge checks keys against MARKETDATA_INSTRUMENTS
        "MARKETDATA_COLLECTOR_ADDR": f"127.0.0.1:{free_port()}",
        "MARKETDATA_LOG_LEVEL": "WARNING",
    }
    service = await start_service("mcp", ["serve", "mcp"], env, port)
    return service, f"http://127.0.0.1:{port}/mcp"


async def _time_calls(client: Client[StreamableHttpTransport], scenario: Scenario, rounds: int) -> None:
    began = time.perf_counter()
    result = await client.call_tool("get_volume_profile", scenario.arguments)
    scenario.cold_ms = (time.perf_counter() - began) * 1000
    scenario.answer_bytes = sum(len(getattr(c, "text", "")) for c in result.content)
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        result = await client.call_tool("get_volume_profile", scenario.arguments)
        samples.append(time.perf_counter() - began)
        assert not result.is_error
    scenario.warm_ms = _percentiles(samples)


async def run(trades: int, rounds: int) -> Report:
    report = Report(machine(), trades, rounds)
    now = int(time.time() * 1000)
    end = now - now % DAY_MS  # the last closed UTC day
    start = end - DAY_MS
    day = {"instruments": [INSTRUMENT.key], "start": iso(start), "end": iso(end)}
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-mcp-") as tmp:
        storage = await _storage(Path(tmp), {}, "NORMAL")
        try:
            await _ingest(f"127.0.0.1:{storage.port}", _requests(trades, start))
            profile = await _volume_profile(storage.port)
            try:
                metrics_port = free_port()
                bridge, url = await _bridge(profile.port, token, metrics_port)
                try:
                    transport = StreamableHttpTransport(url, headers={"Authorization": f"Bearer {token}"})
                    async with Client(transport) as client:
                        for scenario in (
                            Scenario("day, levels and totals", day),
                            Scenario("day, with 200 rows", {**day, "include_rows": True, "max_rows": 200}),
                        ):
                            await _time_calls(client, scenario, rounds)
                            report.scenarios.append(scenario)
                    report.bridge_mean_ms = await _bridge_mean_ms(metrics_port)
                    report.grpc_ms, report.rows = await _grpc(profile.port, start, end, rounds)
                finally:
                    await bridge.stop()
            finally:
                await profile.stop()
        finally:
            await storage.stop()
    return report


async def _bridge_mean_ms(metrics_port: int) -> float:
    """Mean of marketdata_mcp_tool_call_duration_seconds for get_volume_profile, from /metrics."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
    ):
        text = await response.text()
    values = {}
    for line in text.splitlines():
        for stat in ("sum", "count"):
            prefix = f'marketdata_mcp_tool_call_duration_seconds_{stat}{{tool="get_volume_profile"}} '
            if line.startswith(prefix):
                values[stat] = float(line[len(prefix) :])
    return values["sum"] / values["count"] * 1000 if values.get("count") else 0.0


async def _grpc(port: int, start: int, end: int, rounds: int) -> tuple[dict[str, float], int]:
    async with create_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.VolumeProfileServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.GetVolumeProfileRequest(
            instruments=[INSTRUMENT.to_proto()], range=pb.ProfileRange(start_time_ms=start, end_time_ms=end)
        )
        rows = len((await stub.GetVolumeProfile(request, timeout=60)).profile.rows)
        samples = []
        for _ in range(rounds):
            began = time.perf_counter()
            await stub.GetVolumeProfile(request, timeout=60)
            samples.append(time.perf_counter() - began)
    return _percentiles(samples), rows


def table(report: Report) -> str:
    lines = [
        f"MCP get_volume_profile over streamable HTTP, one UTC day of {report.trades} trades "
        f"({report.rows} rows), {report.rounds} warm calls",
        f"{'scenario':<26} {'cold ms':>8} {'p50':>7} {'p95':>7} {'p99':>7} {'answer B':>9}",
    ]
    for s in report.scenarios:
        w = s.warm_ms
        lines.append(
            f"{s.name:<26} {s.cold_ms:>8.1f} {w['p50']:>7.1f} {w['p95']:>7.1f} {w['p99']:>7.1f} {s.answer_bytes:>9}"
        )
    g = report.grpc_ms
    lines.append(f"{'same, gRPC direct':<26} {'':>8} {g['p50']:>7.1f} {g['p95']:>7.1f} {g['p99']:>7.1f}")
    lines.append(
        f"bridge, server side (tool call in -> answer out, mean over all calls): {report.bridge_mean_ms:.1f} ms"
    )
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)


def main(trades: int, rounds: int) -> Report:
    return asyncio.run(run(trades, rounds))
