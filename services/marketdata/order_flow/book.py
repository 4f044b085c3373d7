"""The order book's side of absorption: resting size per row, followed over the collector's
StreamOrderBook for instruments with a book (MARKETDATA_BOOK_INSTRUMENTS).

Book rule (docs/order-flow.md): in the open bar, heavy aggressor volume at row p is absorbed by a
refilling level when it is >= refill_ratio x the largest resting size seen at p on the passive side
during the bar (asks for aggressive buys, bids for aggressive sells) while p still shows resting size
there: more traded than was ever displayed, and the level is still standing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import grpc

from marketdata.core.analytics.exact import to_units, volume_units
from marketdata.core.analytics.orderflow import Bar, Side
from marketdata.core.analytics.orderflow_zones import heavy_rows
from marketdata.core.analytics.profile import Grid
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import order_book_pb2

log = logging.getLogger(__name__)

DEPTH = 50
INTERVAL_MS = 100


@dataclass
class BookRows:
    """Resting size per row now, and the largest seen since `reset` (per side: bids, asks)."""

    grid: Grid
    now: tuple[dict[int, int], dict[int, int]] = field(default_factory=lambda: ({}, {}))
    peak: tuple[dict[int, int], dict[int, int]] = field(default_factory=lambda: ({}, {}))
    updates: int = 0

    def apply(self, book: order_book_pb2.OrderBookSnapshot) -> None:
        grid = self.grid
        sides: list[dict[int, int]] = []
        for levels, peak in ((book.bids, self.peak[0]), (book.asks, self.peak[1])):
            rows: dict[int, int] = {}
            for level in levels:
                units = to_units(level.price, grid.decimals)
                key = units - units % grid.row_units
                rows[key] = rows.get(key, 0) + volume_units(level.size)
            for key, size in rows.items():
                if size > peak.get(key, 0):
                    peak[key] = size
            sides.append(rows)
        self.now = (sides[0], sides[1])
        self.updates += 1

    def reset(self) -> None:
        """A new bar: the peaks start again from what rests now."""
        self.peak = (dict(self.now[0]), dict(self.now[1]))


@dataclass(frozen=True)
class Refill:
    side: Side  # the absorbed aggressor side
    price: int
    volume: int
    mean_num: int
    mean_den: int
    displayed: int  # the largest resting size seen at the row on the passive side this bar
    resting: int  # resting there now


def refills(
    bar: Bar, books: Sequence[BookRows], multiple: Fraction, min_volume: int, refill_ratio: Fraction
) -> list[Refill]:
    """Heavy rows of the bar whose passive side refilled (the book rule); with several instruments,
    their books' sizes are added row by row as their trades are."""
    out: list[Refill] = []
    if not books:
        return out
    row_units = books[0].grid.row_units
    total = bar.volume
    count = (max(bar.rows) - min(bar.rows)) // row_units + 1 if bar.rows else 1
    num, den = refill_ratio.numerator, refill_ratio.denominator
    for price, side, volume in heavy_rows(bar, row_units, multiple, min_volume):
        passive = 1 if side is Side.BUY else 0  # aggressive buys lift asks, sells hit bids
        resting = sum(b.now[passive].get(price, 0) for b in books)
        displayed = sum(b.peak[passive].get(price, 0) for b in books)
        if resting > 0 and displayed > 0 and volume * den >= num * displayed:
            out.append(Refill(side, price, volume, total, count, displayed, resting))
    return out


class BookWatch:
    """StreamOrderBook subscriptions by instrument (started on first use), feeding BookRows per grid."""

    def __init__(self, channel: grpc.aio.Channel | None, with_books: Iterable[InstrumentId]) -> None:
        self._stub = (
            collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
            if channel is not None
            else None
        )
        self.with_books = set(with_books)
        self._rows: dict[InstrumentId, list[BookRows]] = {}
        self._tasks: dict[InstrumentId, asyncio.Task[None]] = {}

    def has_book(self, instrument: InstrumentId) -> bool:
        return self._stub is not None and instrument in self.with_books

    def follow(self, instrument: InstrumentId, grid: Grid) -> BookRows | None:
        """Book rows of `instrument` on `grid`, kept current from now on; None without a book."""
        if not self.has_book(instrument):
            return None
        rows = BookRows(grid)
        self._rows.setdefault(instrument, []).append(rows)
        if instrument not in self._tasks:
            self._tasks[instrument] = asyncio.create_task(
                self._run(instrument), name=f"order-flow-book-{instrument.key}"
            )
        return rows

    def forget(self, instrument: InstrumentId, rows: BookRows) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._rows[instrument].remove(rows)

    async def _run(self, instrument: InstrumentId) -> None:
        assert self._stub is not None
        delay = 0.5
        while True:
            call: Any = None
            try:
                call = self._stub.StreamOrderBook(
                    collector_pb2.StreamOrderBookRequest(
                        instrument=instrument.to_proto(), depth=DEPTH, interval_ms=INTERVAL_MS
                    )
                )
                async for response in call:
                    for rows in self._rows.get(instrument, []):
                        rows.apply(response.view.book)
                delay = 0.5
            except asyncio.CancelledError:
                if call is not None:
                    call.cancel()
                raise
            except grpc.aio.AioRpcError as exc:
                log.debug("order book unavailable", extra={"instrument": instrument.key, "error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
