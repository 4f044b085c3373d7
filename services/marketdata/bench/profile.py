"""`marketdata bench profile`: GetVolumeProfile latency over real storage, and the live per-trade cost.

1. 24 h: `--trades` trades of one instrument (a random walk on a 0.10 tick) over one closed UTC day
   stored through the embedded storage (its own process); the volume-profile service (its own process,
   no collector) answers GetVolumeProfile for the whole day: the first (cold) call, then warm calls
   (closed UTC-hour chunks cached in process), latency percentiles as a client sees them.
2. 30 days: `--month-trades` trades over 30 closed days, the same measure.
3. Live: the cost per trade of taking trades from the collector's stream into the live minute
   (LiveTrades.on_batch, batches of 500) and of folding that minute into a profile (CPU time, best of 5).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from marketdata.bench.collector import machine
from marketdata.bench.processes import Service, cpu_seconds, free_port, start_service
from marketdata.bench.storage import DAY_MS, INSTRUMENT, _ingest, _percentiles, _requests, _storage
from marketdata.core.analytics.profile import Grid, Histogram, VolumeUnit
from marketdata.core.grpc_client import create_channel
from marketdata.v1 import common_pb2
from marketdata.v1 import volume_profile_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2_grpc as pb_grpc


@dataclass
class Scenario:
    name: str
    trades: int
    days: int
    ingest_seconds: float = 0.0
    rows: int = 0
    cold_ms: float = 0.0
    # CPU the storage and volume-profile processes spent on the cold call: what the call costs, apart
    # from waiting for a core on a loaded machine
    cold_cpu_ms: float = 0.0
    warm_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    machine: dict[str, Any]
    scenarios: list[Scenario] = field(default_factory=list)
    live_us_per_trade: float = 0.0
    live_fold_us_per_trade: float = 0.0


async def _volume_profile(storage_port: int) -> Service:
    port = free_port()
    env = {
        "MARKETDATA_VOLUME_PROFILE_PORT": str(port),
        "MARKETDATA_VOLUME_PROFILE_METRICS_PORT": "0",
        "MARKETDATA_STORAGE_ADDR": f"127.0.0.1:{storage_port}",
        "MARKETDATA_COLLECTOR_ADDR": "",
        "MARKETDATA_INSTRUMENTS": INSTRUMENT.key,
        # no exchange metadata offline: the tick comes from the stored bars' row size
        "MARKETDATA_BINANCE_FUTURES_REST_URL": "http://127.0.0.1:9",
        "MARKETDATA_LOG_LEVEL": "WARNING",
    }
    return await start_service("volume-profile", ["serve", "volume-profile"], env, port)


async def _scenario(scenario: Scenario, rounds: int) -> None:
    now = int(time.time() * 1000)
    end = now - now % DAY_MS - DAY_MS  # closed days
    start = end - scenario.days * DAY_MS
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-profile-") as tmp:
        storage = await _storage(Path(tmp), {"MARKETDATA_STORAGE_FOOTPRINT_MAX_RANGE": "31d"}, "NORMAL")
        try:
            requests = []
            per_day = scenario.trades // scenario.days
            for day in range(scenario.days):
                requests += _requests(per_day, start + day * DAY_MS, seed=day + 1)
            scenario.ingest_seconds = await _ingest(f"127.0.0.1:{storage.port}", _renumber(requests))
            service = await _volume_profile(storage.port)
            try:
                async with create_channel(f"127.0.0.1:{service.port}") as channel:
                    stub = pb_grpc.VolumeProfileServiceStub(channel)  # type: ignore[no-untyped-call]
                    request = pb.GetVolumeProfileRequest(
                        instruments=[INSTRUMENT.to_proto()],
                        range=pb.ProfileRange(start_time_ms=start, end_time_ms=end),
                    )
                    cpu_before = cpu_seconds(storage.pid) + cpu_seconds(service.pid)
                    began = time.perf_counter()
                    response = await stub.GetVolumeProfile(request, timeout=600)
                    scenario.cold_ms = (time.perf_counter() - began) * 1000
                    cpu_after = cpu_seconds(storage.pid) + cpu_seconds(service.pid)
                    scenario.cold_cpu_ms = (cpu_after - cpu_before) * 1000
                    scenario.rows = len(response.profile.rows)
                    samples = []
                    for _ in range(rounds):
                        began = time.perf_counter()
                        await stub.GetVolumeProfile(request, timeout=600)
                        samples.append(time.perf_counter() - began)
                    scenario.warm_ms = _percentiles(samples)
            finally:
                await service.stop()
        finally:
            await storage.stop()


def _renumber(requests: list[bytes]) -> list[bytes]:
    """Unique trade ids and batch ids across days (each day's requests start numbering afresh)."""
    from marketdata.v1 import storage_service_pb2 as storage_pb2

    out = []
    for n, payload in enumerate(requests):
        request = storage_pb2.WriteTradesRequest.FromString(payload)
        request.batch_id = n + 1
        for k, trade in enumerate(request.batch.trades):
            trade.trade_id = f"{n}-{k}"
        out.append(request.SerializeToString())
    return out


def _live(trades: int = 200_000, repeats: int = 5) -> tuple[float, float]:
    """us/trade to take trades into the live minutes and to fold them into a profile: the best of
    `repeats` runs, in this process's CPU time (a loaded machine inflates wall time, not this cost)."""
    from marketdata.core.bar_sources import LiveTrades, _LiveBook

    now = int(time.time() * 1000)
    batches = []
    for first in range(0, trades, 500):
        batches.append(
            common_pb2.TradeBatch(
                instrument=INSTRUMENT.to_proto(),
                trades=[
                    common_pb2.Trade(
                        trade_id=str(first + k),
                        price=f"{65000 + (first + k) % 50}.{(first + k) % 10}0",
                        size="0.012",
                        side=common_pb2.SIDE_BUY if k % 2 else common_pb2.SIDE_SELL,
                        exchange_time_ms=now,
                    )
                    for k in range(500)
                ],
            )
        )
    take = fold = float("inf")
    for _ in range(repeats):
        live = LiveTrades.__new__(LiveTrades)
        live._instruments = [INSTRUMENT]
        live._books = {INSTRUMENT: _LiveBook()}
        live.connected = True
        live.trades_seen = 0
        began = time.process_time()
        for batch in batches:
            live.on_batch(batch)
        take = min(take, (time.process_time() - began) / trades * 1e6)
        bars = live.bars(INSTRUMENT, 0, now + 60_000, "0.10")
        began = time.process_time()
        histogram = Histogram(Grid.of("0.10"))
        for bar in bars:
            bar.add_to(histogram, VolumeUnit.BASE)
        fold = min(fold, (time.process_time() - began) / trades * 1e6)
    return take, fold


async def run(trades: int, month_trades: int, rounds: int) -> Report:
    report = Report(machine())
    report.live_us_per_trade, report.live_fold_us_per_trade = _live()
    for scenario in (Scenario("24h", trades, 1), Scenario("30d", month_trades, 30)):
        if scenario.trades:
            await _scenario(scenario, rounds)
            report.scenarios.append(scenario)
    return report


def table(report: Report) -> str:
    lines = [
        "volume profile (GetVolumeProfile over loopback, storage and volume-profile in their own processes)",
        f"{'range':<6} {'trades':>10} {'rows':>7} {'cold ms':>9} {'cold cpu':>9} {'warm p50':>9} {'p95':>8} "
        f"{'p99':>8}",
    ]
    for s in report.scenarios:
        w = s.warm_ms
        lines.append(
            f"{s.name:<6} {s.trades:>10} {s.rows:>7} {s.cold_ms:>9.1f} {s.cold_cpu_ms:>9.0f} {w.get('p50', 0):>9.1f} "
            f"{w.get('p95', 0):>8.1f} {w.get('p99', 0):>8.1f}"
        )
    lines.append(
        f"live: {report.live_us_per_trade:.2f} us/trade taken from the stream, "
        f"{report.live_fold_us_per_trade:.2f} us/trade folded into a profile"
    )
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)


def main(trades: int, month_trades: int, rounds: int) -> Report:
    return asyncio.run(run(trades, month_trades, rounds))
