"""StreamOrderFlow: one producer per subscription key folds the collector's trade batches into the
current bar and publishes an update after each batch; subscribers share it and resume by cursor.

A producer starts from storage (minutes the live source does not own, and the anchor's earlier
minutes for the CVD) plus the live source's minutes, read in the same synchronous step in which it
starts listening, so no trade is counted twice or missed. Afterwards it folds every batch itself.
A bar closes when the first trade of a later bar arrives (exchange time).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from marketdata.core.analytics.exact import to_units, volume_units
from marketdata.core.analytics.orderflow import (
    MINUTE_MS,
    Bar,
    BarBuilder,
    Imbalance,
    Side,
    StackedZone,
    merge_bar,
    stacked_zones,
)
from marketdata.core.bar_sources import LiveTrade, LiveTrades, now_ms
from marketdata.core.composite import CompositeResolver, CompositeUnavailable
from marketdata.core.instruments import InstrumentId
from marketdata.order_flow.book import BookRows, BookWatch, refills
from marketdata.order_flow.compute import (
    analyse,
    bar_proto,
    build_bars,
    imbalance_proto,
    large_trade_proto,
    refill_proto,
    stacked_proto,
)
from marketdata.order_flow.data import FlowData, LargeTradeRecord, minute_of
from marketdata.order_flow.query import FlowQuery, echo
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_flow_service_pb2 as pb

log = logging.getLogger(__name__)

LINGER_S = 60.0  # a producer outlives its last subscriber this long, so a reconnect can resume
QUEUE_SIZE = 10_000
EPOCH = os.urandom(4).hex()  # distinguishes this service instance's cursors


Listener = Callable[[InstrumentId, list[LiveTrade], list[str]], None]


class FlowLiveTrades(LiveTrades):
    """LiveTrades that also hands each batch's new trades to listeners, right after taking them in
    (as the live minutes hold them: parsed once, repeats dropped, so streams and queries agree)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listeners: list[Listener] = []

    def on_trades(self, instrument: InstrumentId, trades: list[LiveTrade], ids: list[str]) -> None:
        for listener in list(self.listeners):
            try:
                listener(instrument, trades, ids)
            except Exception:
                log.exception("order-flow stream update failed")


