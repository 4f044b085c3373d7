"""`marketdata bench collector`: trades/s through normalization and gRPC delivery, and latency from
the replay exchange's send to a StreamTrades subscriber's receipt.

Each scenario runs three processes on this machine, as in production: the replay exchange, the
collector (`marketdata serve collector`) and the subscriber (this process). Figures are printed as
a table and written as JSON; nothing here is a pass/fail test.
"""

from __future__ import annotations

import asyncio
import os
import platform
import ssl
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from marketdata.bench.peers import pyspy
from marketdata.bench.processes import Service, cpu_seconds, free_port, start_service
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc


@dataclass
class Throughput:
    scenario: str
    instruments: int
    trades_per_frame: int
    offered_rate: float  # 0: firehose, as fast as the collector takes them
    seconds: float
    trades: int
    trades_per_s: float
    batches_per_s: float
    collector_cpu_pct: float
    exchange_cpu_pct: float
    reconnects: int  # > 0: the exchange cut a connection that fell behind (offered more than it took)
    gaps_unrepaired: int
    # Loss and duplicates over the window, where ids tell: per instrument (last - first + 1) - count,
    # summed (Binance trade ids; Bybit `seq` in firehose mode, where it is consecutive); None: unchecked.
    id_span_mismatch: int | None = None
    # Firehose: the share of the window the exchange spent waiting for the collector to read
    # (near 100 %: the collector sets the rate; near 0: the exchange does).
    exchange_waited_pct: float | None = None
    # The StreamTrades subscriber (this process: gRPC receive and protobuf decode) shares the machine
    # with the collector and the exchange.
    subscriber_cpu_pct: float = 0.0

    @property
    def cpu_us_per_trade(self) -> float:
        return self.collector_cpu_pct / 100 / self.trades_per_s * 1e6 if self.trades_per_s else 0.0


@dataclass
class Latency:
    scenario: str
    rate: float
    trades: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    collector_to_subscriber_p50_ms: float
    collector_to_subscriber_p99_ms: float
    collector_cpu_pct: float


@dataclass
class Report:
    machine: dict[str, Any]
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    # Side by side with cryptofeed, ccxt and the bare loop (`--peers`): marketdata.bench.peers.compare
    peers: list[Any] = field(default_factory=list)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


@dataclass(frozen=True)
class Tls:
    """The replay exchange served over TLS with a self-signed certificate (peer clients need wss://);
    every client process is told to trust it."""

    cert: str
    key: str

    def exchange_args(self) -> list[str]:
        return ["--tls-cert", self.cert, "--tls-key", self.key, "--max-send-buffer-mb", "4096"]

    def client_env(self) -> dict[str, str]:
        return {"SSL_CERT_FILE": self.cert, "REQUESTS_CA_BUNDLE": self.cert}


async def start_exchange(
    instruments: list[InstrumentId],
    rate: float,
    trades_per_frame: int,
    max_trades: int | None = None,
    tls: Tls | None = None,
) -> Service:
    """A seeded replay exchange process generating `rate` trades/s over the instruments; rate 0 is
    the firehose (`--firehose`): as many trades as each client reads."""
    replay_port = free_port()
    args = [
        "replay-exchange", "--port", str(replay_port), "--seed", "1",
        "--instruments", ",".join(i.key for i in instruments),
        "--trades-per-frame", str(trades_per_frame),
    ]  # fmt: skip
    args += ["--rate", str(rate)] if rate else ["--firehose"]
    if max_trades:
        args += ["--max-trades", str(max_trades)]
    if tls is not None:
        args += tls.exchange_args()
    return await start_service("replay-exchange", args, {}, replay_port)


