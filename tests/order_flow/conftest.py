"""Order flow under test: real storage (embedded SQLite) and the order-flow service in-process on
loopback; a live source fed batches directly, as the collector's stream would."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdata.core.bar_sources import _LiveBook
from marketdata.core.config import load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.order_flow.server import OrderFlowService, start_order_flow_service
from marketdata.order_flow.stream import FlowLiveTrades, StreamHub
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from marketdata.v1 import order_flow_service_pb2_grpc as pb_grpc
from tests.order_flow.oracle import Tick
from tests.storage.conftest import Running, running_storage, storage_env

BTC = InstrumentId.parse("binance-futures:BTCUSDT")
BTC_BYBIT = InstrumentId.parse("bybit-linear:BTCUSDT")
TICKS = {BTC: "0.10", BTC_BYBIT: "0.10"}
MIN = 60_000


@dataclass
class Stack:
    storage: Running
    service: OrderFlowService
    stub: pb_grpc.OrderFlowServiceStub


@contextlib.asynccontextmanager
async def running_flow(tmp_path: Path, **extra: str) -> AsyncIterator[Stack]:
    env = storage_env(
        tmp_path,
        order_flow_port="0",
        order_flow_metrics_port="0",
        instruments=f"{BTC.key},{BTC_BYBIT.key}",
        **extra,
    )
    async with running_storage(load_settings(env)) as storage:
        env["MARKETDATA_STORAGE_ADDR"] = storage.address
        settings = load_settings(env)
        service = await start_order_flow_service(
            settings, process_metrics=False, tick_sizes=TICKS, live=False
        )
        channel = create_channel(f"127.0.0.1:{service.grpc.port}")
        try:
            yield Stack(storage, service, pb_grpc.OrderFlowServiceStub(channel))  # type: ignore[no-untyped-call]
        finally:
            await channel.close()
            await service.stop(grace=0.5)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_flow(tmp_path) as running:
        yield running


class _Idle:
    """No channel needed: the tests feed batches to on_batch as the stream would."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError("not used")


async def _no_gaps(timeout_s: float = 1.0) -> list[common_pb2.TradeGap]:
    return []


def attach_live(stack: Stack, continuous_from: int) -> FlowLiveTrades:
    """A connected live source whose subscription is whole from `continuous_from`, wired into the
    running service (history reads, coverage and the stream hub)."""
    live = FlowLiveTrades.__new__(FlowLiveTrades)
    live._stub = _Idle()  # type: ignore[assignment]
    live._instruments = [BTC, BTC_BYBIT]
    live._books = {BTC: _LiveBook(), BTC_BYBIT: _LiveBook()}
    for book in live._books.values():
        book.continuous_from = continuous_from
    live._task = None
    live.connected = True
    live.trades_seen = 0
    live.listeners = []
    live.feed_gaps = _no_gaps  # type: ignore[method-assign]
    servicer = stack.service.servicer
    servicer.data.live = live
    servicer.coverage.live = live
    servicer.hub = StreamHub(servicer.data, live, servicer.composites, 1000)
    stack.service.live = live
    return live


def request(
    instruments: Iterable[InstrumentId], start: int, end: int, timeframe: str = "1m", **params: Any
) -> pb.GetOrderFlowRequest:
    return pb.GetOrderFlowRequest(
        instruments=[i.to_proto() for i in instruments],
        timeframe=timeframe,
        start_time_ms=start,
        end_time_ms=end,
        parameters=pb.OrderFlowParameters(**params),
    )


def ticks(trades: Iterable[common_pb2.Trade]) -> list[Tick]:
    return [
        (t.exchange_time_ms, Decimal(t.price), Decimal(t.size), t.side == common_pb2.SIDE_BUY) for t in trades
    ]
