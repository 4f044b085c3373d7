"""Where order-flow minutes come from: storage's footprints (cached once closed), the collector's live
minutes (core/bar_sources.py decides which source owns each minute), large trades, and the feed a
failover composite followed."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import grpc

from marketdata.core.analytics.exact import volume_units
from marketdata.core.analytics.orderflow import Minute, ParsedText
from marketdata.core.analytics.profile import Grid
from marketdata.core.bar_sources import LiveTrades, MinuteBar, StorageSource
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import storage_service_pb2_grpc as storage_grpc

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# Minutes older than this behind the open minute are closed: storage has them whole (bar_sources)
CLOSED_GRACE_MS = 2 * MINUTE_MS


def minute_of(bar: MinuteBar, grid: Grid, parsed: ParsedText | None = None) -> Minute:
    """A storage or live MinuteBar as a Minute on `grid` (live trades in arrival = exchange order);
    `parsed` keeps parsed text across the bars of one read (Minute.from_footprint)."""
    if bar.trades:
        minute = Minute(bar.start_ms)
        for at, price, size, is_buy in bar.trades:
            minute.add_trade(grid, price, size, is_buy, at)
        return minute
    minute = Minute.from_footprint(
        bar.start_ms,
        grid,
        bar.rows,
        trades=bar.trade_count,
        open_=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        max_delta=bar.max_delta,
        min_delta=bar.min_delta,
        first_ms=bar.first_trade_time_ms,
        last_ms=bar.last_trade_time_ms,
        parsed=parsed,
        summed=bar.length_ms > MINUTE_MS,
    )
    if bar.length_ms > MINUTE_MS:
        minute.traded_minutes = bar.minute_range()
    return minute


class MinuteCache:
    """Closed stretches (one instrument, one grid, [start, end)) as Minutes: LRU with a TTL so late
    trades show up within it."""

    def __init__(self, entries: int, ttl_s: float) -> None:
        self.entries = entries
        self.ttl_s = ttl_s
        self._items: OrderedDict[tuple[Any, ...], tuple[float, list[Minute]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.entries > 0 and self.ttl_s > 0

    def get(self, key: tuple[Any, ...]) -> list[Minute] | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self.misses += 1
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: tuple[Any, ...], minutes: list[Minute]) -> None:
        self._items[key] = (time.monotonic() + self.ttl_s, minutes)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)


def hour_chunks(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) cut at UTC hours."""
    out = []
    t = start
    while t < end:
        nxt = min(end, t - t % HOUR_MS + HOUR_MS)
        out.append((t, nxt))
        t = nxt
    return out


@dataclass
class Loaded:
    minutes: list[Minute] = field(default_factory=list)
    includes_live: bool = False


@dataclass(frozen=True)
class LargeTradeRecord:
    instrument: InstrumentId
    trade_id: str
    time_ms: int
    price: str
    size: str
    is_buy: bool
    volume: int