async def _stack(
    instruments: list[InstrumentId],
    rate: float,
    trades_per_frame: int,
    max_trades: int | None = None,
    tls: Tls | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[Service, Service, str]:
    """The replay exchange and a collector reading it; `extra_env` adds collector settings (e.g.
    MARKETDATA_STORAGE_ADDR when storage runs too)."""
    exchange = await start_exchange(instruments, rate, trades_per_frame, max_trades, tls)
    replay_port = exchange.port
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        "MARKETDATA_INSTRUMENTS": ",".join(i.key for i in instruments),
        "MARKETDATA_COLLECTOR_PORT": str(grpc_port),
        "MARKETDATA_COLLECTOR_METRICS_PORT": str(metrics_port),
        "MARKETDATA_LOG_LEVEL": "WARNING",
        # trade-only figures: books add depth traffic on the same connections (see bench book)
        "MARKETDATA_BOOK_INSTRUMENTS": "none",
    }
    secure = "s" if tls is not None else ""
    for name in ("BINANCE_SPOT", "BINANCE_FUTURES", "BYBIT"):
        env[f"MARKETDATA_{name}_WS_URL"] = f"ws{secure}://127.0.0.1:{replay_port}"
        env[f"MARKETDATA_{name}_REST_URL"] = f"http{secure}://127.0.0.1:{replay_port}"
    if tls is not None:
        env.update(tls.client_env())
    env.update(extra_env or {})
    collector = await start_service("collector", ["serve", "collector"], env, grpc_port)
    return exchange, collector, f"127.0.0.1:{grpc_port}"


class SpanCheck:
    """Loss and duplicates seen from ids: per instrument, the first and last id and the count in the
    window; with consecutive ids, (last - first + 1) - count is 0 exactly when nothing was lost or
    repeated. Binance trade ids are consecutive; Bybit `seq` is in firehose mode (paced: gaps)."""

    def __init__(self, use_sequence: bool) -> None:
        self.use_sequence = use_sequence
        self.spans: dict[tuple[int, int, str], list[int]] = {}  # instrument -> [first, last, count]

    def add(self, batch: Any) -> None:
        trades = batch.trades
        if not trades:
            return
        if self.use_sequence:
            first, last = trades[0].cross_sequence, trades[-1].cross_sequence
        else:
            first, last = int(trades[0].trade_id), int(trades[-1].trade_id)
        instrument = batch.instrument
        key = (instrument.exchange, instrument.market, instrument.symbol)
        span = self.spans.get(key)
        if span is None:
            self.spans[key] = [first, last, len(trades)]
        else:
            span[1] = last
            span[2] += len(trades)

    def mismatch(self) -> int:
        return sum(abs(last - first + 1 - count) for first, last, count in self.spans.values())


async def throughput(
    scenario: str,
    instruments: list[InstrumentId],
    rate: float,
    trades_per_frame: int,
    seconds: float,
    tls: Tls | None = None,
    profile: Path | None = None,
) -> Throughput:
    """Trades a StreamTrades subscriber receives (normalized, batched, over gRPC) per second; rate 0
    offers the firehose. With `profile`, py-spy samples the collector over the window and its top
    functions are written there."""
    exchange, collector, addr = await _stack(instruments, rate, trades_per_frame, tls=tls)
    binance = all(i.market.is_binance for i in instruments)
    check = SpanCheck(use_sequence=not binance) if binance or not rate else None
    spy: asyncio.Task[str] | None = None
    try:
        async with create_channel(addr) as channel:
            stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
            stream = stub.StreamTrades(collector_pb2.StreamTradesRequest())
            warmup_until = time.monotonic() + 2.0
            trades = batches = 0
            started = cpu_c = cpu_e = cpu_s = wait_e = 0.0
            async for response in stream:
                now = time.monotonic()
                if started == 0.0:
                    if now < warmup_until:
                        continue
                    started, cpu_c, cpu_e = now, cpu_seconds(collector.pid), cpu_seconds(exchange.pid)
                    cpu_s = time.process_time()
                    wait_e = await exchange_waited_s(exchange.port, tls) if not rate else 0.0
                    if profile is not None:
                        spy = asyncio.create_task(pyspy.record(collector.pid, seconds))
                    continue
                trades += len(response.batch.trades)
                batches += 1
                if check is not None:
                    check.add(response.batch)
                if now - started >= seconds:
                    break
            elapsed = time.monotonic() - started
            cpu_c, cpu_e = cpu_seconds(collector.pid) - cpu_c, cpu_seconds(exchange.pid) - cpu_e
            cpu_s = time.process_time() - cpu_s
            stream.cancel()
            if not rate:
                wait_e = await exchange_waited_s(exchange.port, tls) - wait_e
            status = await stub.GetFeedStatus(collector_pb2.GetFeedStatusRequest())
        if spy is not None and profile is not None:
            pyspy.save(profile, f"{scenario}: marketdata collector at saturation", await spy)
        return Throughput(
            scenario=scenario,
            instruments=len(instruments),
            trades_per_frame=trades_per_frame,
            offered_rate=rate,
            seconds=round(elapsed, 2),
            trades=trades,
            trades_per_s=round(trades / elapsed),
            batches_per_s=round(batches / elapsed),
            collector_cpu_pct=round(100 * cpu_c / elapsed, 1),
            exchange_cpu_pct=round(100 * cpu_e / elapsed, 1),
            reconnects=sum(f.reconnects for f in status.feeds),
            gaps_unrepaired=sum(f.gaps_unrepaired for f in status.feeds),
            id_span_mismatch=check.mismatch() if check is not None else None,
            exchange_waited_pct=None if rate else round(100 * min(wait_e / elapsed, 1.0), 1),
            subscriber_cpu_pct=round(100 * cpu_s / elapsed, 1),
        )
    finally:
        if spy is not None and not spy.done():
            spy.cancel()
        await collector.stop()
        await exchange.stop()