@functools.lru_cache(maxsize=1024)  # every update's cursor names its key: hash each key once
def key_hash(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def cursor_of(key: str, sequence: int) -> str:
    return f"{EPOCH}-{key_hash(key)}-{sequence}"


def parse_cursor(cursor: str, key: str) -> int | None:
    """The sequence a cursor points at, or None when it is from another instance or key."""
    parts = cursor.split("-")
    if len(parts) != 3 or parts[0] != EPOCH or parts[1] != key_hash(key) or not parts[2].isdigit():
        return None
    return int(parts[2])


@dataclass
class _State:
    """The current bar under construction, and what of it was announced."""

    builder: BarBuilder
    imbalances: set[tuple[int, str]] = field(default_factory=set)
    zones: set[tuple[Any, ...]] = field(default_factory=set)
    current_zones: list[pb.Zone] = field(default_factory=list)
    # How many of current_zones are stacked zones (refills announced since follow them), and whether
    # they are out of date. Rebuilding every stacked zone of the bar after each batch cost most of the
    # stream's CPU at 10k trades/s (a sort of all the bar's imbalances per update); now a batch only
    # looks at the runs of imbalanced rows around the rows that became or stopped being imbalanced
    # (the only places a new zone can appear) and current_zones is rebuilt when a full update or a
    # snapshot shows it.
    stacked: int = 0
    stale: bool = False
    imbalance_keys: set[tuple[int, Side]] = field(default_factory=set)

    @property
    def bar(self) -> Bar:
        return self.builder.bar


class Producer:
    def __init__(
        self,
        q: FlowQuery,
        data: FlowData,
        live: FlowLiveTrades,
        composites: CompositeResolver,
        buffer_size: int,
        on_update: Callable[[], None],
        books: BookWatch | None = None,
    ) -> None:
        self.q = q
        self.book_watch = books
        self.books: dict[InstrumentId, BookRows] = {}
        self.key = q.key
        self.data = data
        self.live = live
        self.composites = composites
        self.buffer: deque[pb.StreamOrderFlowResponse] = deque(maxlen=buffer_size)
        self.sequence = 0
        self.subscribers: set[asyncio.Queue[pb.StreamOrderFlowResponse | None]] = set()
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self.deltas: dict[int, int] = {}  # minute start -> delta, from the anchor on
        self.history: deque[Bar] = deque(maxlen=self._history_bars(q))
        self.emitted: set[tuple[Any, ...]] = set()
        self.last_ids: dict[str, str] = {}
        # composite -> the feed it follows now (refreshed every second) and the collector's Failover
        self.selected: dict[str, InstrumentId | None] = {}
        self.failovers: dict[str, collector_pb2.Failover] = {}
        self._switched = False
        self._refresher: asyncio.Task[None] | None = None
        self.state = self._new_state(Bar(q.start, q.end))
        self._cvd_before: tuple[int, int] | None = None  # (anchor, deltas in [anchor, bar start))
        self.linger: asyncio.TimerHandle | None = None
        self.large_trades = 0
        self.large_volume = 0
        self._on_update = on_update
        self._traded: set[str] = set()  # prices traded since the last update (zones look around them)

    @staticmethod
    def _history_bars(q: FlowQuery) -> int:
        return 2 * (q.pivot_left + q.pivot_right + 1) + q.absorption_window + 1

    def followed(self) -> list[InstrumentId]:
        out = list(self.q.instruments)
        for key in self.q.composites:
            selected = self.selected.get(key)
            if selected is not None and selected not in out:
                out.append(selected)
        return out

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException as exc:
            self.failed = exc
            raise
        finally:
            self.ready.set()

    async def _start(self) -> None:
        q = self.q
        if q.composites:
            await self.composites.resolve(q.composites, q.start, q.end)  # names bad keys
            await self._refresh()
            self._switched = False
            self._refresher = asyncio.create_task(self._refresh_forever(), name="order-flow-composites")
        now = now_ms()
        size = q.size_ms
        start = now - now % size
        q.start, q.end = start, start + size
        instruments = self.followed()
        live_from = {i: self.data.live_from(i, now) for i in instruments}
        history_start = start - self.history.maxlen * size if self.history.maxlen else start
        data_start = min(history_start, q.anchor_start(history_start + size - MINUTE_MS))
        stored = await asyncio.gather(
            *(
                self.data.stored(i, data_start, live_from[i] or start + size, q.grid, now, q.hourly)
                for i in instruments
            )
        )
        large: list[LargeTradeRecord] = []
        if q.large_min:
            for instrument in instruments:
                large += await self.data.large_trades(
                    instrument, start, live_from[instrument] or now + 1, q.large_min, q.large_min_text, now
                )
        # the synchronous cut: live minutes as of now, and listening from the next batch on
        by_instrument = dict(zip(instruments, stored, strict=True))
        for instrument in instruments:
            begin = live_from[instrument]
            if begin is None or self.data.live is None:
                continue
            for bar in self.data.live.bars(instrument, begin, start + size, q.grid.row_size):
                by_instrument[instrument].append(minute_of(bar, q.grid))
                for at, price, trade_size, is_buy in bar.trades:
                    volume = volume_units(trade_size)
                    if q.large_min and volume >= q.large_min:
                        large.append(LargeTradeRecord(instrument, "", at, price, trade_size, is_buy, volume))
        self.live.listeners.append(self._on_batch)
        watch = self.book_watch
        if watch is not None and not q.ignore_book and all(watch.has_book(i) for i in instruments):
            for instrument in instruments:
                rows = watch.follow(instrument, q.grid)
                if rows is not None:
                    self.books[instrument] = rows
        self._count_large(large)
        minutes = [m for part in by_instrument.values() for m in part]
        history_q = dataclasses.replace(q, start=history_start, end=start)
        closed = build_bars(history_q, [m for m in minutes if m.start_ms < start], start)
        self.history.extend(closed)
        for bar_zones in analyse(history_q, closed).zones:
            for zone in bar_zones:
                self.emitted.add(_zone_key(zone))
        for m in minutes:
            self.deltas[m.start_ms] = self.deltas.get(m.start_ms, 0) + m.delta
        self.state = self._new_state(
            merge_bar(start, start + size, [m for m in minutes if m.start_ms >= start])
        )
        self._publish(self._update())

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self.book_watch is not None:
            for instrument, rows in self.books.items():
                self.book_watch.forget(instrument, rows)
        with contextlib.suppress(ValueError):
            self.live.listeners.remove(self._on_batch)

    # --- folding ---------------------------------------------------------------------------------

    def _wanted(self, instrument: InstrumentId) -> bool:
        if instrument in self.q.instruments:
            return True
        return any(selected == instrument for selected in self.selected.values())

    async def _refresh(self) -> None:
        failovers = await self.composites.failovers()
        for key in self.q.composites:
            failover = failovers.get(key)
            if failover is None:
                continue
            selected = InstrumentId.from_proto(failover.selected) if failover.selected.symbol else None
            if key in self.selected and self.selected[key] != selected:
                self._switched = True
            self.selected[key] = selected
            self.failovers[key] = failover

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._refresh()
            except CompositeUnavailable as exc:
                log.debug("composites unavailable", extra={"error": str(exc)})

    def _new_state(self, bar: Bar) -> _State:
        q = self.q
        bar.closed = False
        self._cvd_before = None
        state = _State(BarBuilder(bar, q.grid, q.ratio, q.imbalance_min))
        # what the bar already holds is in every snapshot; only later changes are announced as new
        found = state.builder.sorted_imbalances()
        state.imbalances = {(i.price, i.side.value) for i in found}
        state.current_zones = [
            stacked_proto(q, bar, z) for z in stacked_zones(found, q.grid.row_units, q.stacked_rows)
        ]
        state.zones = {_zone_key(z) for z in state.current_zones}
        state.stacked = len(state.current_zones)
        state.imbalance_keys = set(state.builder.imbalances)
        return state

    def _on_batch(self, instrument: InstrumentId, trades: list[LiveTrade], ids: list[str]) -> None:
        if not self._wanted(instrument):
            return
        large: list[LargeTradeRecord] = []
        large_min = self.q.large_min
        deltas = self.deltas
        traded = self._traded.add
        for n, (at, price, size, is_buy) in enumerate(trades):
            bar = self.state.bar
            if at < bar.start_ms:
                continue  # a late trade of a closed bar: storage has it
            if at >= bar.end_ms:
                self._close_bar(at)
            signed = self.state.builder.add_trade(price, size, is_buy, at)
            traded(price)
            minute = at - at % MINUTE_MS
            deltas[minute] = deltas.get(minute, 0) + signed
            if large_min and abs(signed) >= large_min:
                large.append(LargeTradeRecord(instrument, ids[n], at, price, size, is_buy, abs(signed)))
        self.last_ids[instrument.key] = ids[-1]
        update = self._update()
        for record in large:
            update.new_large_trades.append(large_trade_proto(record))
        self._count_large(large)
        self._publish(update)

    def _count_large(self, large: Iterable[LargeTradeRecord]) -> None:
        for record in large:
            self.large_trades += 1
            self.large_volume += record.volume

    def _cvd(self) -> int:
        """CVD at the bar's end: deltas from the anchor period holding its last minute so far."""
        bar = self.state.bar
        latest = max(bar.last_ms, now_ms())
        last_minute = min(bar.end_ms - MINUTE_MS, latest - latest % MINUTE_MS)
        anchor = self.q.anchor_start(last_minute)
        if anchor > bar.start_ms:  # the anchor period began inside the bar
            return sum(d for m, d in self.deltas.items() if anchor <= m < bar.end_ms)
        cached = self._cvd_before
        if cached is None or cached[0] != anchor:
            cached = self._cvd_before = (
                anchor,
                sum(d for m, d in self.deltas.items() if anchor <= m < bar.start_ms),
            )
        return cached[1] + bar.delta

    def _bar(self) -> Bar:
        bar = self.state.bar
        bar.cvd = self._cvd()
        bar.large_trades, bar.large_volume = self.large_trades, self.large_volume
        return bar

    def _zones(self, found: list[Imbalance]) -> list[pb.Zone]:
        q = self.q
        return [
            stacked_proto(q, self.state.bar, z)
            for z in stacked_zones(found, q.grid.row_units, q.stacked_rows)
        ]

    def _refresh_zones(self, found: list[Imbalance]) -> None:
        """Rebuild stale stacked zones from the bar's imbalances (`found`, sorted)."""
        state = self.state
        if state.stale:
            zones = self._zones(found)
            state.current_zones[: state.stacked] = zones
            state.stacked = len(zones)
            state.stale = False

    def _rows_gone(self, appeared: list[Imbalance]) -> list[tuple[int, Side]]:
        """The rows that stopped being imbalanced in the last refresh. A refresh rechecks only the rows
        traded since the previous one and their neighbours, so only those are looked at; the key set
        is kept in step (the whole set is compared only if the counts disagree, as a safety net)."""
        state = self.state
        imbalances = state.builder.imbalances
        keys = state.imbalance_keys
        keys.update((i.price, i.side) for i in appeared)
        gone: list[tuple[int, Side]] = []
        if len(keys) != len(imbalances):
            grid = self.q.grid
            step = grid.row_units
            for price in self._traded:
                units = to_units(price, grid.decimals)
                row = units - units % step
                for near in (row - step, row, row + step):
                    for side in _SIDES:
                        key = (near, side)
                        if key in keys and key not in imbalances:
                            keys.discard(key)
                            gone.append(key)
            if len(keys) != len(imbalances):
                gone = list(keys - imbalances.keys())
                state.imbalance_keys = set(imbalances)
        return gone

    def _new_stacked(self, appeared: list[Imbalance]) -> list[pb.Zone]:
        """Stacked zones that may have appeared since the last update, as the runs of imbalanced rows
        through the rows that became imbalanced and beside the ones that stopped being so."""
        gone = self._rows_gone(appeared)
        if not appeared and not gone:
            return []
        state = self.state
        imbalances = state.builder.imbalances
        q = self.q
        step = q.grid.row_units
        starts = {(i.price, i.side) for i in appeared}
        for price, side in gone:  # a run broken here: its two halves may now be zones of their own
            starts.update(((price - step, side), (price + step, side)))
        seen: set[tuple[int, Side]] = set()
        found: list[StackedZone] = []
        for price, side in starts:
            if (price, side) not in imbalances:
                continue
            low = price
            while (low - step, side) in imbalances:
                low -= step
            if (low, side) in seen:
                continue
            seen.add((low, side))
            run = [imbalances[(low, side)]]
            while (run[-1].price + step, side) in imbalances:
                run.append(imbalances[(run[-1].price + step, side)])
            found += stacked_zones(run, step, q.stacked_rows)
        found.sort(key=lambda z: (z.low, z.side is Side.SELL))
        return [stacked_proto(q, state.bar, z) for z in found]

    def _update(self, *, full: bool = False) -> pb.StreamOrderFlowResponse:
        """The bar's figures and what appeared since the last update; with `full`, also every current
        imbalance and zone of the bar (snapshots and a bar's final state)."""
        q = self.q
        state = self.state
        bar = self._bar()
        appeared, changed = state.builder.refresh()
        candidates: list[pb.Zone] = []
        if changed:
            candidates = self._new_stacked(appeared)
        self._traded.clear()
        if changed:
            # a change makes the stacked zones out of date and, as ever, drops the refills listed so far
            del state.current_zones[state.stacked :]
            state.stale = True
        found: list[Imbalance] = []
        if full:
            found = state.builder.sorted_imbalances()
            self._refresh_zones(found)
            candidates = state.current_zones
        message = pb.StreamOrderFlowResponse(
            bar=bar_proto(q, bar, found if full else [], state.current_zones if full else [], q.include_rows)
        )
        for imbalance in sorted(appeared, key=lambda i: (i.price, i.side.value)):
            key = (imbalance.price, imbalance.side.value)
            if key not in state.imbalances:
                state.imbalances.add(key)
                message.new_imbalances.append(imbalance_proto(q, imbalance))
        for zone in candidates:
            zkey = _zone_key(zone)
            if zkey not in state.zones:
                state.zones.add(zkey)
                message.new_zones.append(zone)
        if self.books and bar.rows:
            books = list(self.books.values())
            for refill in refills(bar, books, q.absorption_multiple, q.absorption_min, q.refill_ratio):
                zone = refill_proto(q, bar, refill)
                zkey = _zone_key(zone)
                if zkey not in state.zones:
                    state.zones.add(zkey)
                    state.current_zones.append(zone)
                    message.new_zones.append(zone)
        return message

    def _close_bar(self, at: int) -> None:
        """The bar ended: publish its final state, run the cross-bar zones, start the bar holding `at`."""
        q = self.q
        final = self._update(full=True)
        final.bar.closed = True
        final.bar_closed = True
        closed = dataclasses.replace(self._bar(), closed=True)
        self.history.append(closed)
        size = q.size_ms
        start = at - at % size
        empty_start = closed.end_ms
        while empty_start < start:  # bars without trades keep the sequence of bars whole
            empty = Bar(empty_start, empty_start + size)
            anchor = q.anchor_start(empty.end_ms - MINUTE_MS)
            empty.cvd = sum(d for m, d in self.deltas.items() if anchor <= m < empty.end_ms)
            self.history.append(empty)
            empty_start += size
        history = list(self.history)
        history_q = dataclasses.replace(q, start=history[0].start_ms, end=history[-1].end_ms)
        for bar_zones in analyse(history_q, history).zones:
            for zone in bar_zones:
                key = _zone_key(zone)
                if key not in self.emitted and zone.kind != pb.ZONE_KIND_STACKED_IMBALANCE:
                    self.emitted.add(key)
                    if zone.HasField("absorption"):
                        zone.absorption.order_book_used = bool(self.books)
                    final.new_zones.append(zone)
        self._publish(final)
        keep_from = min(q.anchor_start(start + size - MINUTE_MS), start)
        self.deltas = {m: d for m, d in self.deltas.items() if m >= keep_from}
        q.start, q.end = start, start + size
        self.state = self._new_state(Bar(start, start + size))
        for rows in self.books.values():
            rows.reset()
        self.large_trades = 0
        self.large_volume = 0

    # --- publishing ------------------------------------------------------------------------------

    def _publish(self, update: pb.StreamOrderFlowResponse) -> None:
        self.sequence += 1
        update.sequence = self.sequence
        update.resume_cursor = cursor_of(self.key, self.sequence)
        for instrument_key, trade_id in self.last_ids.items():
            update.last_trade_ids[instrument_key] = trade_id
        if self._switched:
            self._switched = False
            update.failovers.extend(self.failovers.values())
        self.buffer.append(update)
        for queue in list(self.subscribers):
            if queue.full():
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # too slow: it gets a snapshot instead of the missed updates
            else:
                queue.put_nowait(update)
        self._on_update()

    def snapshot(self) -> pb.StreamOrderFlowResponse:
        """The current state: the bar with every imbalance and zone so far (nothing counts as new)."""
        state = self.state
        found = state.builder.sorted_imbalances()
        self._refresh_zones(found)
        message = pb.StreamOrderFlowResponse(
            bar=bar_proto(
                self.q,
                self._bar(),
                found,
                state.current_zones,
                self.q.include_rows,
            )
        )
        message.snapshot = True
        message.sequence = self.sequence
        message.resume_cursor = cursor_of(self.key, self.sequence)
        for instrument_key, trade_id in self.last_ids.items():
            message.last_trade_ids[instrument_key] = trade_id
        message.failovers.extend(self.failovers.values())
        message.parameters.CopyFrom(echo(self.q, self.followed()))
        return message

    def subscribe(
        self, queue: asyncio.Queue[pb.StreamOrderFlowResponse | None], cursor: str
    ) -> list[pb.StreamOrderFlowResponse]:
        """Register `queue` and return what to send first: the held updates after the cursor, or a
        snapshot. Synchronous, so nothing published meanwhile is lost or doubled."""
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        self.subscribers.add(queue)
        after = parse_cursor(cursor, self.key) if cursor else None
        if after is not None and self.buffer and after >= self.buffer[0].sequence - 1:
            out = []
            for update in self.buffer:
                if update.sequence > after:
                    copy = pb.StreamOrderFlowResponse()
                    copy.CopyFrom(update)
                    copy.replayed = True
                    out.append(copy)
            return out
        return [self.snapshot()]

    def unsubscribe(self, queue: asyncio.Queue[pb.StreamOrderFlowResponse | None]) -> None:
        self.subscribers.discard(queue)


_SIDES = (Side.BUY, Side.SELL)


def _zone_key(zone: pb.Zone) -> tuple[Any, ...]:
    return (zone.kind, zone.side, zone.price_low, zone.price_high, zone.start_time_ms, zone.end_time_ms)


class StreamHub:
    """Producers by subscription key."""

    def __init__(
        self,
        data: FlowData,
        live: FlowLiveTrades,
        composites: CompositeResolver,
        buffer_size: int,
        books: BookWatch | None = None,
    ) -> None:
        self.books = books
        self.data = data
        self.live = live
        self.composites = composites
        self.buffer_size = buffer_size
        self.producers: dict[str, Producer] = {}
        self.updates = 0

    def _count(self) -> None:
        self.updates += 1

    async def producer(self, q: FlowQuery) -> Producer:
        producer = self.producers.get(q.key)
        if producer is None:
            producer = Producer(
                q, self.data, self.live, self.composites, self.buffer_size, self._count, self.books
            )
            self.producers[q.key] = producer
            try:
                await producer.start()
            except BaseException:
                self.producers.pop(q.key, None)
                producer.stop()
                raise
        else:
            await producer.ready.wait()
            if producer.failed is not None:
                raise producer.failed
        return producer

    def release(self, producer: Producer) -> None:
        """After a subscriber left: stop the producer once it has had none for LINGER_S."""
        if producer.subscribers or producer.linger is not None:
            return

        def expire() -> None:
            producer.linger = None
            if not producer.subscribers and self.producers.get(producer.key) is producer:
                del self.producers[producer.key]
                producer.stop()

        producer.linger = asyncio.get_running_loop().call_later(LINGER_S, expire)

    def stop(self) -> None:
        for producer in self.producers.values():
            if producer.linger is not None:
                producer.linger.cancel()
            producer.stop()
        self.producers.clear()

    @property
    def subscribers(self) -> int:
        return sum(len(p.subscribers) for p in self.producers.values())
