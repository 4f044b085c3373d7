"""`marketdata bench profile` (alias `analytics`): GetVolumeProfile and GetOrderFlow latency over real
storage, and the live per-trade cost of both services.

Storage (embedded SQLite) runs in its own process and holds either one busy closed UTC day
(`--trades`, a random walk on a 0.10 tick) or 30 closed days (`--month-trades`), written through
WriteTrades. Over that stored data each request shape is timed against a fresh service process of its
own (volume-profile or order-flow, no collector), so its first call is cold (nothing cached in the
service) and no other shape warmed it; then `--rounds` warm calls give p50/p95/p99 as a client on
loopback sees them:

- 24 h store: GetVolumeProfile for the day's last hour and for the day; GetOrderFlow 1 h of 1m bars,
  24 h of 5m bars, and 24 h of 5m bars with footprint rows;
- 30 d store: GetVolumeProfile for the 30 days; GetOrderFlow 30 days of 1h and of 4h bars.

Live (in process, CPU time, no network): the volume profile's cost per trade of taking trades from the
collector's stream into the live minute (LiveTrades.on_batch, batches of 500) and of folding that
minute into a profile (best of 5); the order flow's cost per trade of folding a batch into the open bar
and publishing its update (bench/flow.py's fold_cost).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from marketdata.bench.collector import machine
from marketdata.bench.processes import Service, cpu_seconds, free_port, start_service
from marketdata.bench.storage import DAY_MS, INSTRUMENT, _ingest, _percentiles, _requests, _storage
from marketdata.core.analytics.profile import Grid, Histogram, VolumeUnit
from marketdata.core.grpc_client import create_channel
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as flow_pb
from marketdata.v1 import order_flow_service_pb2_grpc as flow_grpc
from marketdata.v1 import volume_profile_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2_grpc as pb_grpc

HOUR_MS = 3_600_000
VOLUME_PROFILE = "volume-profile"
ORDER_FLOW = "order-flow"


@dataclass
class Store:
    """What storage held while a group of calls was timed."""

    name: str
    trades: int
    days: int
    ingest_seconds: float = 0.0


@dataclass
class Call:
    """One request shape, timed against a fresh service process."""

    service: str  # VOLUME_PROFILE or ORDER_FLOW
    range: str  # "1h", "24h", "30d": the stored data's last hour, whole day, whole 30 days
    timeframe: str = ""  # order flow: the bars' timeframe
    footprint_rows: bool = False  # order flow: include_rows
    bars: int = 0  # order-flow bars, or profile rows
    response_kb: float = 0.0
    cold_ms: float = 0.0
    # CPU the storage and service processes spent on the cold call: what the call costs, apart from
    # waiting for a core on a loaded machine
    cold_cpu_ms: float = 0.0
    warm_ms: dict[str, float] = field(default_factory=dict)
    warm_cpu_ms: float = 0.0  # mean CPU of storage + service per warm call

    @property
    def label(self) -> str:
        if self.service == VOLUME_PROFILE:
            return f"GetVolumeProfile {self.range}"
        rows = " +rows" if self.footprint_rows else ""
        return f"GetOrderFlow {self.range} {self.timeframe}{rows}"


@dataclass
class Report:
    machine: dict[str, Any]
    stores: list[Store] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    live_us_per_trade: float = 0.0  # volume profile: taken from the stream
    live_fold_us_per_trade: float = 0.0  # volume profile: folded into a profile
    order_flow_live_us_per_trade: float = 0.0  # order flow: folded into the open bar, update published
    order_flow_live_batch_trades: int = 0
    load_average: list[float] = field(default_factory=list)  # 1-minute load: at the start, at the end


async def _analytics_service(kind: str, storage_port: int) -> Service:
    """`marketdata serve <kind>` (volume-profile or order-flow) reading storage, no collector."""
    prefix = "MARKETDATA_" + kind.upper().replace("-", "_")
    port = free_port()
    env = {
        f"{prefix}_PORT": str(port),
        f"{prefix}_METRICS_PORT": "0",
        "MARKETDATA_STORAGE_ADDR": f"127.0.0.1:{storage_port}",
        "MARKETDATA_COLLECTOR_ADDR": "",
        "MARKETDATA_INSTRUMENTS": INSTRUMENT.key,
        # no exchange metadata offline: the tick comes from the stored bars' row size
        "MARKETDATA_BINANCE_FUTURES_REST_URL": "http://127.0.0.1:9",
        "MARKETDATA_LOG_LEVEL": "WARNING",
    }
    return await start_service(kind, ["serve", kind], env, port)


async def _volume_profile(storage_port: int) -> Service:
    return await _analytics_service(VOLUME_PROFILE, storage_port)


def _request_for(call: Call, start: int, end: int) -> Callable[[Any], Awaitable[Any]]:
    """A function sending `call`'s request over a channel and returning the response."""
    if call.service == VOLUME_PROFILE:
        profile_request = pb.GetVolumeProfileRequest(
            instruments=[INSTRUMENT.to_proto()], range=pb.ProfileRange(start_time_ms=start, end_time_ms=end)
        )

        async def volume_profile(channel: Any) -> Any:
            stub = pb_grpc.VolumeProfileServiceStub(channel)  # type: ignore[no-untyped-call]
            return await stub.GetVolumeProfile(profile_request, timeout=600)

        return volume_profile
    flow_request = flow_pb.GetOrderFlowRequest(
        instruments=[INSTRUMENT.to_proto()],
        timeframe=call.timeframe,
        start_time_ms=start,
        end_time_ms=end,
        parameters=flow_pb.OrderFlowParameters(include_rows=call.footprint_rows),
    )

    async def order_flow(channel: Any) -> Any:
        stub = flow_grpc.OrderFlowServiceStub(channel)  # type: ignore[no-untyped-call]
        return await stub.GetOrderFlow(flow_request, timeout=600)

    return order_flow


