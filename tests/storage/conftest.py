"""Storage under test: a real StorageService on loopback (embedded SQLite in a temp dir), helpers to make
trades, and an independent footprint oracle in Decimal arithmetic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest

from marketdata.bench.processes import RedisServerError, private_redis_server
from marketdata.core.config import Settings, load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.storage.backends.base import Backend, InvalidBatch, TradeWrite
from marketdata.storage.footprints import RES_1M
from marketdata.storage.server import StorageService, start_storage_service
from marketdata.v1 import common_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import storage_service_pb2_grpc as storage_grpc

BTC = InstrumentId.parse("binance-futures:BTCUSDT")
ETH = InstrumentId.parse("bybit-spot:ETHUSDT")
T0 = 1_700_000_040_000  # a whole minute (UTC), well in the past
NOW = T0 + 3_600_000  # every bar written at T0 is closed by then


def storage_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "MARKETDATA_BIND_HOST": "127.0.0.1",
        "MARKETDATA_STORAGE_PORT": "0",
        "MARKETDATA_STORAGE_METRICS_PORT": "0",
        "MARKETDATA_DATA_DIR": str(tmp_path),
        "MARKETDATA_STORAGE_URI": f"sqlite:///{tmp_path / 'store.db'}",
        "MARKETDATA_STORAGE_RETENTION_INTERVAL": "0",
        "MARKETDATA_LOG_LEVEL": "WARNING",
    }
    env.update({f"MARKETDATA_{k.upper()}": v for k, v in extra.items()})
    return env


def storage_settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(storage_env(tmp_path, **extra))


def trade(
    trade_id: int | str, price: str, size: str, buy: bool, time_ms: int, **fields: object
) -> common_pb2.Trade:
    return common_pb2.Trade(
        trade_id=str(trade_id),
        price=price,
        size=size,
        side=common_pb2.SIDE_BUY if buy else common_pb2.SIDE_SELL,
        exchange_time_ms=time_ms,
        receive_time_ns=time_ms * 1_000_000 + 123,
        source=common_pb2.TRADE_SOURCE_WEBSOCKET,
        **fields,  # type: ignore[arg-type]
    )


def walk(
    count: int, start_ms: int = T0, spacing_ms: int = 7, first_id: int = 1, seed: int = 3
) -> list[common_pb2.Trade]:
    """A deterministic random walk on a 0.10 grid with sizes of 3 decimals."""
    import random

    rng = random.Random(seed)
    price = 650_000  # in 0.10 units
    out = []
    for n in range(count):
        price += rng.choice((-2, -1, 0, 0, 1, 2))
        size = rng.randint(1, 5000)
        out.append(
            trade(
                first_id + n,
                f"{price // 10}.{price % 10}0",
                f"{size // 1000}.{size % 1000:03d}",
                rng.random() < 0.5,
                start_ms + n * spacing_ms,
            )
        )
    return out


Oracle = dict[int, dict[Decimal, list[Decimal | int]]]


def oracle(trades: Iterable[common_pb2.Trade], tick: str, bar_ms: int = 60_000) -> Oracle:
    """Footprints by the DESIGN definition, in Decimal: row = floor(price / tick) * tick."""
    step = Decimal(tick)
    bars: Oracle = {}
    for t in trades:
        start = t.exchange_time_ms - t.exchange_time_ms % bar_ms
        row = (Decimal(t.price) / step).to_integral_value(rounding=ROUND_FLOOR) * step
        cell = bars.setdefault(start, {}).setdefault(row, [Decimal(0), Decimal(0), 0, 0])
        if t.side == common_pb2.SIDE_BUY:
            cell[0] += Decimal(t.size)
            cell[2] = int(cell[2]) + 1
        else:
            cell[1] += Decimal(t.size)
            cell[3] = int(cell[3]) + 1
    return bars


def bars_as_oracle(bars: Iterable[storage_pb2.FootprintBar]) -> Oracle:
    return {
        b.start_time_ms: {
            Decimal(r.price): [Decimal(r.buy_volume), Decimal(r.sell_volume), r.buy_trades, r.sell_trades]
            for r in b.rows
        }
        for b in bars
    }


@dataclass
class Running:
    service: StorageService
    stub: storage_grpc.StorageServiceStub
    settings: Settings

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.grpc.port}"

    async def write(
        self, instrument: InstrumentId, batches: list[list[common_pb2.Trade]], tick: str = "0.10"
    ) -> list[storage_pb2.WriteTradesResponse]:
        requests = [
            storage_pb2.WriteTradesRequest(
                batch_id=n + 1,
                batch=common_pb2.TradeBatch(instrument=instrument.to_proto(), trades=b),
                tick_size=tick,
            )
            for n, b in enumerate(batches)
        ]
        call = self.stub.WriteTrades(iter(requests))
        return [r async for r in call]

    async def trades(
        self, instrument: InstrumentId, start: int, end: int, **fields: object
    ) -> list[common_pb2.Trade]:
        request = storage_pb2.QueryTradesRequest(
            instruments=[instrument.to_proto()],
            start_time_ms=start,
            end_time_ms=end,
            **fields,  # type: ignore[arg-type]
        )
        out: list[common_pb2.Trade] = []
        async for response in self.stub.QueryTrades(request):
            out.extend(response.batch.trades)
        return out

    async def footprints(
        self, instrument: InstrumentId, start: int, end: int, resolution: int = 0
    ) -> list[storage_pb2.FootprintBar]:
        request = storage_pb2.QueryFootprintsRequest(
            instrument=instrument.to_proto(),
            start_time_ms=start,
            end_time_ms=end,
            resolution=resolution,  # type: ignore[arg-type]
        )
        out: list[storage_pb2.FootprintBar] = []
        async for response in self.stub.QueryFootprints(request):
            out.extend(response.bars)
        return out


@contextlib.asynccontextmanager
async def running_storage(settings: Settings) -> AsyncIterator[Running]:
    service = await start_storage_service(settings, process_metrics=False)
    channel = create_channel(f"127.0.0.1:{service.grpc.port}")
    try:
        yield Running(service, storage_grpc.StorageServiceStub(channel), settings)  # type: ignore[no-untyped-call]
    finally:
        await channel.close()
        await service.stop(grace=0.5)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_storage(storage_settings(tmp_path)) as running:
        yield running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free port (never one already running), gone after the test."""
    try:
        with private_redis_server(tmp_path) as url:
            yield url
    except RedisServerError as exc:
        pytest.fail(str(exc))


