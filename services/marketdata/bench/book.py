"""`marketdata bench book`: order-book level updates applied per second, and GetOrderBook latency.

1. Apply throughput, in this process: realistic depth frames (the replay exchange's synthetic book,
   Binance spot and USD-M diff events, Bybit deltas) are prepared first, then timed through the real
   parser and sync code (`parse + apply`), and as pre-parsed updates (`apply only`). The figure is
   level updates applied per second on one core.
   Side by side with cryptofeed: the recorded Binance sessions (shared/fixtures/recorded, real depth
   diffs and their REST snapshots) through our parse + apply and through cryptofeed 2.4's own Binance
   feed (bench/peers/cryptofeed_book.py, in the peer virtualenv), both from the raw frame text.
2. GetOrderBook latency over loopback: the replay exchange and `marketdata serve collector` run as
   their own processes, the books updating live (`--book-churn` level changes per second per book),
   and this process calls GetOrderBook(depth 20) one call after another; p50/p99/max in ms.

Figures are printed and written as JSON; nothing here is a pass/fail test.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson

from marketdata.bench.collector import machine
from marketdata.bench.peers.environment import PEER_REQUIREMENTS
from marketdata.bench.peers.recording import RECORDINGS, best_of, load_depth
from marketdata.bench.processes import cpu_seconds, free_port, start_service
from marketdata.collector.binance import BinanceFrameParser, parse_depth_snapshot
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
class PeerApply:
    """One client's parse + apply of a recorded stream: the best of a few repeats of `passes` passes."""

    scenario: str
    client: str
    level_updates: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    level_updates_per_s: float = 0.0  # over wall time
    level_updates_per_cpu_s: float = 0.0  # over the process's CPU time: steadier on a shared machine
    passes: int = 0
    error: str = ""  # why there is no figure (peer virtualenv missing, recording missing, ...)
    # symbol -> best bid and ask [price, size] after the last pass (compared between the clients)
    tops: dict[str, dict[str, Any]] = field(default_factory=dict)


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
    peers: list[PeerApply] = field(default_factory=list)
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


RECORDED = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "recorded"
PEER_SCRIPT = Path(__file__).parent / "peers" / "cryptofeed_book.py"
RECORDED_MARKETS = {"spot": MarketKey.BINANCE_SPOT, "futures": MarketKey.BINANCE_FUTURES}
SIDE_SECONDS = 2.0  # timed per client and recording, split over the repeats
SIDE_REPEATS = 3  # the best repeat counts: the machine may be busy during the others
OURS = "marketdata"
# "cryptofeed 2.4.1": the version the peer virtualenv pins
CRYPTOFEED = next(r for r in PEER_REQUIREMENTS if r.startswith("cryptofeed==")).replace("==", " ")


def _recorded_scenario(market: str) -> str:
    return f"recorded {RECORDED_MARKETS[market].value} depth"


def apply_recorded(
    market: str, recorded: Path = RECORDED, seconds: float = SIDE_SECONDS, repeats: int = SIDE_REPEATS
) -> PeerApply:
    """Our parser and BinanceSync over a recorded session's depth frames, from their raw text,
    each pass onto freshly loaded snapshots (loaded untimed, as on cryptofeed's side)."""
    scenario = _recorded_scenario(market)
    ws, http = (recorded / name for name in RECORDINGS[market])
    if not ws.exists() or not http.exists():
        return PeerApply(scenario, OURS, error=f"recording missing: {ws} / {http}")
    frames, bodies = load_depth(ws, http)
    key = RECORDED_MARKETS[market]
    instruments = {symbol: InstrumentId(key, symbol) for symbol in bodies}
    settings = load_settings({"MARKETDATA_INSTRUMENTS": ",".join(i.key for i in instruments.values())})
    snapshots = {}
    for symbol, body in bodies.items():
        last, bids, asks, time_ms = parse_depth_snapshot(orjson.loads(body))
        snapshots[instruments[symbol]] = DepthSnapshot(last, bids, asks, time_ms, 1, 1000)
    parser = BinanceFrameParser(key, instruments, instruments)

    async def no_fetch(_: InstrumentId) -> DepthSnapshot:
        raise AssertionError("the recording has a gap")

    syncs: dict[InstrumentId, BinanceSync] = {}

    def one_pass() -> tuple[float, float, int]:
        syncs.clear()
        for instrument, snapshot in snapshots.items():
            syncs[instrument] = sync = BinanceSync(instrument, settings, lambda _: None, no_fetch)
            sync.on_snapshot(snapshot)
        before = sum(sync.stats.updates for sync in syncs.values())  # the snapshots' levels
        cpu, started = time.process_time(), time.perf_counter()
        for text in frames:
            frame = parser.parse(text, 1)
            syncs[frame.instrument].on_update(frame.book)  # type: ignore[index, arg-type]
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        for sync in syncs.values():
            assert sync.state == SYNCED and sync.stats.total_resyncs == 0, sync.stats
        return wall, cpu, sum(sync.stats.updates for sync in syncs.values()) - before

    applied, wall, cpu, passes = best_of(one_pass, seconds, repeats)
    tops = {}
    for instrument, sync in syncs.items():
        assert sync.book is not None
        bids, asks = sync.book.levels()
        tops[instrument.symbol] = {
            "bid": list(bids[0]) if bids else None,
            "ask": list(asks[0]) if asks else None,
            "bid_levels": len(bids),
            "ask_levels": len(asks),
        }
    return PeerApply(
        scenario, OURS, applied, round(wall, 3), round(cpu, 3), round(applied / wall),
        round(applied / cpu) if cpu else 0.0, passes, tops=tops,
    )  # fmt: skip


