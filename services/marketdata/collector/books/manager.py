"""The book manager: one synced book per instrument, fed by the feeds' connections.

It routes depth frames to each instrument's BookSync, tells them when their connection comes and
goes, fetches Binance snapshots through one throttled fetcher, asks the Bybit feeds to resubscribe a
topic, serves views to readers (GetOrderBook, StreamOrderBook), and hands periodic top-of-book
snapshots to a sink (storage) at MARKETDATA_BOOK_SNAPSHOT_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from marketdata.collector.books import views
from marketdata.collector.books.snapshots import SnapshotFetcher
from marketdata.collector.books.sync import SYNCED, BinanceSync, BookSync, BybitSync
from marketdata.collector.frames import Frame, FrameKind
from marketdata.collector.rest import ExchangeRest
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_book_pb2

log = logging.getLogger(__name__)

TICK_S = 0.25
SnapshotSink = Callable[[list[order_book_pb2.OrderBookSnapshot]], Awaitable[object] | object]
Resubscriber = Callable[[InstrumentId], Awaitable[bool]]


class BookUnavailable(Exception):
    """No book can be served for the instrument right now (never synced, or out of sync too long)."""


class BookManager:
    def __init__(self, settings: Settings, instruments: Sequence[InstrumentId]) -> None:
        self.settings = settings
        self.instruments = tuple(instruments)
        self.syncs: dict[InstrumentId, BookSync] = {}
        self.invalid_frames: dict[MarketKey, int] = {m: 0 for m in MarketKey}
        self._invalid_logged = 0
        self._protos = {i: i.to_proto() for i in self.instruments}
        self._watchers: dict[InstrumentId, set[asyncio.Event]] = {}
        self._resubscribers: dict[MarketKey, Resubscriber] = {}
        self._fetcher: SnapshotFetcher | None = None
        self._sink: SnapshotSink | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The last view built per (instrument, depth) and what it was built from: readers asking
        # faster than the book changes get a copy instead of a rebuild.
        self._views: dict[tuple[InstrumentId, int], tuple[tuple[int, ...], collector_pb2.OrderBookView]] = {}
        self.snapshots_handed = 0
        self.snapshot_sink_errors = 0
        for instrument in self.instruments:
            if instrument.market.is_binance:
                self.syncs[instrument] = BinanceSync(instrument, settings, self._changed, self._fetch)
            else:
                self.syncs[instrument] = BybitSync(instrument, settings, self._changed, self._resubscribe)

    # -- wiring -----------------------------------------------------------------------------------------

    def set_resubscriber(self, market: MarketKey, resubscribe: Resubscriber) -> None:
        self._resubscribers[market] = resubscribe

    def set_snapshot_sink(self, sink: SnapshotSink | None) -> None:
        """Where periodic top-of-book snapshots go (storage); None: nowhere."""
        self._sink = sink

    def start(self, rest: ExchangeRest) -> None:
        self._fetcher = SnapshotFetcher(rest, self.settings)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._housekeeping(), name="books-housekeeping"))
        if self.settings.book_snapshot_interval_s > 0:
            self._tasks.append(loop.create_task(self._snapshot_loop(), name="books-snapshots"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for sync in self.syncs.values():
            await sync.close()
        for events in self._watchers.values():
            for event in events:
                event.set()

    @property
    def fetcher(self) -> SnapshotFetcher | None:
        return self._fetcher

    async def _fetch(self, instrument: InstrumentId):  # type: ignore[no-untyped-def]
        if self._fetcher is None:
            raise RuntimeError("book manager not started")
        return await self._fetcher.fetch(instrument)

    async def _resubscribe(self, instrument: InstrumentId) -> bool:
        resubscribe = self._resubscribers.get(instrument.market)
        return False if resubscribe is None else await resubscribe(instrument)

    # -- from the feeds ---------------------------------------------------------------------------------

    def on_frame(self, market: MarketKey, frame: Frame) -> None:
        """A BOOK or BOOK_INVALID frame from one of the market's connections."""
        instrument = frame.instrument
        sync = self.syncs.get(instrument) if instrument is not None else None
        if frame.kind is FrameKind.BOOK and sync is not None and frame.book is not None:
            sync.on_update(frame.book)
            return
        if sync is not None:
            sync.on_invalid(frame.detail)
            return
        self.invalid_frames[market] += 1
        self._invalid_logged += 1
        if self._invalid_logged <= 5 or self._invalid_logged % 1000 == 0:
            log.warning(
                "skipped a depth frame", extra={"feed": market.value, "problem": frame.detail or "no book"}
            )

    def on_connected(self, instruments: Iterable[InstrumentId]) -> None:
        for instrument in instruments:
            sync = self.syncs.get(instrument)
            if sync is not None:
                sync.on_connected()

    def on_disconnected(self, instruments: Iterable[InstrumentId]) -> None:
        for instrument in instruments:
            sync = self.syncs.get(instrument)
            if sync is not None:
                sync.on_disconnected()

    # -- readers ----------------------------------------------------------------------------------------

    def has_book(self, instrument: InstrumentId) -> bool:
        return instrument in self.syncs

    def view(self, instrument: InstrumentId, depth: int) -> collector_pb2.OrderBookView:
        """The book as served now; BookUnavailable when there is no good book to serve."""
        sync = self.syncs[instrument]
        book = sync.book
        stats = sync.stats
        if book is None:
            why = f" (last: {stats.last_reason}: {stats.last_detail})" if stats.last_reason else ""
            raise BookUnavailable(f"the order book of {instrument.key} is not in sync yet{why}")
        stale = sync.stale_for()
        if stats.state != SYNCED and stale > self.settings.book_serve_stale_s:
            raise BookUnavailable(
                f"the order book of {instrument.key} has been resyncing for {stale:.1f} s "
                f"(reason: {stats.last_reason}); its last good book is too old to serve"
            )
        now_ns = time.time_ns()
        key = (id(book), book.update_id, book.receive_ns, stats.state, stats.total_resyncs)
        cached = self._views.get((instrument, depth))
        if cached is None or cached[0] != key:
            built = views.view(
                self._protos[instrument],
                book,
                depth,
                state=stats.state,
                now_ns=now_ns,
                resyncs=stats.total_resyncs,
                last_reason=stats.last_reason,
            )
            self._views[(instrument, depth)] = (key, built)
        else:
            built = cached[1]
        out = collector_pb2.OrderBookView()
        out.CopyFrom(built)
        out.age_ms = max(0, (now_ns - book.receive_ns) // 1_000_000) if book.receive_ns else -1
        return out

    def watch(self, instrument: InstrumentId) -> asyncio.Event:
        """An event set after every change of the book (an applied update or a state change)."""
        event = asyncio.Event()
        self._watchers.setdefault(instrument, set()).add(event)
        return event

    def unwatch(self, instrument: InstrumentId, event: asyncio.Event) -> None:
        watchers = self._watchers.get(instrument)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self._watchers[instrument]

    def _changed(self, instrument: InstrumentId) -> None:
        watchers = self._watchers.get(instrument)
        if watchers:
            for event in watchers:
                event.set()

    def snapshots(self, depth: int) -> list[order_book_pb2.OrderBookSnapshot]:
        """Top-of-book snapshots of every book in sync."""
        out = []
        for instrument, sync in self.syncs.items():
            if sync.state == SYNCED and sync.book is not None:
                out.append(views.snapshot(self._protos[instrument], sync.book, depth))
        return out

    # -- background -------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for sync in self.syncs.values():
                try:
                    sync.tick(now)
                except Exception:
                    log.exception("book housekeeping failed", extra={"instrument": sync.instrument.key})

    async def _snapshot_loop(self) -> None:
        interval = self.settings.book_snapshot_interval_s
        depth = self.settings.book_snapshot_depth
        while True:
            await asyncio.sleep(interval)
            sink = self._sink
            if sink is None:
                continue
            batch = self.snapshots(depth)
            if not batch:
                continue
            try:
                result = sink(batch)
                if inspect.isawaitable(result):
                    await result
                self.snapshots_handed += len(batch)
            except Exception as exc:
                self.snapshot_sink_errors += 1
                log.warning("book snapshots not handed to storage", extra={"error": str(exc)})
