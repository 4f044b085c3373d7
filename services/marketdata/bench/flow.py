"""`marketdata bench flow`: latency from a trade leaving the replay exchange to the StreamOrderFlow
update that includes it, at a steady offered rate (default 10k trades/s on one instrument).

The replay exchange stamps each trade when its frame is written (`sent_ns`); the collector, storage and
the order-flow service each run in their own process; a subscriber follows StreamOrderFlow (1m bars)
and, for every update, takes the trades it newly includes from `last_trade_ids` (the replay's ids grow
in send order) and records receipt time - send time for each. A second subscriber follows the
collector's StreamTrades directly, so the order-flow service's own share shows apart from the
collector's (update receipt - direct receipt of the update's newest trade). The machine's load average
is printed: on a shared machine it decides the tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from marketdata.bench.collector import _percentile, _stack, machine
from marketdata.bench.processes import Service, cpu_seconds, free_port, start_service
from marketdata.bench.storage import _storage
from marketdata.core.analytics.orderflow import Minute
from marketdata.core.bar_sources import LiveTrade
from marketdata.core.composite import CompositeResolver
from marketdata.core.config import load_settings
from marketdata.core.garbage import settle_garbage_collector
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.order_flow.data import FlowData, MinuteCache
from marketdata.order_flow.query import parse_query
from marketdata.order_flow.stream import FlowLiveTrades, Producer
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import order_flow_service_pb2 as pb
from marketdata.v1 import order_flow_service_pb2_grpc as pb_grpc

INSTRUMENT = InstrumentId.parse("binance-futures:BTCUSDT")
WARMUP_S = 2.0
FOLD_BATCH = 10  # trades per batch in the in-process figure (the replay's frames here)


class _NoHistory(FlowData):
    """A producer's data source with nothing stored: the in-process figure measures folding only."""

    def __init__(self) -> None:
        self.live = None
        self.cache = MinuteCache(0, 0)

    def live_from(self, instrument: InstrumentId, now: int) -> int | None:
        return None

    async def stored(self, *args: Any, **kwargs: Any) -> list[Minute]:
        return []


async def fold_cost(batches: int = 5000) -> float:
    """CPU microseconds per batch of FOLD_BATCH trades: Producer._on_batch on a random walk (fold,
    imbalance refresh, CVD, update message, publish to the buffer), no network; the trades come parsed,
    as the live minutes hand them over (their parsing is `bench profile`'s live cost)."""
    settings = load_settings({"MARKETDATA_INSTRUMENTS": INSTRUMENT.key})
    request = pb.StreamOrderFlowRequest(instruments=[INSTRUMENT.to_proto()], timeframe="1h")
    now = int(time.time() * 1000)
    q = parse_query(request, settings, now, [INSTRUMENT], [], {INSTRUMENT: "0.10"}, stream=True)
    live = FlowLiveTrades.__new__(FlowLiveTrades)
    live.listeners = []
    producer = Producer(q, _NoHistory(), live, CompositeResolver(None), 10_000, lambda: None)
    await producer.start()
    rng = random.Random(1)
    price, ident = 500_000, 0
    frames: list[tuple[list[LiveTrade], list[str]]] = []
    at = max(now, q.start)
    for _ in range(batches):
        trades: list[LiveTrade] = []
        ids: list[str] = []
        for _ in range(FOLD_BATCH):  # as the live minutes hand a batch's new trades to the producer
            ident += 1
            price += rng.choice((-1, 0, 1))
            trades.append(
                (at, f"{price / 10:.1f}", rng.choice(("0.001", "0.01", "0.5", "2")), rng.random() < 0.5)
            )
            ids.append(str(ident))
        frames.append((trades, ids))
    began = time.process_time()
    for trades, ids in frames:
        producer._on_batch(INSTRUMENT, trades, ids)
    spent = time.process_time() - began
    producer.stop()
    return round(spent / batches * 1e6, 1)


