"""Where analytics read bars from: storage's footprint bars, and the collector's live trades.

Every minute of a range comes from exactly one source, so nothing is counted twice at the seam:
the live source owns a minute when its subscription to the instrument was unbroken from before that
minute's start and the minute is among the last LIVE_MINUTES (the open minute and the one before it,
which storage may still be writing); storage owns every other minute.

Storage keeps 1h bars beside the 1m bars, each always the merge of its hour's 1m bars (same
transaction), so a range reads one 1h bar for every whole hour inside it that has closed, and 1m bars
only at its edges: a 30-day range is ~720 bars instead of ~43,200, with identical results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, Protocol, TypeVar

import grpc

from marketdata.core.analytics.exact import to_units, volume_units
from marketdata.core.analytics.profile import Grid, Histogram, VolumeUnit
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import common_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import storage_service_pb2_grpc as storage_grpc

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
LIVE_MINUTES = 2
MAX_RUN_QUERIES = 4  # StorageSource.bars: hours without a 1h bar read one query per run up to this
RES_1M = storage_pb2.FOOTPRINT_RESOLUTION_1M
RES_1H = storage_pb2.FOOTPRINT_RESOLUTION_1H
# a stored row as (price, buy, sell) text, in one C call per row (30 days of 1h bars hold ~95k rows)
_ROW_TEXTS = attrgetter("price", "buy_volume", "sell_volume")


class Timed(Protocol):
    @property
    def start_ms(self) -> int: ...


BarT = TypeVar("BarT", bound=Timed)
# what a reader makes of one stored bar and its length in ms (StorageSource.read)
Convert = Callable[[storage_pb2.FootprintBar, int], BarT]


def _start(bar: Timed) -> int:
    return bar.start_ms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def traded_minutes(start_ms: int, length_ms: int, first_trade_ms: int, last_trade_ms: int) -> range:
    """Starts of the minutes holding trades of a bar. A 1h bar does not say which of its minutes traded:
    the minutes from its first trade's to its last trade's (exact for an instrument that trades every
    minute, an upper bound otherwise)."""
    if length_ms <= MINUTE_MS or not first_trade_ms:
        return range(start_ms, start_ms + 1)
    first = first_trade_ms - first_trade_ms % MINUTE_MS
    return range(first, last_trade_ms - last_trade_ms % MINUTE_MS + 1, MINUTE_MS)


@dataclass
class MinuteBar:
    """One instrument's footprint over one bar (1m, or 1h) from either source.

    From storage: `rows` plus the bar's summary (exact decimal strings as storage sent them; the price
    fields are "" for bars stored before storage kept them: unknown). From the live stream: `trades`,
    (exchange_time_ms, price, size, is_buy) in arrival order (the exchange's order), no summary."""

    instrument: InstrumentId
    start_ms: int
    length_ms: int
    row_size: str
    # (price, buy, sell) as exact decimal strings (storage) ...
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    # ... or raw trades (exchange_time_ms, price, size, is_buy) from the live stream
    trades: list[tuple[int, str, str, bool]] = field(default_factory=list)
    live: bool = False
    trade_count: int = 0
    buy_volume: str = ""
    sell_volume: str = ""
    first_trade_time_ms: int = 0
    last_trade_time_ms: int = 0
    open: str = ""
    high: str = ""
    low: str = ""
    close: str = ""
    max_delta: str = ""
    min_delta: str = ""

    @classmethod
    def stored(cls, instrument: InstrumentId, bar: storage_pb2.FootprintBar, length_ms: int) -> MinuteBar:
        """One of storage's footprint bars (QueryFootprints), `length_ms` long."""
        return cls(
            instrument,
            bar.start_time_ms,
            length_ms,
            bar.row_size,
            list(map(_ROW_TEXTS, bar.rows)),
            trade_count=bar.trades,
            buy_volume=bar.buy_volume,
            sell_volume=bar.sell_volume,
            first_trade_time_ms=bar.first_trade_time_ms,
            last_trade_time_ms=bar.last_trade_time_ms,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            max_delta=bar.max_delta,
            min_delta=bar.min_delta,
        )

    def minutes(self) -> list[int]:
        """Starts of the minutes holding trades (see traded_minutes)."""
        return list(self.minute_range())

    def minute_range(self) -> range:
        """minutes() as a range (what a cached 1h bar keeps: no list of 60 integers)."""
        return traded_minutes(
            self.start_ms, self.length_ms, self.first_trade_time_ms, self.last_trade_time_ms
        )

    def add_to(self, histogram: Histogram, unit: VolumeUnit) -> None:
        if self.rows:
            histogram.add_footprint_rows(self.row_size, self.rows, unit)
        grid = histogram.grid
        quote = unit is VolumeUnit.QUOTE
        shift = histogram.volume_scale - 18
        for _, price, size, is_buy in self.trades:
            units = to_units(price, grid.decimals)
            volume = volume_units(size)
            if quote:
                volume *= to_units(price, shift)
            histogram.add(units, volume if is_buy else 0, 0 if is_buy else volume)


class StorageSource:
    """Footprint bars from the storage service (QueryFootprints), split into chunks storage accepts."""

    def __init__(self, channel: grpc.aio.Channel, max_range_ms: int) -> None:
        self._stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
        self._max_range_ms = max(max_range_ms, HOUR_MS)

    async def bars(
        self, instrument: InstrumentId, start: int, end: int, *, closed_before: int | None = None
    ) -> list[MinuteBar]:
        """The footprint of [start, end) as bars, oldest first: one 1h bar per whole hour inside the
        range that ended by `closed_before` (default: LIVE_MINUTES before now), 1m bars elsewhere.
        An hour without a 1h bar is read from its 1m bars (a store still being migrated)."""
        return await self.read(instrument, start, end, partial(MinuteBar.stored, instrument), closed_before)

    async def minute_bars(self, instrument: InstrumentId, start: int, end: int) -> list[MinuteBar]:
        """1m bars of [start, end), for readers that need minute resolution (order flow below 1h);
        hours whose 1m bars retention removed come as their 1h bar."""
        return await self.read_minutes(instrument, start, end, partial(MinuteBar.stored, instrument))

    async def read(
        self,
        instrument: InstrumentId,
        start: int,
        end: int,
        convert: Convert[BarT],
        closed_before: int | None = None,
    ) -> list[BarT]:
        """bars(), each stored bar handed to convert(bar, length_ms) as its response arrives: a reader
        that turns bars into its own form (order flow's exact minutes) does so while their text is
        fresh, and keeps nothing else of them."""
        horizon = (now_ms() - LIVE_MINUTES * MINUTE_MS) if closed_before is None else closed_before
        first_hour = start + (-start) % HOUR_MS
        last_hour = min(end - end % HOUR_MS, horizon - horizon % HOUR_MS)
        if last_hour <= first_hour:
            return await self._query(instrument, start, end, RES_1M, convert)
        hourly = await self._query(instrument, first_hour, last_hour, RES_1H, convert)
        held = {b.start_ms for b in hourly}
        runs: list[tuple[int, int]] = []  # runs of hours without a 1h bar (no trades, or not migrated)
        run_start: int | None = None
        for hour in range(first_hour, last_hour + HOUR_MS, HOUR_MS):
            if hour < last_hour and hour not in held:
                run_start = hour if run_start is None else run_start
            elif run_start is not None:
                runs.append((run_start, hour))
                run_start = None
        out = hourly
        for a, b in [(start, first_hour), (last_hour, end), *runs[:MAX_RUN_QUERIES]]:
            if b > a:
                out += await self._query(instrument, a, b, RES_1M, convert)
        if len(runs) > MAX_RUN_QUERIES:  # a sparse instrument: one query for the rest, minus held hours

            def not_held(bar_start: int) -> bool:
                return bar_start - bar_start % HOUR_MS not in held

            a, b = runs[MAX_RUN_QUERIES][0], runs[-1][1]
            out += await self._query(instrument, a, b, RES_1M, convert, not_held)
        return sorted(out, key=_start)

    async def read_minutes(
        self, instrument: InstrumentId, start: int, end: int, convert: Convert[BarT]
    ) -> list[BarT]:
        """minute_bars(), each stored bar handed to convert(bar, length_ms) as in read()."""
        minute = await self._query(instrument, start, end, RES_1M, convert)
        first_hour, last_hour = start + (-start) % HOUR_MS, end - end % HOUR_MS
        if last_hour <= first_hour:
            return minute
        with_minutes = {b.start_ms - b.start_ms % HOUR_MS for b in minute}

        def rolled_up(bar_start: int) -> bool:
            return bar_start not in with_minutes

        hourly = await self._query(instrument, first_hour, last_hour, RES_1H, convert, rolled_up)
        return sorted(minute + hourly, key=_start)

    async def _query(
        self,
        instrument: InstrumentId,
        start: int,
        end: int,
        resolution: int,
        convert: Convert[BarT],
        wanted: Callable[[int], bool] | None = None,
    ) -> list[BarT]:
        """The stored bars of [start, end) at `resolution` (those whose start is `wanted`), converted."""
        length = MINUTE_MS if resolution == RES_1M else HOUR_MS
        out: list[BarT] = []
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(end, chunk_start + self._max_range_ms)
            request = storage_pb2.QueryFootprintsRequest(
                instrument=instrument.to_proto(),
                start_time_ms=chunk_start,
                end_time_ms=chunk_end,
                resolution=resolution,  # type: ignore[arg-type]
            )
            async for response in self._stub.QueryFootprints(request):
                if wanted is None:
                    out += [convert(bar, length) for bar in response.bars]
                else:
                    out += [convert(bar, length) for bar in response.bars if wanted(bar.start_time_ms)]
            chunk_start = chunk_end
        return out

    async def stored_tick_sizes(self, instruments: Iterable[InstrumentId]) -> dict[InstrumentId, str]:
        """Row size of each instrument's newest stored 1m bar (storage writes bars at the tick size)."""
        wanted = list(instruments)
        response = await self._stub.GetStorageStats(
            storage_pb2.GetStorageStatsRequest(instruments=[i.to_proto() for i in wanted])
        )
        out: dict[InstrumentId, str] = {}
        for stat in response.collections:
            if stat.collection != "footprints_1m" or not stat.count:
                continue
            instrument = InstrumentId.from_proto(stat.instrument)
            newest = stat.newest_time_ms
            bars = await self._query(
                instrument, newest, newest + MINUTE_MS, RES_1M, partial(MinuteBar.stored, instrument)
            )
            if bars:
                out[instrument] = bars[0].row_size
        return out

    async def oldest_bar_ms(self, instruments: Iterable[InstrumentId]) -> dict[InstrumentId, int]:
        """Oldest stored footprint (1m or 1h) per instrument; instruments without any are left out."""
        wanted = list(instruments)
        response = await self._stub.GetStorageStats(
            storage_pb2.GetStorageStatsRequest(instruments=[i.to_proto() for i in wanted])
        )
        out: dict[InstrumentId, int] = {}
        for stat in response.collections:
            if stat.collection not in ("footprints_1m", "footprints_1h") or not stat.count:
                continue
            instrument = InstrumentId.from_proto(stat.instrument)
            oldest = stat.oldest_time_ms
            out[instrument] = min(out.get(instrument, oldest), oldest)
        return out


LiveTrade = tuple[int, str, str, bool]  # (exchange_time_ms, price, size, is_buy)


class _LiveBook:
    """Trades of one instrument by minute, for the last few minutes, deduplicated by trade id; each
    minute's trades as (exchange_time_ms, price, size, is_buy) in arrival order.

    Held so that the garbage collector need not walk them: a full collection walks every tracked
    container's items and stops the event loop meanwhile (a 47 ms pause in an analytics service at
    10k trades/s, when a minute's trades sat in one list and their ids in a set). A dict of str keys
    and None values stays untracked, and so does a tuple of tuples of atoms after its first collection;
    a minute is then a short list of per-batch tuples.
    """

    __slots__ = ("continuous_from", "ids", "minutes")

    def __init__(self) -> None:
        self.continuous_from: int | None = None  # first minute the subscription saw whole
        self.minutes: dict[int, list[tuple[LiveTrade, ...]]] = {}
        self.ids: dict[int, dict[str, None]] = {}

    def add(self, trades: Iterable[common_pb2.Trade]) -> tuple[list[LiveTrade], list[str]]:
        """Take a batch; the trades new to the book and their ids, in order (the minute's ids and
        chunks are looked up once per run of one minute)."""
        current = -1
        ids: dict[str, None] = {}
        fresh: list[LiveTrade] = []
        fresh_ids: list[str] = []
        start = 0  # where the current minute's run begins in `fresh`
        chunks: list[tuple[LiveTrade, ...]] = []
        append, append_id = fresh.append, fresh_ids.append
        buy = common_pb2.SIDE_BUY
        for trade in trades:
            t = trade.exchange_time_ms
            minute = t - t % MINUTE_MS
            if minute != current:
                if len(fresh) > start:
                    chunks.append(tuple(fresh[start:]))
                    start = len(fresh)
                current = minute
                ids = self.ids.setdefault(minute, {})
                chunks = self.minutes.setdefault(minute, [])
            trade_id = trade.trade_id
            if trade_id in ids:
                continue
            ids[trade_id] = None
            append((t, trade.price, trade.size, trade.side == buy))
            append_id(trade_id)
        if len(fresh) > start:
            chunks.append(tuple(fresh[start:]))
        return fresh, fresh_ids

    def trades(self, minute: int) -> list[LiveTrade]:
        return [trade for chunk in self.minutes.get(minute, ()) for trade in chunk]

    def prune(self, oldest_kept: int) -> None:
        for minute in [m for m in self.minutes if m < oldest_kept]:
            del self.minutes[minute]
            self.ids.pop(minute, None)


class LiveTrades:
    """A StreamTrades subscription to the collector keeping the last LIVE_MINUTES minutes per instrument.

    Cost per trade: one dict lookup, one set insert and one list append (no decimal parsing until a
    profile asks for the minute). Bars keep each trade's exchange time and arrival order, so consumers
    (order flow) can derive open/high/low/close and intrabar delta from them.
    """

    def __init__(self, channel: grpc.aio.Channel, instruments: Iterable[InstrumentId]) -> None:
        self._stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
        self._instruments = list(dict.fromkeys(instruments))
        self._books: dict[InstrumentId, _LiveBook] = {i: _LiveBook() for i in self._instruments}
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.trades_seen = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="volume-profile-live")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.2
        while True:
            call: Any = None
            try:
                call = self._stub.StreamTrades(
                    collector_pb2.StreamTradesRequest(instruments=[i.to_proto() for i in self._instruments])
                )
                await call.wait_for_connection()
                started = now_ms()
                # a minute is whole only if it began after the subscription was up
                first_whole = started - started % MINUTE_MS + MINUTE_MS
                for book in self._books.values():
                    book.continuous_from = first_whole
                self.connected = True
                delay = 0.2
                async for response in call:
                    self.on_batch(response.batch)
            except asyncio.CancelledError:
                if call is not None:
                    call.cancel()
                raise
            except Exception as exc:
                log.warning("live trades unavailable; profiles use storage only", extra={"error": str(exc)})
            self.connected = False
            for book in self._books.values():
                book.continuous_from = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def on_batch(self, batch: common_pb2.TradeBatch) -> InstrumentId | None:
        """Take a batch; returns its instrument (None when unreadable), for subclasses."""
        try:
            instrument = InstrumentId.from_proto(batch.instrument)
        except ValueError:
            return None
        book = self._books.get(instrument)
        if book is None:
            return instrument
        fresh, ids = book.add(batch.trades)
        self.trades_seen += len(batch.trades)
        current = now_ms()
        book.prune(current - current % MINUTE_MS - (LIVE_MINUTES + 1) * MINUTE_MS)
        if fresh:
            self.on_trades(instrument, fresh, ids)
        return instrument

    def on_trades(self, instrument: InstrumentId, trades: list[LiveTrade], ids: list[str]) -> None:
        """The trades of a batch new to the live minutes (repeats dropped), and their ids: for
        subclasses that fold them as they come."""

    async def feed_gaps(self, timeout_s: float = 1.0) -> list[common_pb2.TradeGap]:
        """The collector's recent trade gaps that are not repaired (best effort: [] when unreachable)."""
        try:
            response = await self._stub.GetFeedStatus(collector_pb2.GetFeedStatusRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.debug("feed status unavailable", extra={"error": str(exc)})
            return []
        return [
            gap
            for feed in response.feeds
            for gap in feed.recent_gaps
            if gap.state != common_pb2.GAP_STATE_REPAIRED
        ]

    def live_from(self, instrument: InstrumentId, now: int) -> int | None:
        """The first minute this source owns for `instrument` (None: it owns none)."""
        book = self._books.get(instrument)
        if book is None or book.continuous_from is None or not self.connected:
            return None
        window = now - now % MINUTE_MS - (LIVE_MINUTES - 1) * MINUTE_MS
        return max(window, book.continuous_from)

    def bars(self, instrument: InstrumentId, start: int, end: int, row_size: str) -> list[MinuteBar]:
        book = self._books[instrument]
        out: list[MinuteBar] = []
        for minute in sorted(book.minutes):
            trades = book.trades(minute) if start <= minute < end else []
            if trades:
                out.append(
                    MinuteBar(
                        instrument,
                        minute,
                        MINUTE_MS,
                        row_size,
                        trades=trades,
                        live=True,
                        trade_count=len(trades),
                    )
                )
        return out

    def wants(self, instrument: InstrumentId) -> bool:
        return instrument in self._books


def build_histogram(bars: Iterable[MinuteBar], grid: Grid, unit: VolumeUnit, volume_scale: int) -> Histogram:
    histogram = Histogram(grid, volume_scale)
    for bar in bars:
        bar.add_to(histogram, unit)
    return histogram
