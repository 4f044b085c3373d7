"""A replay exchange and a collector service on loopback, and a StreamTrades reader over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import pytest

from marketdata.collector.server import CollectorService, start_collector_service
from marketdata.core.config import Settings, load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.replay_exchange.server import ReplayHandle, running_replay_exchange
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import common_pb2

# Short timers so that reconnects, watchdogs and gap repair happen within a test's time.
FAST = {
    "MARKETDATA_BIND_HOST": "127.0.0.1",
    "MARKETDATA_COLLECTOR_PORT": "0",
    "MARKETDATA_COLLECTOR_METRICS_PORT": "0",
    "MARKETDATA_STALE_TIMEOUT_S": "1.5",
    "MARKETDATA_BYBIT_PING_INTERVAL_S": "0.4",
    "MARKETDATA_BINANCE_PING_INTERVAL_S": "0.4",
    "MARKETDATA_RECONNECT_INITIAL_S": "0.05",
    "MARKETDATA_RECONNECT_MAX_S": "0.5",
    "MARKETDATA_GAP_GRACE_S": "0.1",
    "MARKETDATA_BACKFILL_TIMEOUT_S": "10",
    "MARKETDATA_LOG_LEVEL": "WARNING",
}


def collector_settings(handle: ReplayHandle, instruments: str, **extra: str) -> Settings:
    env = dict(FAST, MARKETDATA_INSTRUMENTS=instruments)
    for name in ("BINANCE_SPOT", "BINANCE_FUTURES", "BYBIT"):
        env[f"MARKETDATA_{name}_WS_URL"] = handle.ws_url
        env[f"MARKETDATA_{name}_REST_URL"] = handle.http_url
    env.update({f"MARKETDATA_{k.upper()}": v for k, v in extra.items()})
    return load_settings(env)


@dataclass
class Received:
    """What a StreamTrades subscriber got, per instrument key, in arrival order."""

    trades: dict[str, list[common_pb2.Trade]] = field(default_factory=dict)
    batches: int = 0

    def count(self) -> int:
        return sum(len(v) for v in self.trades.values())


@dataclass
class Stack:
    exchange: ReplayHandle
    service: CollectorService
    stub: collector_grpc.CollectorServiceStub
    received: Received

    async def status(self) -> collector_pb2.GetFeedStatusResponse:
        response: collector_pb2.GetFeedStatusResponse = await self.stub.GetFeedStatus(
            collector_pb2.GetFeedStatusRequest()
        )
        return response

    def sent(self, key: str) -> list[dict[str, object]]:
        """Every trade the exchange generated for an instrument (sent on WS or withheld by a fault)."""
        tape = self.exchange.state.tapes[InstrumentId.parse(key)]
        return [t.to_control() for t in tape.all()]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}")
            await asyncio.sleep(0.05)

    def generator_done(self) -> bool:
        generator = self.exchange.state.generator
        return generator is not None and all(slot.done for slot in generator.slots.values())

    async def wait_all_delivered(self, timeout: float = 30.0) -> None:
        """Until the generator has finished and every generated trade has been delivered."""
        await self.wait_for(self.generator_done, timeout, "the generator to finish")
        keys = [i.key for i in self.service.collector.instruments]
        await self.wait_for(
            lambda: all(len(self.received.trades.get(k, [])) >= len(self.sent(k)) for k in keys),
            timeout,
            "every generated trade to be delivered",
        )
        await asyncio.sleep(0.3)  # anything more (a duplicate) would arrive now


@contextlib.asynccontextmanager
async def running_stack(replay: ReplayConfig, instruments: str, **settings: str) -> AsyncIterator[Stack]:
    async with running_replay_exchange(replay) as exchange:
        generator = exchange.state.generator
        if generator is not None:
            generator.paused = True  # start trading only once our subscriber is attached
        service = await start_collector_service(
            collector_settings(exchange, instruments, **settings), process_metrics=False
        )
        channel = create_channel(f"127.0.0.1:{service.grpc.port}")
        stub = collector_grpc.CollectorServiceStub(channel)
        received = Received()
        stream = stub.StreamTrades(collector_pb2.StreamTradesRequest())

        async def read() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for response in stream:
                    key = InstrumentId.from_proto(response.batch.instrument).key
                    received.trades.setdefault(key, []).extend(response.batch.trades)
                    received.batches += 1

        reader = asyncio.create_task(read())
        stack = Stack(exchange, service, stub, received)
        try:
            await stack.wait_for(lambda: bool(service.collector.bus._subscribers), 5, "the subscriber")
            if generator is not None:
                generator.paused = False
            yield stack
        finally:
            stream.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await channel.close()
            await service.stop(grace=0.5)


def assert_exactly_sent(stack: Stack, key: str) -> list[common_pb2.Trade]:
    """Every generated trade arrived once, in order, with the exchange's exact price, size and side."""
    sent = stack.sent(key)
    got = stack.received.trades.get(key, [])
    assert [t.trade_id for t in got] == [str(s["id"]) for s in sent], f"{key}: ids differ"
    sides = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}
    assert [(t.price, t.size, sides[t.side]) for t in got] == [
        (s["price"], s["size"], s["side"]) for s in sent
    ]
    return got


@pytest.fixture
def fast_env() -> dict[str, str]:
    return dict(FAST)