async def exchange_status(port: int, tls: Tls | None) -> dict[str, Any]:
    """The replay exchange's /_replay/status (over https when it serves TLS)."""
    context: ssl.SSLContext | bool = ssl.create_default_context(cafile=tls.cert) if tls is not None else False
    scheme = "https" if tls is not None else "http"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{scheme}://127.0.0.1:{port}/_replay/status", ssl=context) as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


async def exchange_waited_s(port: int, tls: Tls | None) -> float:
    """Seconds the firehose has waited so far for its clients to read (mean over its instruments)."""
    firehose = (await exchange_status(port, tls)).get("firehose") or {}
    waits = [float(row["drain_wait_s"]) for row in firehose.values()]
    return sum(waits) / len(waits) if waits else 0.0


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def latency(scenario: str, instruments: list[InstrumentId], rate: float, seconds: float) -> Latency:
    """Send time (the exchange stamps each trade when its frame is written) to subscriber receipt."""
    per_instrument = int(rate * (seconds + 2) / len(instruments))
    exchange, collector, addr = await _stack(instruments, rate, 50, max_trades=per_instrument)
    received: dict[tuple[str, str], int] = {}
    via_collector: list[float] = []
    try:
        async with create_channel(addr) as channel:
            stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
            stream = stub.StreamTrades(collector_pb2.StreamTradesRequest())
            expected = per_instrument * len(instruments)
            cpu_c = cpu_seconds(collector.pid)
            started = last = time.monotonic()
            responses = aiter(stream)
            # Trades sent before this subscription attached are not received: stop at the expected
            # count, or once the stream has been idle (the generator has finished).
            while len(received) < expected:
                try:
                    response = await asyncio.wait_for(anext(responses), timeout=3.0)
                except (TimeoutError, StopAsyncIteration):
                    break
                now_ns = time.time_ns()
                last = time.monotonic()
                key = InstrumentId.from_proto(response.batch.instrument).key
                for trade in response.batch.trades:
                    received[(key, trade.trade_id)] = now_ns
                    via_collector.append((now_ns - trade.receive_time_ns) / 1e6)
            cpu_used = cpu_seconds(collector.pid) - cpu_c  # includes the idle wait: a little high
            elapsed = max(last - started, 1e-9)
            stream.cancel()
            cpu_pct = round(100 * cpu_used / elapsed, 1)
        sent = await _sent_times(exchange.port, instruments)
    finally:
        await collector.stop()
        await exchange.stop()
    latencies = [(received[k] - sent[k]) / 1e6 for k in received if k in sent]
    if not latencies:
        raise RuntimeError("no trade could be matched with its send time")
    return Latency(
        scenario=scenario,
        rate=rate,
        trades=len(latencies),
        p50_ms=round(statistics.median(latencies), 3),
        p99_ms=round(_percentile(latencies, 99), 3),
        max_ms=round(max(latencies), 3),
        collector_to_subscriber_p50_ms=round(statistics.median(via_collector), 3),
        collector_to_subscriber_p99_ms=round(_percentile(via_collector, 99), 3),
        collector_cpu_pct=cpu_pct,
    )


