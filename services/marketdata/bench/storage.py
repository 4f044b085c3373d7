"""`marketdata bench storage`: each available backend behind `marketdata serve storage`, in its own process.

The embedded store (SQLite) always; MongoDB as well when a server is given (`--mongodb-uri`, or
MARKETDATA_TEST_MONGODB_URI), in a database of its own that is dropped afterwards. Per backend:

1. Ingest: one WriteTrades stream, batches of 1000 trades of one instrument spread over 24 h, sent
   pipelined; trades/s from the first send to the last acknowledgement (each after a durable commit,
   synchronous=FULL unless MARKETDATA_STORAGE_SQLITE_SYNCHRONOUS says otherwise).
2. Footprints: QueryFootprints of the whole 24 h of 1m bars, repeated; latency percentiles as a client
   sees them (until the last bar is parsed). Without Redis, then with Redis (warm) when redis-server is
   on PATH.
3. Streaming: QueryTrades of all stored trades; trades/s with the client parsing every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from marketdata.bench.collector import machine
from marketdata.bench.processes import (
    RedisServerError,
    Service,
    cpu_seconds,
    free_port,
    private_redis_server,
    start_service,
)
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import storage_service_pb2_grpc as storage_grpc

INSTRUMENT = InstrumentId.parse("binance-futures:BTCUSDT")
DAY_MS = 86_400_000
BATCH = 1000


@dataclass
class Backend:
    """The figures of one backend: `name` is sqlite or mongodb."""

    name: str
    ingest_trades_per_s: float = 0.0
    ingest_seconds: float = 0.0
    ingest_storage_cpu_s: float = 0.0
    store_mb: float = 0.0
    footprint_bars: int = 0
    footprint_rows: int = 0
    footprints_ms: dict[str, float] = field(default_factory=dict)
    footprints_redis_ms: dict[str, float] = field(default_factory=dict)
    stream_trades_per_s: float = 0.0
    stream_seconds: float = 0.0


@dataclass
class Report:
    machine: dict[str, Any]
    trades: int
    synchronous: str
    backends: list[Backend] = field(default_factory=list)
    # Why a backend was not measured (MongoDB without a server), shown under the table.
    skipped: dict[str, str] = field(default_factory=dict)


def _requests(count: int, start_ms: int, seed: int = 5) -> list[bytes]:
    """Serialized WriteTradesRequests: a random walk on a 0.10 grid, evenly over 24 h."""
    rng = random.Random(seed)
    price = 650_000
    spacing = DAY_MS / count
    out: list[bytes] = []
    instrument = INSTRUMENT.to_proto()
    for first in range(0, count, BATCH):
        trades = []
        for n in range(first, min(count, first + BATCH)):
            price += rng.choice((-2, -1, 0, 0, 1, 2))
            size = rng.randint(1, 5000)
            t = start_ms + int(n * spacing)
            trades.append(
                common_pb2.Trade(
                    trade_id=str(7_000_000_000 + n),
                    price=f"{price // 10}.{price % 10}0",
                    size=f"{size // 1000}.{size % 1000:03d}",
                    side=common_pb2.SIDE_BUY if rng.random() < 0.5 else common_pb2.SIDE_SELL,
                    exchange_time_ms=t,
                    receive_time_ns=t * 1_000_000 + 250_000,
                    event_time_ms=t,
                    source=common_pb2.TRADE_SOURCE_WEBSOCKET,
                    execution_type="MARKET",
                )
            )
        out.append(
            storage_pb2.WriteTradesRequest(
                batch_id=first // BATCH + 1,
                batch=common_pb2.TradeBatch(instrument=instrument, trades=trades),
                tick_size="0.10",
            ).SerializeToString()
        )
    return out


async def _ingest(addr: str, requests: list[bytes]) -> float:
    async with create_channel(addr) as channel:
        method = channel.stream_stream(
            "/marketdata.v1.StorageService/WriteTrades",
            request_serializer=None,
            response_deserializer=storage_pb2.WriteTradesResponse.FromString,
        )
        call = method()
        started = time.perf_counter()

        async def send() -> None:
            for request in requests:
                await call.write(request)
            await call.done_writing()

        sender = asyncio.create_task(send())
        acks = 0
        async for _ in call:
            acks += 1
        await sender
        if acks != len(requests):
            raise RuntimeError(f"{acks} acknowledgements for {len(requests)} batches")
        return time.perf_counter() - started


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": ordered[-1] * 1000}


async def _footprints(addr: str, start_ms: int, rounds: int) -> tuple[dict[str, float], int, int]:
    async with create_channel(addr) as channel:
        stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
        request = storage_pb2.QueryFootprintsRequest(
            instrument=INSTRUMENT.to_proto(), start_time_ms=start_ms, end_time_ms=start_ms + DAY_MS
        )
        samples: list[float] = []
        bars = rows = 0
        for n in range(rounds + 3):
            began = time.perf_counter()
            bars = rows = 0
            async for response in stub.QueryFootprints(request):
                bars += len(response.bars)
                rows += sum(len(b.rows) for b in response.bars)
            if n >= 3:  # warm-up rounds (connection, caches) are not counted
                samples.append(time.perf_counter() - began)
        return _percentiles(samples), bars, rows


async def _stream(addr: str, start_ms: int, expected: int) -> float:
    async with create_channel(addr) as channel:
        stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
        request = storage_pb2.QueryTradesRequest(
            instruments=[INSTRUMENT.to_proto()], start_time_ms=start_ms, end_time_ms=start_ms + DAY_MS
        )
        began = time.perf_counter()
        count = 0
        async for response in stub.QueryTrades(request):
            count += len(response.batch.trades)
        elapsed = time.perf_counter() - began
        if count != expected:
            raise RuntimeError(f"streamed {count} trades, expected {expected}")
        return elapsed


async def _storage(data: Path, extra: dict[str, str], synchronous: str, uri: str = "") -> Service:
    """A storage process on a free port: the embedded store in `data`, or the backend at `uri`."""
    port = free_port()
    env = {
        "MARKETDATA_STORAGE_PORT": str(port),
        "MARKETDATA_STORAGE_METRICS_PORT": "0",
        "MARKETDATA_STORAGE_URI": uri or f"sqlite:///{data / 'bench.db'}",
        "MARKETDATA_STORAGE_SQLITE_SYNCHRONOUS": synchronous,
        "MARKETDATA_STORAGE_RETENTION_INTERVAL": "0",
        "MARKETDATA_LOG_LEVEL": "WARNING",
        **extra,
    }
    return await start_service("storage", ["serve", "storage"], env, port)


@contextlib.contextmanager
def _redis(directory: Path) -> Iterator[str | None]:
    """Redis for the cached-query figures when redis-server is installed, else None (figure skipped)."""
    try:
        with private_redis_server(directory) as url:
            yield url
    except RedisServerError:
        yield None


def _size_mb(data: Path) -> float:
    return sum(p.stat().st_size for p in data.glob("bench.db*")) / 1e6


def bench_database_uri(server_uri: str) -> str:
    """`server_uri` with a fresh database name, so the figures never mix with (or drop) real data."""
    parts = urlsplit(server_uri)
    return urlunsplit(parts._replace(path=f"/marketdata_bench_{uuid.uuid4().hex[:12]}"))


def _drop_database(uri: str) -> None:
    import pymongo  # only with a MongoDB server at hand

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(client.get_default_database().name)
    finally:
        client.close()


async def _measure(
    name: str, data: Path, uri: str, requests: list[bytes], start_ms: int, rounds: int, synchronous: str
) -> Backend:
    figures = Backend(name)
    trades = _trade_count(requests)
    service = await _storage(data, {}, synchronous, uri)
    try:
        cpu_before = cpu_seconds(service.pid)
        addr = f"127.0.0.1:{service.port}"
        figures.ingest_seconds = await _ingest(addr, requests)
        figures.ingest_storage_cpu_s = cpu_seconds(service.pid) - cpu_before
        figures.ingest_trades_per_s = trades / figures.ingest_seconds
        figures.footprints_ms, figures.footprint_bars, figures.footprint_rows = await _footprints(
            addr, start_ms, rounds
        )
        figures.stream_seconds = await _stream(addr, start_ms, trades)
        figures.stream_trades_per_s = trades / figures.stream_seconds
    finally:
        await service.stop()
    if not uri:
        figures.store_mb = _size_mb(data)
    with _redis(data) as redis_url:
        if redis_url is not None:
            service = await _storage(data, {"MARKETDATA_REDIS_URL": redis_url}, synchronous, uri)
            try:
                figures.footprints_redis_ms, _, _ = await _footprints(
                    f"127.0.0.1:{service.port}", start_ms, rounds
                )
            finally:
                await service.stop()
    return figures


def _trade_count(requests: list[bytes]) -> int:
    return sum(len(storage_pb2.WriteTradesRequest.FromString(r).batch.trades) for r in requests)


async def run(trades: int, rounds: int, synchronous: str, mongodb_uri: str = "") -> Report:
    report = Report(machine(), trades, synchronous)
    now = int(time.time() * 1000)
    start_ms = now - now % DAY_MS - 2 * DAY_MS  # a whole closed UTC day
    requests = _requests(trades, start_ms)
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-") as tmp:
        report.backends.append(
            await _measure("sqlite", Path(tmp), "", requests, start_ms, rounds, synchronous)
        )
    if not mongodb_uri:
        report.skipped["mongodb"] = "no server given (--mongodb-uri or MARKETDATA_TEST_MONGODB_URI)"
        return report
    uri = bench_database_uri(mongodb_uri)
    try:
        with tempfile.TemporaryDirectory(prefix="marketdata-bench-") as tmp:
            report.backends.append(
                await _measure("mongodb", Path(tmp), uri, requests, start_ms, rounds, synchronous)
            )
    finally:
        _drop_database(uri)
    return report


def table(report: Report) -> str:
    lines = [f"one instrument, {report.trades} trades over 24 h, {report.machine['cpus']} CPUs"]
    for figures in report.backends:
        fp, fr = figures.footprints_ms, figures.footprints_redis_ms
        title = (
            f"embedded store (SQLite WAL, synchronous={report.synchronous})"
            if figures.name == "sqlite"
            else "MongoDB"
        )
        lines += [
            "",
            title,
            f"{'ingest (WriteTrades, acked after durable commit)':<52} {figures.ingest_trades_per_s:>12,.0f} trades/s"
            f"   ({figures.ingest_seconds:.1f} s, storage CPU {figures.ingest_storage_cpu_s:.1f} s)",
            f"{'QueryTrades, 24 h streamed back (client parses)':<52} {figures.stream_trades_per_s:>12,.0f} trades/s"
            f"   ({figures.stream_seconds:.2f} s)",
            f"{'QueryFootprints, 24 h of 1m bars (store)':<52} p50 {fp['p50']:.1f} ms  p95 {fp['p95']:.1f} ms  "
            f"p99 {fp['p99']:.1f} ms   ({figures.footprint_bars} bars, {figures.footprint_rows} rows)",
        ]
        if fr:
            lines.append(
                f"{'QueryFootprints, 24 h of 1m bars (Redis, warm)':<52} p50 {fr['p50']:.1f} ms  "
                f"p95 {fr['p95']:.1f} ms  p99 {fr['p99']:.1f} ms"
            )
        if figures.name == "sqlite":
            lines.append(f"{'store size':<52} {figures.store_mb:>12.1f} MB")
    lines += [f"\n{name}: not measured, {why}" for name, why in report.skipped.items()]
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)


def main(trades: int, rounds: int, synchronous: str, mongodb_uri: str = "") -> Report:
    return asyncio.run(run(trades, rounds, synchronous, mongodb_uri))


__all__ = ["Report", "as_json", "main", "table"]
