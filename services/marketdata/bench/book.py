"""`marketdata bench book`: order-book level updates applied per second, and GetOrderBook latency.

1. Apply throughput, in this process: realistic depth frames (the replay exchange's synthetic book,
   Binance spot and USD-M diff events, Bybit deltas) are prepared first, then timed through the real
   parser and sync code (`parse + apply`), and as pre-parsed updates (`apply only`). The figure is
   level updates applied per second on one core.
2. GetOrderBook latency over loopback: the replay exchange and `marketdata serve collector` run as
   their own processes, the books updating live (`--book-churn` level changes per second per book),
   and this process calls GetOrderBook(depth 20) one call after another; p50/p99/max in ms.

Figures are printed and written as JSON; nothing here is a pass/fail test.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import orjson

from marketdata.bench.collector import machine
from marketdata.bench.processes import cpu_seconds, free_port, start_service
from marketdata.collector.binance import BinanceFrameParser
from marketdata.collector.books.snapshots import DepthSnapshot
from marketdata.collector.books.sync import SYNCED, BinanceSync, BybitSync
from marketdata.collector.bybit import BybitFrameParser
from marketdata.collector.frames import BookUpdate, FrameKind
from marketdata.core.config import load_settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange.books import BinanceDepthStream, BybitBookTopic, SyntheticBook
from marketdata.replay_exchange.specs import spec_for
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc


@dataclass
class Apply:
    scenario: str
    events: int
    level_updates: int
    parse_and_apply_s: float
    level_updates_per_s: float  # parse + apply
    apply_only_level_updates_per_s: float
    events_per_s: float


@dataclass
class Latency:
    scenario: str
    calls: int
    depth: int
    book_changes_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    calls_per_s: float
    collector_cpu_pct: float


@dataclass
class Report:
    machine: dict[str, Any]
    apply: list[Apply] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)


def _binance_frames(market: MarketKey, events: int, changes: int) -> tuple[DepthSnapshot, list[str]]:
    """A snapshot and `events` combined-stream diff frames of about `changes` level changes each."""
    instrument = InstrumentId(market, "BTCUSDT")
    spec = spec_for(instrument)
    book = SyntheticBook(spec, 1, int(spec.start_price / spec.tick), 0.0)
    bids, asks = book.top(1000)
    snapshot = DepthSnapshot(book.update_id, bids, asks, 0, 1, 1000)
    stream = BinanceDepthStream("btcusdt@depth@100ms", book, market, 0.1, 0.0)
    frames = []
    head = b'{"stream":"btcusdt@depth@100ms","data":'
    for n in range(events):
        book.churn(changes)
        if n % 4 == 0:
            best_bid, best_ask = book.best()
            if best_bid is not None and best_ask is not None:
                book.on_trade(best_ask if n % 8 == 0 else best_bid, n % 8 == 0)
        payload = stream.event(float(n))
        if payload is not None:
            frames.append((head + orjson.dumps(payload) + b"}").decode())
    return snapshot, frames


def _bybit_frames(market: MarketKey, events: int, changes: int) -> list[str]:
    instrument = InstrumentId(market, "BTCUSDT")
    spec = spec_for(instrument)
    book = SyntheticBook(spec, 1, int(spec.start_price / spec.tick), 0.0)
    topic = BybitBookTopic("orderbook.200.BTCUSDT", 200, book, market, 0.0)
    frames = [topic.snapshot_frame().decode()]
    for n in range(events):
        book.churn(changes)
        frame = topic.push(float(n))
        if frame is not None:
            frames.append(frame.decode())
    return frames


def apply_binance(market: MarketKey, events: int, changes: int) -> Apply:
    snapshot, frames = _binance_frames(market, events, changes)
    instrument = InstrumentId(market, "BTCUSDT")
    settings = load_settings({"MARKETDATA_INSTRUMENTS": instrument.key})
    parser = BinanceFrameParser(market, {"BTCUSDT": instrument}, {"BTCUSDT": instrument})

    async def no_fetch(_: InstrumentId) -> DepthSnapshot:
        raise AssertionError

    def fresh() -> BinanceSync:
        sync = BinanceSync(instrument, settings, lambda _: None, no_fetch)
        sync.on_snapshot(snapshot)
        return sync

    sync = fresh()
    started = time.perf_counter()
    for text in frames:
        frame = parser.parse(text, 1)
        sync.on_update(frame.book)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert sync.state == SYNCED and sync.stats.total_resyncs == 0, sync.stats
    updates = sync.stats.updates
    parsed: list[BookUpdate] = [parser.parse(text, 1).book for text in frames]  # type: ignore[misc]
    sync = fresh()
    started = time.perf_counter()
    for update in parsed:
        sync.on_update(update)
    apply_only = time.perf_counter() - started
    return Apply(
        scenario=f"{market.value} diff depth ({changes} changes/event)",
        events=len(frames),
        level_updates=updates,
        parse_and_apply_s=round(elapsed, 3),
        level_updates_per_s=round(updates / elapsed),
        apply_only_level_updates_per_s=round(sync.stats.updates / apply_only),
        events_per_s=round(len(frames) / elapsed),
    )


def apply_bybit(market: MarketKey, events: int, changes: int) -> Apply:
    frames = _bybit_frames(market, events, changes)
    instrument = InstrumentId(market, "BTCUSDT")
    settings = load_settings({"MARKETDATA_INSTRUMENTS": instrument.key})
    parser = BybitFrameParser(market, {"BTCUSDT": instrument}, {"BTCUSDT": instrument}, 200)

    async def no_resubscribe(_: InstrumentId) -> bool:
        raise AssertionError

    def run(updates: list[BookUpdate]) -> tuple[float, int]:
        sync = BybitSync(instrument, settings, lambda _: None, no_resubscribe)
        sync.on_update(updates[0])
        base = sync.stats.updates
        started = time.perf_counter()
        for update in updates[1:]:
            sync.on_update(update)
        assert sync.stats.total_resyncs == 0, sync.stats
        return time.perf_counter() - started, sync.stats.updates - base

    started = time.perf_counter()
    parsed = []
    for text in frames:
        frame = parser.parse(text, 1)
        assert frame.kind is FrameKind.BOOK
        parsed.append(frame.book)
    parse_s = time.perf_counter() - started
    apply_s, updates = run(parsed)  # type: ignore[arg-type]
    elapsed = parse_s + apply_s
    return Apply(
        scenario=f"{market.value} orderbook.200 deltas",
        events=len(frames),
        level_updates=updates,
        parse_and_apply_s=round(elapsed, 3),
        level_updates_per_s=round(updates / elapsed),
        apply_only_level_updates_per_s=round(updates / apply_s),
        events_per_s=round(len(frames) / elapsed),
    )


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def latency(calls: int, churn: float, depth: int = 20) -> Latency:
    key = "binance-spot:BTCUSDT"
    replay_port = free_port()
    exchange = await start_service(
        "replay-exchange",
        ["replay-exchange", "--port", str(replay_port), "--instruments", key, "--rate", "200",
         "--book-churn", str(churn)],
        {},
        replay_port,
    )  # fmt: skip
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        "MARKETDATA_INSTRUMENTS": key,
        "MARKETDATA_COLLECTOR_PORT": str(grpc_port),
        "MARKETDATA_COLLECTOR_METRICS_PORT": str(metrics_port),
        "MARKETDATA_LOG_LEVEL": "WARNING",
        "MARKETDATA_BINANCE_SPOT_WS_URL": f"ws://127.0.0.1:{replay_port}",
        "MARKETDATA_BINANCE_SPOT_REST_URL": f"http://127.0.0.1:{replay_port}",
    }
    collector = await start_service("collector", ["serve", "collector"], env, grpc_port)
    # A blocking client: nothing else runs in this process, and grpc's synchronous stub adds less
    # of its own time to each call than the asyncio one (the figure is the server's, mostly).
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
        request = collector_pb2.GetOrderBookRequest(
            instrument=InstrumentId.parse(key).to_proto(), depth=depth
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                stub.GetOrderBook(request, timeout=5)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        for _ in range(500):  # warm up
            stub.GetOrderBook(request)
        samples = []
        cpu = cpu_seconds(collector.pid)
        started = time.perf_counter()
        for _ in range(calls):
            sent = time.perf_counter()
            stub.GetOrderBook(request)
            samples.append((time.perf_counter() - sent) * 1000)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(collector.pid) - cpu
        return Latency(
            scenario=f"GetOrderBook(depth {depth}) on a live book",
            calls=calls,
            depth=depth,
            book_changes_per_s=churn,
            p50_ms=round(_percentile(samples, 50), 3),
            p99_ms=round(_percentile(samples, 99), 3),
            max_ms=round(max(samples), 3),
            mean_ms=round(statistics.fmean(samples), 3),
            calls_per_s=round(calls / elapsed),
            collector_cpu_pct=round(100 * cpu / elapsed, 1),
        )
    finally:
        channel.close()
        await collector.stop()
        await exchange.stop()


def main(events: int, calls: int, quick: bool) -> Report:
    report = Report(machine())
    report.apply.append(apply_binance(MarketKey.BINANCE_SPOT, events, 20))
    if not quick:
        report.apply.append(apply_binance(MarketKey.BINANCE_FUTURES, events, 20))
        report.apply.append(apply_binance(MarketKey.BINANCE_SPOT, events // 4, 200))
        report.apply.append(apply_bybit(MarketKey.BYBIT_LINEAR, events, 20))
    report.latency.append(asyncio.run(latency(calls, churn=2000)))
    if not quick:
        report.latency.append(asyncio.run(latency(calls, churn=20000)))
    return report


def table(report: Report) -> str:
    lines = [
        f"machine: {report.machine['cpus']} cpus, Python {report.machine['python']}",
        "",
        f"{'apply scenario':<48} {'events':>8} {'levels':>9} {'levels/s parse+apply':>21} {'levels/s apply':>15}",
    ]
    for a in report.apply:
        lines.append(
            f"{a.scenario:<48} {a.events:>8} {a.level_updates:>9} "
            f"{a.level_updates_per_s:>21,} {a.apply_only_level_updates_per_s:>15,}"
        )
    lines += [
        "",
        f"{'latency scenario':<40} {'book changes/s':>14} {'calls':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'calls/s':>8} {'collector cpu':>13}",
    ]
    for lat in report.latency:
        lines.append(
            f"{lat.scenario:<40} {lat.book_changes_per_s:>14,.0f} {lat.calls:>6} {lat.p50_ms:>7.3f} "
            f"{lat.p99_ms:>7.3f} {lat.max_ms:>7.3f} {lat.calls_per_s:>8} {lat.collector_cpu_pct:>12}%"
        )
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)
