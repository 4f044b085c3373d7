"""The collector's engine: feeds per market -> per-instrument sequencers -> the trade bus, and
depth frames -> the book manager (collector/books/).

No gRPC here (see service.py): this is what `marketdata record` and the tests drive directly too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aiohttp
import grpc
from prometheus_client import CollectorRegistry

from marketdata.collector import bybit
from marketdata.collector.books import BookManager
from marketdata.collector.books.manager import SnapshotSink
from marketdata.collector.books.metrics import BookStatsExporter
from marketdata.collector.bus import TradeBus
from marketdata.collector.connection import RawSink
from marketdata.collector.feed import Feed
from marketdata.collector.health.breaker import Breakers
from marketdata.collector.health.monitor import HealthExporter, HealthMonitor
from marketdata.collector.rest import ExchangeRest
from marketdata.collector.sequencer import (
    ConsecutiveIdSequencer,
    ReconnectWindowSequencer,
    Sequencer,
)
from marketdata.collector.stats import FeedStats, FeedStatsExporter
from marketdata.collector.storage_writer import StorageWriter
from marketdata.collector.trade_runs import TradeRun
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import common_pb2

log = logging.getLogger(__name__)


class Collector:
    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        raw_sink: dict[MarketKey, RawSink] | None = None,
    ) -> None:
        self.settings = settings
        self.instruments: tuple[InstrumentId, ...] = settings.instruments
        self.bus = TradeBus(
            registry,
            settings.batch_max_trades,
            settings.subscriber_queue_batches,
            settings.stream_min_interval_ms / 1000,
        )
        self.markets = [m for m in MarketKey if settings.instruments_of(m)]
        self.stats = {m: FeedStats(m) for m in self.markets}
        for instrument in self.instruments:
            self.stats[instrument.market].instrument(instrument)
        registry.register(FeedStatsExporter(self.stats.values()))
        # Order books (MARKETDATA_BOOK_INSTRUMENTS); None when no instrument has one.
        self.books: BookManager | None = None
        if settings.books():
            self.books = BookManager(settings, settings.books())
            registry.register(BookStatsExporter(self.books))
        # Every flushed trade batch also goes to storage when MARKETDATA_STORAGE_ADDR is set.
        self.storage: StorageWriter | None = None
        if settings.storage_addr:
            self.storage = StorageWriter(settings, registry, self.instruments)
            self.bus.add_sink(self.storage.on_trades)
        # Feed health (collector/health/): circuit breakers on exchange calls, scores, consistency, failover.
        self.breakers = Breakers(
            settings.breaker_failures, settings.breaker_open_s, settings.breaker_max_open_s
        )
        for market in self.markets:
            self.breakers.get(market, "ws_connect")
            self.breakers.get(market, "rest_backfill")
            if (
                market.is_binance
                and self.books is not None
                and any(i.market == market for i in self.books.instruments)
            ):
                self.breakers.get(market, "rest_snapshot")
        self.health = HealthMonitor(settings, self.stats, self.books, self.breakers, self.instruments)
        self.bus.add_sink(self.health.on_trades)
        registry.register(HealthExporter(self.health))
        self._raw_sink = raw_sink or {}
        self._sequencers: dict[InstrumentId, Sequencer] = {}
        self._session: aiohttp.ClientSession | None = None
        # REST calls (backfills, book snapshots) and their request-weight budgets; set by start()
        self.rest: ExchangeRest | None = None
        self._task: asyncio.Task[None] | None = None
        self._resume_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.storage is not None:
            await self.storage.start()
            self.set_book_snapshot_sink(self.storage.write_book_snapshots)
        self._session = aiohttp.ClientSession()
        rest = self.use_rest(ExchangeRest(self._session, self.settings, self.breakers))
        if self.storage is not None:
            # A restart continues where stored history ends; feeds connect meanwhile, their trades
            # wait in the sequencers (at most MARKETDATA_RESTART_LOOKUP_TIMEOUT_S).
            for sequencer in self._sequencers.values():
                sequencer.expect_restart_point()
            self._resume_task = asyncio.create_task(
                self._resume_from_storage(self.storage), name="collector-restart-point"
            )
        books = self.books
        feeds = [
            Feed(
                market,
                self.settings.instruments_of(market),
                self.settings,
                self._session,
                self.stats[market],
                self.on_trades,
                self._on_connected,
                self._raw_sink.get(market),
                books=books.instruments if books is not None else (),
                on_book=books.on_frame if books is not None else None,
                on_disconnected=books.on_disconnected if books is not None else None,
                breaker=self.breakers.get(market, "ws_connect"),
            )
            for market in self.markets
        ]
        if books is not None:
            for feed in feeds:
                books.set_resubscriber(feed.market, feed.resubscribe_book)
            books.start(rest)
        self._task = asyncio.create_task(self._run(feeds), name="collector")
        self.health.start()
        log.info(
            "collector started",
            extra={
                "instruments": [i.key for i in self.instruments],
                "markets": [m.value for m in self.markets],
            },
        )

    def use_rest(self, rest: ExchangeRest) -> ExchangeRest:
        """Take the REST client backfills use and make one sequencer per instrument (start() calls
        it; `marketdata bench hotpath` too, to drive the trade path without feeds)."""
        self.rest = rest
        for instrument in self.instruments:
            self._sequencers[instrument] = self._sequencer(instrument, rest)
        return rest

    def on_trades(self, instrument: InstrumentId, run: TradeRun) -> None:
        """Trades of a reader's turn, in arrival order, to the instrument's sequencer (feeds call it)."""
        self._sequencers[instrument].on_trades(run)

    async def _run(self, feeds: Sequence[Feed]) -> None:
        async with asyncio.TaskGroup() as group:
            for feed in feeds:
                group.create_task(feed.run(), name=f"feed-{feed.market.value}")

    def _sequencer(self, instrument: InstrumentId, rest: ExchangeRest) -> Sequencer:
        stats = self.stats[instrument.market]
        if instrument.market.is_binance:

            async def from_id(start: int, count: int) -> list[tuple[int, common_pb2.Trade]]:
                return await rest.binance_trades_from(instrument, start, count)

            return ConsecutiveIdSequencer(instrument, stats, self.bus.publish, self.settings, from_id)

        async def recent() -> list[common_pb2.Trade]:
            return await rest.bybit_recent_trades(instrument)

        return ReconnectWindowSequencer(
            instrument,
            stats,
            self.bus.publish,
            self.settings,
            recent,
            bybit.recent_trades_limit(instrument.market),
        )

    async def _resume_from_storage(self, storage: StorageWriter) -> None:
        """Ask storage where each instrument's stored trades end and let its sequencer go on from there."""
        timeout = self.settings.restart_lookup_timeout_s
        try:
            last = await storage.last_trades(timeout)
        except Exception as exc:  # whatever went wrong, the sequencers must not wait for good
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                reason = f"storage at {storage.addr} answered {exc.code().name}: {exc.details()}"
            elif isinstance(exc, grpc.aio.AioRpcError | TimeoutError):
                reason = f"storage at {storage.addr} did not answer within {timeout:g} s"
            else:
                reason = f"asking storage at {storage.addr} failed: {type(exc).__name__}: {exc}"
            log.warning("restart point unknown; collecting without it", extra={"reason": reason})
            for market in self.markets:
                self.stats[market].record_error(f"restart point unknown: {reason}")
            for sequencer in self._sequencers.values():
                sequencer.resume_unknown(reason)
            return
        log.info(
            "resuming after the trades storage holds",
            extra={
                "last_stored": {
                    i.key: f"{trades[-1].trade_id}@{trades[-1].exchange_time_ms}"
                    for i, trades in last.items()
                    if trades
                },
                "nothing_stored": [i.key for i in self.instruments if i not in last],
            },
        )
        for instrument, sequencer in self._sequencers.items():
            sequencer.resume_after(last.get(instrument, []))

    def _on_connected(self, instruments: Sequence[InstrumentId]) -> None:
        for instrument in instruments:
            self._sequencers[instrument].on_connected()
        if self.books is not None:
            self.books.on_connected(instruments)

    def set_book_snapshot_sink(self, sink: SnapshotSink | None) -> None:
        """Hand periodic top-of-book snapshots (MARKETDATA_BOOK_SNAPSHOT_INTERVAL_S, top
        MARKETDATA_BOOK_SNAPSHOT_DEPTH levels) to `sink`, e.g. StorageWriter.write_book_snapshots."""
        if self.books is not None:
            self.books.set_snapshot_sink(sink)

    async def stop(self) -> None:
        await self.health.stop()
        if self._resume_task is not None:
            self._resume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resume_task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sequencer in self._sequencers.values():
            await sequencer.close()
        if self.books is not None:
            await self.books.stop()
        self.bus.close()
        if self.storage is not None:
            await self.storage.stop()
        if self._session is not None:
            await self._session.close()
        for stats in self.stats.values():
            stats.state = 4  # FEED_STATE_STOPPED
        log.info("collector stopped")