async def _sent_times(port: int, instruments: list[InstrumentId]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    async with aiohttp.ClientSession() as session:
        for instrument in instruments:
            url = f"http://127.0.0.1:{port}/_replay/trades"
            async with session.get(url, params={"instrument": instrument.key}) as response:
                body = await response.json()
            for row in body["trades"]:
                if row.get("sent_ns"):
                    out[(instrument.key, str(row["id"]))] = int(row["sent_ns"])
    return out


def instruments_of(market: str, count: int) -> list[InstrumentId]:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT", "ADAUSDT", "LINKUSDT"]
    return [InstrumentId.parse(f"{market}:{s}") for s in symbols[:count]]


async def run(seconds: float, quick: bool) -> Report:
    """Paced rates, then the firehose (rate 0: as many trades as the collector takes), which finds the
    collector's own ceiling on this machine."""
    report = Report(machine())
    bybit_rates = (0.0,) if quick else (100_000.0, 200_000.0, 0.0)
    for rate in bybit_rates:
        report.throughput.append(
            await throughput(
                "bybit-linear x4, 100 trades/frame", instruments_of("bybit-linear", 4), rate, 100, seconds
            )
        )
    if not quick:
        for rate in (50_000.0, 100_000.0, 0.0):
            report.throughput.append(
                await throughput(
                    "binance-spot x4, 1 trade/frame", instruments_of("binance-spot", 4), rate, 1, seconds
                )
            )
    for rate in (10_000.0,) if quick else (1_000.0, 10_000.0):
        report.latency.append(
            await latency("bybit-linear x4", instruments_of("bybit-linear", 4), rate, seconds)
        )
    if not quick:
        report.latency.append(
            await latency("binance-spot x4", instruments_of("binance-spot", 4), 10_000.0, seconds)
        )
    return report


def table(report: Report) -> str:
    from marketdata.bench.peers import compare

    lines = [
        f"machine: {report.machine['cpus']} cpus, Python {report.machine['python']}, {report.machine['platform']}",
    ]
    if report.throughput:
        lines += [
            "",
            "| throughput scenario | offered trades/s | delivered trades/s | batches/s | collector CPU % "
            "| CPU us/trade | exchange CPU % | ids: lost + repeated | reconnects |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    for t in report.throughput:
        offered = f"{t.offered_rate:,.0f}" if t.offered_rate else "firehose"
        ids = "n/a" if t.id_span_mismatch is None else t.id_span_mismatch
        lines.append(
            f"| {t.scenario} | {offered} | {t.trades_per_s:,} | {t.batches_per_s:,} "
            f"| {t.collector_cpu_pct} | {t.cpu_us_per_trade:.2f} | {t.exchange_cpu_pct} | {ids} | {t.reconnects} |"
        )
    if report.latency:
        lines += [
            "",
            "| latency, exchange send -> subscriber | trades | p50 ms | p99 ms | max ms "
            "| collector->subscriber p50/p99 ms | collector CPU % |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    for x in report.latency:
        lines.append(
            f"| {x.scenario} at {x.rate:,.0f} trades/s | {x.trades:,} | {x.p50_ms} | {x.p99_ms} | {x.max_ms} "
            f"| {x.collector_to_subscriber_p50_ms} / {x.collector_to_subscriber_p99_ms} | {x.collector_cpu_pct} |"
        )
    if report.peers:
        lines += ["", compare.table(report.peers)]
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)


def main(
    seconds: float,
    quick: bool,
    peer_python: Path | None = None,
    only_peers: bool = False,
    profiles: Path | None = None,
) -> Report:
    """Our scenarios (unless only_peers), then with a peer interpreter the side-by-side comparison
    (with `profiles`, py-spy tables of our collector at saturation are written there)."""
    from marketdata.bench.peers import compare

    async def everything() -> Report:
        report = Report(machine()) if only_peers else await run(seconds, quick)
        if peer_python is not None or only_peers or profiles is not None:
            report.peers = await compare.compare(seconds, peer_python, profiles)
        return report

    return asyncio.run(everything())