@dataclass
class Report:
    machine: dict[str, Any]
    rate: float
    seconds: float
    trades: int = 0
    updates: int = 0
    trades_per_update: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    # the order-flow service's own share: update receipt - a direct StreamTrades subscriber's receipt
    # of the same newest trade
    service_p50_ms: float = 0.0
    service_p99_ms: float = 0.0
    order_flow_cpu_pct: float = 0.0
    load_average: float = 0.0
    # in-process CPU time of folding one batch into the open bar and building its update
    fold_us_per_batch: float = 0.0
    fold_batch_trades: int = FOLD_BATCH


async def analytics_service(
    name: str, storage_port: int, collector_addr: str, replay_port: int, instrument: InstrumentId = INSTRUMENT
) -> Service:
    """`marketdata serve <name>` (order-flow or volume-profile) reading storage and the collector's
    live trades of `instrument`, its tick size from the replay exchange's metadata."""
    port = free_port()
    prefix = "MARKETDATA_" + name.upper().replace("-", "_")
    env = {
        f"{prefix}_PORT": str(port),
        f"{prefix}_METRICS_PORT": "0",
        "MARKETDATA_STORAGE_ADDR": f"127.0.0.1:{storage_port}",
        "MARKETDATA_COLLECTOR_ADDR": collector_addr,
        "MARKETDATA_INSTRUMENTS": instrument.key,
        # as the collector here: no books (the book rule's cost belongs to `bench book`)
        "MARKETDATA_BOOK_INSTRUMENTS": "none",
        f"MARKETDATA_{instrument.market.value.upper().replace('-', '_')}_REST_URL": f"http://127.0.0.1:{replay_port}",
        "MARKETDATA_LOG_LEVEL": "WARNING",
    }
    return await start_service(name, ["serve", name], env, port)


async def sent_times(port: int, instrument: InstrumentId = INSTRUMENT) -> tuple[dict[str, int], list[int]]:
    """Send order index by trade id, and send times by index (0: not sent), of the trades the replay
    exchange still holds (its last --history-size per instrument)."""
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/_replay/trades"
        async with session.get(url, params={"instrument": instrument.key}) as response:
            body = await response.json()
    index: dict[str, int] = {}
    times: list[int] = []
    for row in body["trades"]:
        index[str(row["id"])] = len(times)
        times.append(int(row.get("sent_ns") or 0))
    return index, times


def covered_trades(received: list[tuple[int, str]], index: dict[str, int]) -> Iterator[tuple[int, range]]:
    """For each StreamOrderFlow update (receipt ns, its newest trade id), in order: its receipt time
    and the send indexes of the trades it newly includes. The replay's ids grow in send order; the
    first update whose newest trade is known only sets the baseline (what it covers is unknown)."""
    previous: int | None = None
    for at_ns, last_id in received:
        newest = index.get(last_id)
        if newest is None:
            continue
        if previous is not None and newest > previous:
            yield at_ns, range(previous + 1, newest + 1)
        if previous is None or newest > previous:
            previous = newest


