"""Absorption by the book rule: heavy aggressor volume at a level that keeps refilling."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

from marketdata.core.analytics.exact import volume_units
from marketdata.core.analytics.orderflow import Bar, BarBuilder, Side
from marketdata.core.analytics.profile import Grid
from marketdata.core.instruments import InstrumentId
from marketdata.order_flow.book import BookRows, BookWatch, refills
from marketdata.v1 import common_pb2, order_book_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from tests.order_flow.conftest import BTC, Stack, attach_live
from tests.storage.conftest import trade

GRID = Grid.of("0.10")


def book(bids: dict[str, str], asks: dict[str, str]) -> order_book_pb2.OrderBookSnapshot:
    return order_book_pb2.OrderBookSnapshot(
        bids=[order_book_pb2.PriceLevel(price=p, size=s) for p, s in bids.items()],
        asks=[order_book_pb2.PriceLevel(price=p, size=s) for p, s in asks.items()],
    )


def heavy_buying_bar() -> Bar:
    builder = BarBuilder(Bar(0, 60_000), GRID, Fraction(3), 0)
    for n, price in enumerate(["99.90", "100.00", "100.10", "100.20"]):
        builder.add_trade(price, "1", n % 2 == 0, n)
    builder.add_trade("100.10", "20", True, 10)  # heavy buying at 100.10
    return builder.bar


def test_refill_fires_only_while_the_level_stands_and_was_outtraded() -> None:
    rows = BookRows(GRID)
    rows.apply(book({"100.00": "3"}, {"100.10": "5", "100.20": "9"}))
    rows.apply(book({"100.00": "3"}, {"100.10": "4"}))  # traded down, refilled: the peak stays 5
    bar = heavy_buying_bar()
    (found,) = refills(bar, [rows], Fraction(3), 0, Fraction(1))
    assert (found.side, found.price, found.volume) == (Side.BUY, GRID.row_of("100.10"), volume_units("21"))
    assert (found.displayed, found.resting) == (volume_units("5"), volume_units("4"))
    # the level was taken out: no absorption by the book rule
    rows.apply(book({"100.00": "3"}, {"100.20": "9"}))
    assert refills(bar, [rows], Fraction(3), 0, Fraction(1)) == []
    # more traded than shown is required (refill_ratio 5: 21 < 5 x 5)
    rows.apply(book({}, {"100.10": "5"}))
    assert refills(bar, [rows], Fraction(3), 0, Fraction(5)) == []
    # a new bar starts the peaks from what rests now
    rows.reset()
    assert rows.peak[1] == {GRID.row_of("100.10"): volume_units("5")}


class _Books(BookWatch):
    """A book for BTC fed by the test instead of StreamOrderBook."""

    def __init__(self) -> None:
        super().__init__(None, [BTC])
        self.rows: BookRows | None = None

    def has_book(self, instrument: InstrumentId) -> bool:
        return instrument == BTC

    def follow(self, instrument: InstrumentId, grid: Grid) -> BookRows | None:
        self.rows = BookRows(grid)
        return self.rows


async def test_stream_reports_book_refill_absorption(stack: Stack) -> None:
    now = int(time.time() * 1000)
    if now % 60_000 > 50_000:
        await asyncio.sleep((60_000 - now % 60_000) / 1000 + 0.1)
        now = int(time.time() * 1000)
    live = attach_live(stack, now - now % 60_000 - 300_000)
    books = _Books()
    assert stack.service.servicer.hub is not None
    stack.service.servicer.hub.books = books
    stream = stack.stub.StreamOrderFlow(
        pb.StreamOrderFlowRequest(instruments=[BTC.to_proto()], timeframe="1m")
    )
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.snapshot
    assert books.rows is not None
    books.rows.apply(book({"100.00": "3"}, {"100.10": "5"}))
    at = int(time.time() * 1000)
    trades = [
        trade(n + 1, p, "1", n % 2 == 0, at) for n, p in enumerate(["99.90", "100.00", "100.10", "100.20"])
    ]
    trades.append(trade(9, "100.10", "20", True, at))
    live.on_batch(common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=trades))
    update = await asyncio.wait_for(stream.read(), 5)
    zones = [z for z in update.new_zones if z.kind == pb.ZONE_KIND_ABSORPTION]
    assert [(z.price_low, z.price_high, z.side) for z in zones] == [("100.10", "100.20", common_pb2.SIDE_BUY)]
    evidence = zones[0].absorption
    assert (evidence.rule, evidence.order_book_used) == (pb.ABSORPTION_RULE_BOOK_REFILL, True)
    assert (evidence.volume, evidence.displayed_size, evidence.resting_size) == ("21", "5", "5")
    stream.cancel()