def apply_recorded_cryptofeed(
    market: str,
    python: Path | None,
    missing: str = "",
    recorded: Path = RECORDED,
    seconds: float = SIDE_SECONDS,
    repeats: int = SIDE_REPEATS,
) -> PeerApply:
    """cryptofeed's Binance feed over the same recording, in the peer virtualenv's interpreter;
    `missing` says why there is no interpreter when `python` is None."""
    scenario = _recorded_scenario(market)
    if python is None:
        return PeerApply(scenario, CRYPTOFEED, error=missing or "no peer virtualenv")
    ws, http = (recorded / name for name in RECORDINGS[market])
    if not ws.exists() or not http.exists():
        return PeerApply(scenario, CRYPTOFEED, error=f"recording missing: {ws} / {http}")
    argv = [str(python), str(PEER_SCRIPT), str(ws), str(http), market, str(seconds), str(repeats)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        return PeerApply(scenario, CRYPTOFEED, error="timed out after 900 s")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return PeerApply(scenario, CRYPTOFEED, error=f"exit {done.returncode}: {tail[0][:200]}")
    result = json.loads(lines[-1])
    cpu = result["cpu_seconds"]
    return PeerApply(
        scenario, CRYPTOFEED, result["level_updates"], result["seconds"], cpu,
        result["level_updates_per_s"], round(result["level_updates"] / cpu) if cpu else 0.0,
        result["passes"], tops=result["tops"],
    )  # fmt: skip


def side_by_side(
    markets: list[str],
    python: Path | None,
    missing: str = "",
    seconds: float = SIDE_SECONDS,
    repeats: int = SIDE_REPEATS,
) -> list[PeerApply]:
    """Ours, then cryptofeed's, on each recording: one after the other, never at the same time."""
    rows = []
    for market in markets:
        rows.append(apply_recorded(market, RECORDED, seconds, repeats))
        rows.append(apply_recorded_cryptofeed(market, python, missing, RECORDED, seconds, repeats))
    return rows


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


def main(
    events: int, calls: int, quick: bool, peer_python: Path | None = None, peer_missing: str = ""
) -> Report:
    """`peer_python`: the peer virtualenv's interpreter for the cryptofeed side; when None its rows
    carry `peer_missing` instead of figures."""
    report = Report(machine())
    report.peers = side_by_side(["spot"] if quick else ["spot", "futures"], peer_python, peer_missing)
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
    if report.peers:
        lines += ["", *peer_table(report.peers)]
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


def peer_table(rows: list[PeerApply]) -> list[str]:
    """Ours vs cryptofeed's book on the same recorded frames, with ours / cryptofeed as the ratio."""
    lines = [
        "ours vs cryptofeed's book, same recorded frames (raw text -> JSON -> book), best of "
        f"{SIDE_REPEATS} repeats",
        f"{'recorded stream':<34} {'client':<16} {'levels':>8} {'levels/s':>10} {'levels/CPU-s':>12} "
        f"{'ours/cf (wall)':>14} {'ours/cf (CPU)':>13}",
    ]
    ours = {row.scenario: row for row in rows if row.client == OURS and not row.error}
    for row in rows:
        if row.error:
            lines.append(f"{row.scenario:<34} {row.client:<16} {row.error}")
            continue
        ratio_wall = ratio_cpu = ""
        mine = ours.get(row.scenario)
        if (
            row.client != OURS
            and mine is not None
            and row.level_updates_per_s
            and row.level_updates_per_cpu_s
        ):
            ratio_wall = f"{mine.level_updates_per_s / row.level_updates_per_s:.1f}x"
            ratio_cpu = f"{mine.level_updates_per_cpu_s / row.level_updates_per_cpu_s:.1f}x"
        lines.append(
            f"{row.scenario:<34} {row.client:<16} {row.level_updates:>8} {row.level_updates_per_s:>10,.0f} "
            f"{row.level_updates_per_cpu_s:>12,.0f} {ratio_wall:>14} {ratio_cpu:>13}"
        )
    return lines


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)