async def wait_for(condition: object, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.05)


def env_with(base: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(base)
    return env


# --- backends under the same contract: the embedded store always, MongoDB when
# MARKETDATA_TEST_MONGODB_URI is set (e.g. mongodb://127.0.0.1:27017; each test uses its own database)

MONGODB_URI = os.environ.get("MARKETDATA_TEST_MONGODB_URI", "")


def _open(kind: str, tmp_path: Path) -> Backend:
    if kind == "sqlite":
        from marketdata.storage.backends.sqlite import SqliteBackend

        return SqliteBackend(tmp_path / "contract.db")
    from marketdata.storage.backends.mongodb import MongoBackend

    return MongoBackend(MONGODB_URI, database=f"marketdata_test_{uuid.uuid4().hex[:12]}")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "mongodb",
            marks=[
                pytest.mark.mongodb,
                pytest.mark.skipif(
                    not MONGODB_URI, reason="set MARKETDATA_TEST_MONGODB_URI to run against MongoDB"
                ),
            ],
        ),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    store = _open(request.param, tmp_path)
    store.open()
    try:
        yield store
    finally:
        drop = getattr(store, "drop_database", None)
        if drop is not None:
            drop()
        store.close()


def reopen(backend: Backend, tmp_path: Path) -> Backend:
    """A second handle on the same store (a restart)."""
    if backend.name == "sqlite":
        from marketdata.storage.backends.sqlite import SqliteBackend

        again: Backend = SqliteBackend(tmp_path / "contract.db")
    else:
        from marketdata.storage.backends.mongodb import MongoBackend

        again = MongoBackend(MONGODB_URI, database=backend.database_name)  # type: ignore[attr-defined]
    again.open()
    return again


def stored_trades(backend: Backend, instrument: InstrumentId, start: int = 0, end: int = 2**62) -> list:  # type: ignore[type-arg]
    from marketdata.v1 import common_pb2

    out = []
    for chunk in backend.read_trades(instrument, start, end, None, 0, 1000):
        out.extend(common_pb2.TradeBatch.FromString(chunk.framed).trades)
    return out


def footprints(
    backend: Backend, instrument: InstrumentId, resolution: int = RES_1M
) -> list[storage_pb2.FootprintBar]:
    """The stored bars as a reader through the Store sees them (it saves deferred 1h bars first)."""
    if backend.has_deferred(instrument, 0, 2**62):
        backend.flush_deferred(NOW)
    return [
        storage_pb2.FootprintBar.FromString(b.payload)
        for b in backend.read_footprints(instrument, resolution, 0, 2**62)
    ]


def write(backend: Backend, instrument: InstrumentId, trades: list, tick: str = "0.10", now: int = NOW):  # type: ignore[no-untyped-def,type-arg]
    result = backend.write_trades([TradeWrite(instrument, trades, tick)], now)
    outcome = result.outcomes[0]
    if isinstance(outcome, InvalidBatch):
        raise outcome
    return outcome