async def _time_call(call: Call, storage: Service, start: int, end: int, rounds: int) -> None:
    send = _request_for(call, start, end)
    service = await _analytics_service(call.service, storage.port)
    try:
        async with create_channel(f"127.0.0.1:{service.port}") as channel:
            await channel.channel_ready()

            def cpu() -> float:
                return cpu_seconds(storage.pid) + cpu_seconds(service.pid)

            cpu_before = cpu()
            began = time.perf_counter()
            response = await send(channel)
            call.cold_ms = (time.perf_counter() - began) * 1000
            call.cold_cpu_ms = (cpu() - cpu_before) * 1000
            if call.service == VOLUME_PROFILE:
                call.bars = len(response.profile.rows)
            else:
                call.bars = len(response.bars)
            call.response_kb = response.ByteSize() / 1000
            samples = []
            cpu_before = cpu()
            for _ in range(rounds):
                began = time.perf_counter()
                await send(channel)
                samples.append(time.perf_counter() - began)
            call.warm_cpu_ms = (cpu() - cpu_before) * 1000 / max(rounds, 1)
            call.warm_ms = _percentiles(samples)
    finally:
        await service.stop()


async def _store(store: Store, calls: list[Call], rounds: int) -> None:
    """Write `store`'s trades through a fresh storage process, then time each call over its data."""
    now = int(time.time() * 1000)
    end = now - now % DAY_MS - DAY_MS  # closed days
    start = end - store.days * DAY_MS
    ranges = {"1h": (end - HOUR_MS, end), "24h": (end - DAY_MS, end), "30d": (end - 30 * DAY_MS, end)}
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-profile-") as tmp:
        storage = await _storage(Path(tmp), {"MARKETDATA_STORAGE_FOOTPRINT_MAX_RANGE": "31d"}, "NORMAL")
        try:
            requests = []
            per_day = store.trades // store.days
            for day in range(store.days):
                requests += _requests(per_day, start + day * DAY_MS, seed=day + 1)
            store.ingest_seconds = await _ingest(f"127.0.0.1:{storage.port}", _renumber(requests))
            del requests
            for call in calls:
                await _time_call(call, storage, *ranges[call.range], rounds)
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


