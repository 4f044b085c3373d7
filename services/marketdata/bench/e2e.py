"""`marketdata bench e2e`: latency from the replay exchange's send to receipt by a StreamTrades and a
StreamOrderFlow subscriber, at stepped rates, with every service running as its own process, and the
CPU each process used.

Processes per rate: the replay exchange (one instrument, `binance-futures:BTCUSDT`, a frame per trade),
the collector writing to storage, storage (SQLite), volume-profile and order-flow (both following the
collector's live trades), and this process, which subscribes to the collector's StreamTrades and to
order-flow's StreamOrderFlow (1m bars). The generator is paused until both subscriptions are up, then
runs a warm-up and the measuring window; the trades whose send time falls in the window count.
StreamTrades latency is receipt - send per trade; StreamOrderFlow's is the receipt of the first update
that includes a trade (bench/flow.py's method). CPU is user + system time of each process over the
window, also as a % of one core.

The replay exchange keeps the last 200,000 trades per instrument (its --history-size); at rates where
the window holds more, the latency figures are over the newest ones it kept (`sent` says how many).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from marketdata.bench.collector import _percentile, _stack, machine
from marketdata.bench.flow import INSTRUMENT, analytics_service, covered_trades, sent_times
from marketdata.bench.processes import Service, cpu_seconds
from marketdata.bench.storage import _storage
from marketdata.core.garbage import settle_garbage_collector
from marketdata.core.grpc_client import create_channel
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import order_flow_service_pb2 as pb
from marketdata.v1 import order_flow_service_pb2_grpc as pb_grpc

WARMUP_S = 2.0
DRAIN_S = 2.0  # after the window: time for the trades sent at its end to arrive
RATES = (1000.0, 10_000.0, 50_000.0)
PROCESSES = ("replay-exchange", "collector", "storage", "volume-profile", "order-flow", "subscriber")


@dataclass
class Stream:
    stream: str
    # trades sent in the window whose send time the exchange still held (its last 200k): the ones
    # measured; fewer than RateRun.offered when the window held more
    sent: int
    delivered: int  # of those, received (StreamOrderFlow: included in an update)
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    updates: int = 0  # StreamOrderFlow updates received in the window


@dataclass
class Cpu:
    process: str
    seconds: float
    pct_of_core: float


@dataclass
class RateRun:
    rate: float
    seconds: float
    offered: int = 0  # trades the exchange generated in the window
    # the collector's feed status at the end: > 0 means the exchange cut it (it fell 64 MiB behind)
    # or trades are missing that it could not fetch back
    reconnects: int = 0
    gaps_unrepaired: int = 0
    streams: list[Stream] = field(default_factory=list)
    cpu: list[Cpu] = field(default_factory=list)
    load_average: float = 0.0


@dataclass
class Report:
    machine: dict[str, Any]
    seconds: float
    runs: list[RateRun] = field(default_factory=list)


async def _generator(port: int, action: str) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/_replay/generator"
        async with session.post(url, json={"action": action}) as response:
            if response.status != 200:
                raise RuntimeError(f"replay generator {action}: {response.status} {await response.text()}")


async def _generated(port: int) -> int:
    """Trades the replay exchange has generated so far (all instruments)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/_replay/status") as response,
    ):
        body = await response.json()
    return sum(int(slot["generated"]) for slot in body["generator"]["instruments"].values())


def _stream(
    name: str, latencies: list[float], sent: int, offered: int, seconds: float, updates: int = 0
) -> Stream:
    if not latencies:
        return Stream(name, sent, 0, 0.0, 0.0, 0.0, 0.0, updates)
    return Stream(
        name,
        sent,
        len(latencies),
        # the share of the measured trades delivered, over all the window's trades (measured ones are
        # the newest 200k when the window held more)
        round(offered * len(latencies) / max(sent, 1) / seconds),
        round(statistics.median(latencies), 3),
        round(_percentile(latencies, 99), 3),
        round(max(latencies), 3),
        updates,
    )