class FlowData:
    def __init__(
        self,
        storage: StorageSource,
        storage_channel: grpc.aio.Channel,
        live: LiveTrades | None,
        cache: MinuteCache,
        query_max_range_ms: int,
    ) -> None:
        self.storage = storage
        self.live = live
        self.cache = cache
        self._trades = storage_grpc.StorageServiceStub(storage_channel)  # type: ignore[no-untyped-call]
        self._query_max_range_ms = max(query_max_range_ms, MINUTE_MS)

    def live_from(self, instrument: InstrumentId, now: int) -> int | None:
        return self.live.live_from(instrument, now) if self.live is not None else None

    async def minutes(
        self,
        instrument: InstrumentId,
        start: int,
        end: int,
        grid: Grid,
        now: int,
        hourly: bool = False,
        detail_from: int | None = None,
    ) -> Loaded:
        """Every minute of [start, end) with trades, each from exactly one source; with `hourly`, whole
        closed hours of storage come as one 1h bar each; with `detail_from`, so do those before it
        (see `stored`)."""
        live_from = self.live_from(instrument, now)
        stored_end = end if live_from is None else max(start, min(end, live_from))
        out = Loaded(await self.stored(instrument, start, stored_end, grid, now, hourly, detail_from))
        if live_from is not None and end > live_from:
            out.minutes += self.live_minutes(instrument, max(start, live_from), end, grid)
            out.includes_live = end > now - now % MINUTE_MS
        return out

    async def stored(
        self,
        instrument: InstrumentId,
        start: int,
        end: int,
        grid: Grid,
        now: int,
        hourly: bool = False,
        detail_from: int | None = None,
    ) -> list[Minute]:
        """Storage's minutes of [start, end) (whole closed hours as 1h bars with `hourly`); closed
        stretches through the cache. `detail_from`: the minutes before it are read for their deltas
        only (the CVD before a range, FlowQuery.detail_start), so the whole hours there come as 1h
        bars: a 1h range late in the day reads ~23 1h bars, not ~1,400 1m bars, before its own."""
        if end <= start:
            return []
        if detail_from is not None and not hourly:
            split = min(end, detail_from - detail_from % HOUR_MS)
            if split > start:
                before = await self.stored(instrument, start, split, grid, now, True)
                return before + await self.stored(instrument, split, end, grid, now)
        closed = now - now % MINUTE_MS - CLOSED_GRACE_MS
        cut = max(start, min(end, closed))
        out: list[Minute] = []
        if cut > start:
            out += await self._closed(instrument, start, cut, grid, hourly)
        if end > cut:
            out += await self._read(instrument, cut, end, grid, hourly)
        return out

    def live_minutes(self, instrument: InstrumentId, start: int, end: int, grid: Grid) -> list[Minute]:
        """The live source's minutes of [start, end) (synchronous: a consistent cut of the stream)."""
        if self.live is None or end <= start:
            return []
        return [minute_of(b, grid) for b in self.live.bars(instrument, start, end, grid.row_size)]

    async def _read(
        self, instrument: InstrumentId, start: int, end: int, grid: Grid, hourly: bool
    ) -> list[Minute]:
        """Storage's bars of [start, end) (StorageSource.read with `hourly`, else read_minutes) as
        minutes, each made as its response arrives; one read parses each repeated text once."""
        parsed = ParsedText(grid)

        def convert(bar: storage_pb2.FootprintBar, length_ms: int) -> Minute:
            return minute_of(MinuteBar.stored(instrument, bar, length_ms), grid, parsed)

        try:
            if hourly:
                return await self.storage.read(instrument, start, end, convert)
            return await self.storage.read_minutes(instrument, start, end, convert)
        except grpc.aio.AioRpcError as exc:
            if _not_stored_yet(exc):
                return []
            raise

    async def _closed(
        self, instrument: InstrumentId, start: int, end: int, grid: Grid, hourly: bool
    ) -> list[Minute]:
        if not self.cache.enabled:
            return await self._read(instrument, start, end, grid, hourly)
        chunks = hour_chunks(start, end)
        keys = [(instrument.key, a, b, grid.row_units, grid.decimals, hourly) for a, b in chunks]
        found: dict[int, list[Minute]] = {}
        for index, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is not None:
                found[index] = hit
        missing = [i for i in range(len(chunks)) if i not in found]
        if missing:
            first, last = chunks[missing[0]][0], chunks[missing[-1]][1]
            minutes = await self._read(instrument, first, last, grid, hourly)
            by_hour: dict[int, list[Minute]] = {}
            for m in minutes:  # chunks are within one UTC hour each
                by_hour.setdefault(m.start_ms - m.start_ms % HOUR_MS, []).append(m)
            for index in missing:
                a, b = chunks[index]
                found[index] = [m for m in by_hour.get(a - a % HOUR_MS, ()) if a <= m.start_ms < b]
                self.cache.put(keys[index], found[index])
        return [m for i in range(len(chunks)) for m in found[i]]

    async def large_trades(
        self, instrument: InstrumentId, start: int, end: int, min_size: int, min_text: str, now: int
    ) -> list[LargeTradeRecord]:
        """Trades of at least min_size in [start, end): storage (QueryTrades min_size) for what it owns,
        the live minutes for the rest."""
        if end <= start or not min_size:
            return []
        live_from = self.live_from(instrument, now)
        stored_end = end if live_from is None else max(start, min(end, live_from))
        out: list[LargeTradeRecord] = []
        chunk = start
        while chunk < stored_end:
            chunk_end = min(stored_end, chunk + self._query_max_range_ms)
            token = ""
            while True:
                request = storage_pb2.QueryTradesRequest(
                    instruments=[instrument.to_proto()],
                    start_time_ms=chunk,
                    end_time_ms=chunk_end,
                    min_size=min_text,
                    limit=100_000,
                    page_token=token,
                )
                token = ""
                try:
                    async for response in self._trades.QueryTrades(request):
                        for trade in response.batch.trades:
                            volume = volume_units(trade.size)
                            if volume >= min_size:  # also when storage predates min_size
                                out.append(_record(instrument, trade, volume))
                        token = response.next_page_token or token
                except grpc.aio.AioRpcError as exc:
                    if not _not_stored_yet(exc):
                        raise
                if not token:
                    break
            chunk = chunk_end
        if live_from is not None and self.live is not None and end > live_from:
            for bar in self.live.bars(instrument, max(start, live_from), end, "1"):
                for at, price, size, is_buy in bar.trades:
                    volume = volume_units(size)
                    if volume >= min_size:
                        out.append(LargeTradeRecord(instrument, "", at, price, size, is_buy, volume))
        return out


def _not_stored_yet(exc: grpc.aio.AioRpcError) -> bool:
    """Storage's answer for a collected instrument it holds nothing of yet: no data, not an error
    (requests name only collected instruments)."""
    return exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "is not stored" in (exc.details() or "")


def _record(instrument: InstrumentId, trade: common_pb2.Trade, volume: int) -> LargeTradeRecord:
    return LargeTradeRecord(
        instrument,
        trade.trade_id,
        trade.exchange_time_ms,
        trade.price,
        trade.size,
        trade.side == common_pb2.SIDE_BUY,
        volume,
    )