async def run(rate: float, seconds: float) -> Report:
    report = Report(machine(), rate, seconds)
    total = int(rate * (seconds + WARMUP_S + 3))
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-flow-") as tmp:
        storage = await _storage(Path(tmp), {}, "NORMAL")
        exchange, collector, collector_addr = await _stack([INSTRUMENT], rate, 10, max_trades=total)
        flow = await analytics_service("order-flow", storage.port, collector_addr, exchange.port)
        received: list[tuple[int, str]] = []  # (receipt ns, newest trade id included)
        direct: dict[str, int] = {}  # trade id -> receipt by a direct collector subscriber
        try:
            async with (
                create_channel(f"127.0.0.1:{flow.port}") as channel,
                create_channel(collector_addr) as collector_channel,
            ):
                trades_stub = collector_grpc.CollectorServiceStub(collector_channel)  # type: ignore[no-untyped-call]
                trades_call = trades_stub.StreamTrades(
                    collector_pb2.StreamTradesRequest(instruments=[INSTRUMENT.to_proto()])
                )

                async def follow_collector() -> None:
                    async for response in trades_call:
                        at = time.time_ns()
                        for trade in response.batch.trades:
                            direct[trade.trade_id] = at

                follower = asyncio.create_task(follow_collector())
                stub = pb_grpc.OrderFlowServiceStub(channel)  # type: ignore[no-untyped-call]
                stream = stub.StreamOrderFlow(
                    pb.StreamOrderFlowRequest(instruments=[INSTRUMENT.to_proto()], timeframe="1m")
                )
                responses = aiter(stream)
                settle_garbage_collector()  # as in bench e2e: the measuring process does not stop to collect
                started = time.monotonic()
                cpu_started = 0.0
                measuring_from = started + WARMUP_S
                while time.monotonic() - started < seconds + WARMUP_S:
                    try:
                        update = await asyncio.wait_for(anext(responses), timeout=3.0)
                    except (TimeoutError, StopAsyncIteration):
                        break
                    now_ns = time.time_ns()
                    if not cpu_started and time.monotonic() >= measuring_from:
                        cpu_started = cpu_seconds(flow.pid)
                        measuring_from = time.monotonic()
                    last = update.last_trade_ids.get(INSTRUMENT.key)
                    if last:
                        received.append((now_ns, last))
                elapsed = max(time.monotonic() - measuring_from, 1e-9)
                report.order_flow_cpu_pct = round(100 * (cpu_seconds(flow.pid) - cpu_started) / elapsed, 1)
                stream.cancel()
                trades_call.cancel()
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await follower
            index, sent = await sent_times(exchange.port)
        finally:
            await flow.stop()
            await collector.stop()
            await exchange.stop()
            await storage.stop()
    latencies: list[float] = []
    warm_ns = received[0][0] + int(WARMUP_S * 1e9) if received else 0
    updates = 0
    for at_ns, covered in covered_trades(received, index):
        if at_ns >= warm_ns:
            updates += 1
            latencies += [(at_ns - sent[i]) / 1e6 for i in covered if sent[i]]
    if not latencies:
        raise RuntimeError("no update could be matched with the trades' send times")
    shares = [(at - direct[i]) / 1e6 for at, i in received[1:] if at >= warm_ns and i in direct]
    if shares:
        report.service_p50_ms = round(statistics.median(shares), 3)
        report.service_p99_ms = round(_percentile(shares, 99), 3)
    report.load_average = round(os.getloadavg()[0], 1)
    report.trades = len(latencies)
    report.updates = updates
    report.trades_per_update = round(len(latencies) / max(updates, 1), 1)
    report.p50_ms = round(statistics.median(latencies), 3)
    report.p99_ms = round(_percentile(latencies, 99), 3)
    report.max_ms = round(max(latencies), 3)
    return report


def table(report: Report) -> str:
    return "\n".join(
        [
            "order flow (replay exchange -> collector -> order-flow StreamOrderFlow, each its own process)",
            f"{'rate/s':>8} {'trades':>8} {'updates':>8} {'trades/upd':>10} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8} {'service p50/p99 ms':>19} {'cpu %':>6} {'load':>5}",
            f"{report.rate:>8.0f} {report.trades:>8} {report.updates:>8} {report.trades_per_update:>10.1f} "
            f"{report.p50_ms:>8.3f} {report.p99_ms:>8.3f} {report.max_ms:>8.3f} "
            f"{f'{report.service_p50_ms:.3f} / {report.service_p99_ms:.3f}':>19} "
            f"{report.order_flow_cpu_pct:>6.1f} {report.load_average:>5.1f}",
            f"in process: {report.fold_us_per_batch:.1f} us CPU per batch of {report.fold_batch_trades} trades "
            "folded into the open bar (update built and published)",
        ]
    )


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)


def main(rate: float, seconds: float) -> Report:
    report = asyncio.run(run(rate, seconds))
    report.fold_us_per_batch = asyncio.run(fold_cost())
    return report