class _Subscribers:
    """StreamTrades and StreamOrderFlow followed by this process, recording receipt times."""

    def __init__(self, collector_addr: str, order_flow_port: int) -> None:
        self.collector_addr = collector_addr
        self.order_flow_addr = f"127.0.0.1:{order_flow_port}"
        self.trades: dict[str, int] = {}  # trade id -> receipt ns
        self.updates: list[tuple[int, str]] = []  # (receipt ns, newest trade id included)
        self.attached = asyncio.Event()

    async def run(self) -> None:
        async with (
            create_channel(self.collector_addr) as collector_channel,
            create_channel(self.order_flow_addr) as flow_channel,
        ):
            trades_stub = collector_grpc.CollectorServiceStub(collector_channel)  # type: ignore[no-untyped-call]
            flow_stub = pb_grpc.OrderFlowServiceStub(flow_channel)  # type: ignore[no-untyped-call]
            trades_call = trades_stub.StreamTrades(
                collector_pb2.StreamTradesRequest(instruments=[INSTRUMENT.to_proto()])
            )
            flow_call = flow_stub.StreamOrderFlow(
                pb.StreamOrderFlowRequest(instruments=[INSTRUMENT.to_proto()], timeframe="1m")
            )
            try:
                await asyncio.gather(self._follow_trades(trades_call), self._follow_flow(flow_call))
            finally:
                trades_call.cancel()
                flow_call.cancel()

    async def _follow_trades(self, call: Any) -> None:
        # (no readiness signal: the collector sends its headers with the first batch; the call is
        # up long before the warm-up ends)
        received = self.trades
        async for response in call:
            at = time.time_ns()
            for trade in response.batch.trades:
                received[trade.trade_id] = at

    async def _follow_flow(self, call: Any) -> None:
        key = INSTRUMENT.key
        async for update in call:  # the first message is the snapshot: the stream is up
            if update.snapshot:
                self.attached.set()
            last = update.last_trade_ids.get(key)
            if last:
                self.updates.append((time.time_ns(), last))


def _cpu_now(services: dict[str, Service]) -> dict[str, float]:
    now = {name: cpu_seconds(service.pid) for name, service in services.items()}
    now["subscriber"] = cpu_seconds(os.getpid())
    return now


