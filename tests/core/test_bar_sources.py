"""The live minutes the analytics services hold (LiveTrades): deduplicated trades by minute, kept where a
full garbage collection does not walk them (such a collection stops the service's event loop)."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from marketdata.core.bar_sources import LiveTrades
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2

BTC = InstrumentId.parse("binance-futures:BTCUSDT")
MINUTE = 60_000


def this_minute() -> int:  # the live minutes are the last few: tests write around now
    now = int(time.time() * 1000)
    return now - now % MINUTE


def batch(first: int, count: int, start_ms: int, spacing_ms: int) -> common_pb2.TradeBatch:
    return common_pb2.TradeBatch(
        instrument=BTC.to_proto(),
        trades=[
            common_pb2.Trade(
                trade_id=str(first + n),
                price=f"{65000 + n % 40}.10",
                size="0.012",
                side=common_pb2.SIDE_BUY if n % 3 else common_pb2.SIDE_SELL,
                exchange_time_ms=start_ms + n * spacing_ms,
            )
            for n in range(count)
        ],
    )


@pytest.fixture
async def live() -> AsyncIterator[LiveTrades]:
    # batches are handed in as the subscription would; the channel is never used (nothing starts)
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        yield LiveTrades(channel, [BTC])


async def test_minutes_hold_each_trade_once_in_arrival_order(live: LiveTrades) -> None:
    t0 = this_minute()
    first = batch(1, 1000, t0 - 500 * 20, spacing_ms=20)  # 500 trades in each of two minutes
    resent = batch(991, 20, t0 + 490 * 20, spacing_ms=20)  # ten already held, ten new
    live.on_batch(first)
    live.on_batch(resent)
    bars = live.bars(BTC, 0, 2**62, "0.10")
    assert [(b.start_ms, b.trade_count) for b in bars] == [(t0 - MINUTE, 500), (t0, 510)]
    expected = [*first.trades, *resent.trades[10:]]
    held = [trade for bar in bars for trade in bar.trades]
    assert held == [(t.exchange_time_ms, t.price, t.size, t.side == common_pb2.SIDE_BUY) for t in expected]


def walked() -> int:
    """What a full collection visits: every tracked object's references."""
    return sum(len(gc.get_referents(o)) for o in gc.get_objects())


async def test_a_full_collection_does_not_walk_the_live_trades(live: LiveTrades) -> None:
    t0 = this_minute()
    batches = [batch(1 + n * 5_000, 5_000, t0 + n * 2_000, spacing_ms=0) for n in range(20)]
    gc.collect()
    before = walked()
    for b in batches:
        live.on_batch(b)
    for _ in range(2):  # the first collections after them may walk some of them once; no later one
        gc.collect()
    grown = walked() - before
    assert sum(b.trade_count for b in live.bars(BTC, 0, 2**62, "0.10")) == 100_000
    assert grown < 1_000, f"a full collection visits {grown} more references for 100,000 live trades"