async def _order_flow_live(repeats: int = 3) -> tuple[float, int]:
    """(us CPU per trade, trades per batch) of the order-flow stream's fold: the best of `repeats`."""
    from marketdata.bench.flow import FOLD_BATCH, fold_cost

    best = min([await fold_cost() for _ in range(repeats)])
    return best / FOLD_BATCH, FOLD_BATCH


def plan(trades: int, month_trades: int) -> list[tuple[Store, list[Call]]]:
    out: list[tuple[Store, list[Call]]] = []
    if trades:
        out.append(
            (
                Store("24h", trades, 1),
                [
                    Call(VOLUME_PROFILE, "1h"),
                    Call(VOLUME_PROFILE, "24h"),
                    Call(ORDER_FLOW, "1h", "1m"),
                    Call(ORDER_FLOW, "24h", "5m"),
                    Call(ORDER_FLOW, "24h", "5m", footprint_rows=True),
                ],
            )
        )
    if month_trades:
        out.append(
            (
                Store("30d", month_trades, 30),
                [Call(VOLUME_PROFILE, "30d"), Call(ORDER_FLOW, "30d", "1h"), Call(ORDER_FLOW, "30d", "4h")],
            )
        )
    return out


async def run(trades: int, month_trades: int, rounds: int) -> Report:
    report = Report(machine(), load_average=[os.getloadavg()[0]])
    report.live_us_per_trade, report.live_fold_us_per_trade = _live()
    report.order_flow_live_us_per_trade, report.order_flow_live_batch_trades = await _order_flow_live()
    for store, calls in plan(trades, month_trades):
        await _store(store, calls, rounds)
        report.stores.append(store)
        report.calls += calls
    report.load_average.append(os.getloadavg()[0])
    return report


def table(report: Report) -> str:
    stores = ", ".join(
        f"{s.name}: {s.trades:,} trades (ingest {s.ingest_seconds:.1f} s)" for s in report.stores
    )
    lines = [
        "analytics over loopback (storage and the service each in its own process; a fresh service per row)",
        f"stored: {stores}",
        f"{'request':<30} {'bars':>6} {'KB':>8} {'cold ms':>9} {'cold cpu':>9} {'warm p50':>9} {'p95':>8} "
        f"{'p99':>8} {'warm cpu':>9}",
    ]
    for c in report.calls:
        w = c.warm_ms
        lines.append(
            f"{c.label:<30} {c.bars:>6} {c.response_kb:>8.1f} {c.cold_ms:>9.1f} {c.cold_cpu_ms:>9.0f} "
            f"{w.get('p50', 0):>9.1f} {w.get('p95', 0):>8.1f} {w.get('p99', 0):>8.1f} {c.warm_cpu_ms:>9.1f}"
        )
    lines += [
        "(bars: order-flow bars, or volume-profile rows; cpu: ms of storage + service CPU per call)",
        f"live volume profile: {report.live_us_per_trade:.2f} us/trade taken from the stream, "
        f"{report.live_fold_us_per_trade:.2f} us/trade folded into a profile",
        f"live order flow: {report.order_flow_live_us_per_trade:.2f} us/trade folded into the open bar and "
        f"published (batches of {report.order_flow_live_batch_trades})",
        "load average (1 min) at start / end: " + " / ".join(f"{x:.1f}" for x in report.load_average),
    ]
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    figures = asdict(report)
    for call, item in zip(report.calls, figures["calls"], strict=True):
        item["label"] = call.label
    return figures


def main(trades: int, month_trades: int, rounds: int) -> Report:
    return asyncio.run(run(trades, month_trades, rounds))