async def run_rate(rate: float, seconds: float) -> RateRun:
    result = RateRun(rate, seconds)
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-e2e-") as tmp:
        services: dict[str, Service] = {}
        try:
            storage = services["storage"] = await _storage(Path(tmp), {}, "NORMAL")
            exchange, collector, collector_addr = await _stack(
                [INSTRUMENT], rate, 10, extra_env={"MARKETDATA_STORAGE_ADDR": f"127.0.0.1:{storage.port}"}
            )
            services["replay-exchange"], services["collector"] = exchange, collector
            # generation began with the collector's subscription: hold it until every consumer is up,
            # and stop it after the window (the exchange keeps the last 200k trades' send times)
            await _generator(exchange.port, "pause")
            for name in ("volume-profile", "order-flow"):
                services[name] = await analytics_service(name, storage.port, collector_addr, exchange.port)
            subscribers = _Subscribers(collector_addr, services["order-flow"].port)
            following = asyncio.create_task(subscribers.run())
            try:
                attached = asyncio.create_task(subscribers.attached.wait())
                await asyncio.wait([attached, following], timeout=20, return_when=asyncio.FIRST_COMPLETED)
                attached.cancel()
                if following.done():
                    following.result()  # raises what stopped the subscriptions
                if not subscribers.attached.is_set():
                    raise RuntimeError(
                        "the StreamTrades and StreamOrderFlow subscriptions did not start in 20 s"
                    )
                # the measuring process is a consumer like any other: it keeps full garbage collections
                # (a 22 ms stop with its start-up heap) out of the receipt times, as the services do
                settle_garbage_collector()
                await _generator(exchange.port, "resume")
                await asyncio.sleep(WARMUP_S)
                generated_before = await _generated(exchange.port)
                cpu_before = _cpu_now(services)
                window_start = time.time_ns()
                began = time.monotonic()
                await asyncio.sleep(seconds)
                elapsed = time.monotonic() - began
                window_end = time.time_ns()
                cpu_after = _cpu_now(services)
                await _generator(exchange.port, "pause")
                result.offered = await _generated(exchange.port) - generated_before
                await asyncio.sleep(DRAIN_S)
            finally:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await following
            index, sent = await sent_times(exchange.port)
            async with create_channel(collector_addr) as channel:
                stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
                status = await stub.GetFeedStatus(collector_pb2.GetFeedStatusRequest(), timeout=10)
            result.reconnects = sum(f.reconnects for f in status.feeds)
            result.gaps_unrepaired = sum(f.gaps_unrepaired for f in status.feeds)
        finally:
            for name in ("order-flow", "volume-profile", "collector", "replay-exchange", "storage"):
                if name in services:
                    await services[name].stop()
    result.cpu = [
        Cpu(
            name,
            round(cpu_after[name] - cpu_before[name], 2),
            round(100 * (cpu_after[name] - cpu_before[name]) / elapsed, 1),
        )
        for name in PROCESSES
    ]
    in_window = [i for i, at in enumerate(sent) if window_start <= at < window_end]
    ids = {i: trade_id for trade_id, i in index.items()}
    direct = subscribers.trades
    trade_latencies = [(direct[ids[i]] - sent[i]) / 1e6 for i in in_window if ids[i] in direct]
    result.streams.append(_stream("StreamTrades", trade_latencies, len(in_window), result.offered, elapsed))
    flow_latencies: list[float] = []
    updates = 0
    for at_ns, covered in covered_trades(subscribers.updates, index):
        counted = [i for i in covered if window_start <= sent[i] < window_end]
        if counted:
            updates += 1
            flow_latencies += [(at_ns - sent[i]) / 1e6 for i in counted]
    result.streams.append(
        _stream("StreamOrderFlow", flow_latencies, len(in_window), result.offered, elapsed, updates)
    )
    result.load_average = round(os.getloadavg()[0], 1)
    return result


async def run(rates: list[float], seconds: float) -> Report:
    report = Report(machine(), seconds)
    for rate in rates:
        report.runs.append(await run_rate(rate, seconds))
    return report


def table(report: Report) -> str:
    m = report.machine
    lines = [
        f"end to end: replay exchange -> collector -> StreamTrades / order-flow -> StreamOrderFlow; "
        f"{m['cpus']} cpus, Python {m['python']}, {report.seconds:g} s per rate",
        "",
        "| offered trades/s | stream | generated | measured | delivered | delivered/s | p50 ms | p99 ms | max ms | updates | load |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in report.runs:
        for s in run.streams:
            lines.append(
                f"| {run.rate:,.0f} | {s.stream} | {run.offered:,} | {s.sent:,} | {s.delivered:,} | {s.delivered_per_s:,.0f} "
                f"| {s.p50_ms:.3f} | {s.p99_ms:.3f} | {s.max_ms:.3f} | {s.updates or ''} | {run.load_average} |"
            )
    lines += [
        "",
        "CPU over the window: seconds (% of one core); the collector's reconnects and unrepaired gaps",
        "",
        "| offered trades/s | " + " | ".join(PROCESSES) + " | total | reconnects | gaps |",
        "| ---: |" + " ---: |" * (len(PROCESSES) + 3),
    ]
    for run in report.runs:
        total = sum(c.pct_of_core for c in run.cpu)
        cells = [f"{c.seconds:.2f} ({c.pct_of_core:.0f} %)" for c in run.cpu]
        lines.append(
            f"| {run.rate:,.0f} | "
            + " | ".join(cells)
            + f" | {total:.0f} % | {run.reconnects} | {run.gaps_unrepaired} |"
        )
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)


def main(rates: list[float], seconds: float) -> Report:
    return asyncio.run(run(rates, seconds))
