"""A feed: every connection of one market, each kept up by a supervisor.

Instruments are split across connections within the exchange's limits. A lost connection is
reopened with jittered exponential backoff. Binance connections are rotated make-before-break
(at `binance_rotate_after_s`, or at once on `serverShutdown`): the replacement is opened and
delivering before the old one is closed; trade identity drops the overlap.

Order books ride on the same connections: each instrument with a book adds its depth stream
(Binance) or order-book topic (Bybit), so a connection carries half as many instruments. A book that
must resync never touches the connection (Binance fetches a REST snapshot) or only resubscribes its
own topic (Bybit): trades keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Collection, Sequence

import aiohttp

from marketdata.collector import binance, bybit
from marketdata.collector.connection import (
    BookSink,
    ConnectionPlan,
    FeedConnection,
    RawSink,
    SubscriptionRejected,
    TradesSink,
)
from marketdata.collector.frames import Frame
from marketdata.collector.health.breaker import CircuitBreaker, CircuitOpen
from marketdata.collector.stats import FeedStats
from marketdata.core.backoff import Backoff
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 10.0
# How long the old connection stays open after its replacement is up, waiting for the replacement's
# first trade; past it the old one is closed anyway (a quiet market may send nothing for a while).
ROTATION_OVERLAP_S = 5.0


def chunk_size(
    market: MarketKey, instruments: Sequence[InstrumentId], books: Collection[InstrumentId]
) -> int:
    """Instruments per connection: the stream/topic limit, halved when instruments carry books."""
    size = binance.MAX_STREAMS_PER_CONNECTION if market.is_binance else bybit.MAX_TOPICS_PER_CONNECTION
    if any(i in books for i in instruments):
        size //= 2
    return size


def connection_chunks(
    market: MarketKey, instruments: Sequence[InstrumentId], books: Collection[InstrumentId] = ()
) -> list[Sequence[InstrumentId]]:
    size = chunk_size(market, instruments, books)
    return [instruments[start : start + size] for start in range(0, len(instruments), size)]


def connection_plans(
    market: MarketKey,
    instruments: Sequence[InstrumentId],
    settings: Settings,
    books: Collection[InstrumentId] = (),
) -> list[ConnectionPlan]:
    """Split the instruments of one market into connections and describe each; instruments in
    `books` also get their depth stream (Binance) or order-book topic (Bybit)."""
    if market.is_binance:
        base = (
            settings.binance_spot_ws_url
            if market == MarketKey.BINANCE_SPOT
            else settings.binance_futures_ws_url
        )
    else:
        base = settings.bybit_ws_url
    plans = []
    for chunk in connection_chunks(market, instruments, books):
        by_symbol = {i.symbol: i for i in chunk}
        with_books = [i for i in chunk if i in books]
        book_symbols = {i.symbol: i for i in with_books}
        if market.is_binance:
            plans.append(
                ConnectionPlan(
                    url=binance.stream_url(market, base, chunk, with_books),
                    subscribe=(),
                    ping_interval_s=settings.binance_ping_interval_s,
                    ping_text=None,
                    parser=binance.BinanceFrameParser(market, by_symbol, book_symbols),
                )
            )
        else:
            depth = settings.book_bybit_depth
            plans.append(
                ConnectionPlan(
                    url=bybit.stream_url(market, base),
                    subscribe=tuple(bybit.subscribe_requests(chunk, 1, with_books, depth)),
                    ping_interval_s=settings.bybit_ping_interval_s,
                    ping_text=bybit.ping_request,
                    parser=bybit.BybitFrameParser(market, by_symbol, book_symbols, depth),
                )
            )
    return plans


class Feed:
    def __init__(
        self,
        market: MarketKey,
        instruments: Sequence[InstrumentId],
        settings: Settings,
        session: aiohttp.ClientSession,
        stats: FeedStats,
        on_trades: TradesSink,
        on_connected: Callable[[Sequence[InstrumentId]], None],
        raw_sink: RawSink | None = None,
        *,
        books: Collection[InstrumentId] = (),
        on_book: Callable[[MarketKey, Frame], None] | None = None,
        on_disconnected: Callable[[Sequence[InstrumentId]], None] | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.market = market
        self._breaker = breaker  # WebSocket connects (collector/health/breaker.py)
        self._instruments = list(instruments)
        self._settings = settings
        self._session = session
        self._stats = stats
        self._on_trades = on_trades
        self._on_connected = on_connected
        self._raw_sink = raw_sink
        self._books = frozenset(books)
        self._on_book: BookSink | None = None
        if on_book is not None:
            self._on_book = functools.partial(on_book, market)
        self._on_disconnected = on_disconnected
        self._plans = connection_plans(market, self._instruments, settings, self._books)
        self._chunks = connection_chunks(market, self._instruments, self._books)
        self._up: set[int] = set()
        self._live: dict[int, FeedConnection] = {}  # plan index -> the connection serving it now
        self._resubscriptions = 0

    async def resubscribe_book(self, instrument: InstrumentId) -> bool:
        """Bybit: unsubscribe and subscribe the instrument's order-book topic again on its live
        connection (the exchange answers with a fresh snapshot); False when it has none now."""
        if self.market.is_binance or instrument not in self._books:
            return False
        for index, chunk in enumerate(self._chunks):
            if instrument in chunk:
                connection = self._live.get(index)
                if connection is None:
                    return False
                self._resubscriptions += 1
                topic = bybit.book_topic(instrument.symbol, self._settings.book_bybit_depth)
                for request in bybit.resubscribe_requests(topic, self._resubscriptions):
                    if not await connection.send_text(request):
                        return False
                log.info("resubscribed an order-book topic for a fresh snapshot", extra={"topic": topic})
                return True
        return False

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for index, plan in enumerate(self._plans):
                    group.create_task(self._supervise(index, plan), name=f"feed-{self.market.value}-{index}")
        finally:
            self._stats.state = collector_pb2.FEED_STATE_STOPPED

    def _set_up(self, index: int, up: bool) -> None:
        (self._up.add if up else self._up.discard)(index)
        if len(self._up) == len(self._plans):
            self._stats.state = collector_pb2.FEED_STATE_CONNECTED
        elif self._stats.state != collector_pb2.FEED_STATE_CONNECTING or up:
            self._stats.state = collector_pb2.FEED_STATE_RECONNECTING

    async def _supervise(self, index: int, plan: ConnectionPlan) -> None:
        backoff = Backoff(self._settings.reconnect_initial_s, self._settings.reconnect_max_s)
        ever_connected = False
        while True:
            connection = await self._open(plan, backoff)
            if ever_connected:
                self._stats.reconnects += 1
            ever_connected = True
            self._set_up(index, True)
            self._live[index] = connection
            started = time.monotonic()
            try:
                reason = await self._serve(connection, plan, index)
            finally:
                served = self._live.pop(index, connection)
            if not plan.subscribe and not served.data_seen and self._breaker is not None:
                # Binance subscribes in the URL: a connection that ends before any data did not
                # really connect (an exchange accepting and dropping us), so the breaker counts it.
                self._breaker.failure(f"connection ended before any data: {reason}"[:200])
            if self._on_disconnected is not None:
                self._on_disconnected(self._chunks[index])
            self._set_up(index, False)
            # A connection that lived a while earned a fresh backoff; a flapping one keeps growing.
            if time.monotonic() - started > 30:
                backoff.reset()
            delay = backoff.next_delay()
            self._stats.record_error(f"{plan.url}: {reason}")
            log.warning(
                "connection ended; reconnecting",
                extra={"feed": self.market.value, "reason": reason, "delay_s": round(delay, 3)},
            )
            await asyncio.sleep(delay)

    def _connection(self, plan: ConnectionPlan) -> FeedConnection:
        chunk = self._chunks[self._plans.index(plan)]
        return FeedConnection(
            plan,
            self._session,
            self._stats,
            self._on_trades,
            self._settings.stale_timeout_s,
            self._raw_sink,
            on_subscribed=lambda: self._on_connected(chunk),
            on_book=self._on_book,
            # Binance: the first data frame, not the open socket, proves the connect (see _open)
            on_first_data=self._breaker.success if self._breaker is not None and not plan.subscribe else None,
        )

    async def _open(self, plan: ConnectionPlan, backoff: Backoff) -> FeedConnection:
        """Open and subscribe, retrying with backoff until it works; while the connect breaker is
        open no attempt is made."""
        breaker = self._breaker
        while True:
            if breaker is not None:
                try:
                    breaker.allow()
                except CircuitOpen as exc:
                    await asyncio.sleep(min(exc.wait_s, 1.0))
                    continue
            connection = self._connection(plan)
            try:
                await asyncio.wait_for(connection.open(), timeout=SUBSCRIBE_TIMEOUT_S)
                if plan.subscribe:
                    connection = await self._await_subscribed(connection)
                    if breaker is not None:
                        breaker.success()  # Bybit: the acknowledgement proves the connect
                return connection
            except (aiohttp.ClientError, OSError, TimeoutError, SubscriptionRejected, _Ended) as exc:
                await connection.close()
                delay = backoff.next_delay()
                message = f"{plan.url}: {type(exc).__name__}: {exc}"
                if breaker is not None:
                    breaker.failure(f"{type(exc).__name__}: {exc}"[:200])
                self._stats.record_error(message)
                self._stats.state = (
                    collector_pb2.FEED_STATE_CONNECTING
                    if self._stats.state == collector_pb2.FEED_STATE_CONNECTING
                    else collector_pb2.FEED_STATE_RECONNECTING
                )
                log.warning(
                    "connect failed",
                    extra={"feed": self.market.value, "error": message, "delay_s": round(delay, 3)},
                )
                await asyncio.sleep(delay)

    async def _await_subscribed(self, connection: FeedConnection) -> FeedConnection:
        """Bybit: read until every subscribe request is acknowledged; the reader keeps running."""
        reader = asyncio.create_task(connection.run())
        waiter = asyncio.create_task(connection.subscribed.wait())
        done, _ = await asyncio.wait(
            {reader, waiter}, timeout=SUBSCRIBE_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter in done:
            connection.reader = reader
            return connection
        waiter.cancel()
        if reader in done:
            exc = reader.exception()
            if exc is not None:
                raise exc
            raise _Ended(connection.end_reason or "closed before subscribing")
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        raise TimeoutError("no subscribe acknowledgement")

    async def _serve(self, connection: FeedConnection, plan: ConnectionPlan, index: int) -> str:
        """Run a connection, rotating it when due; returns why the last one ended."""
        reader = connection.reader or asyncio.create_task(connection.run())
        try:
            while True:
                rotate = asyncio.create_task(self._rotation_due(connection))
                done, _ = await asyncio.wait({reader, rotate}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    rotate.cancel()
                    try:
                        return reader.result()
                    except SubscriptionRejected as exc:
                        return str(exc)
                    except Exception as exc:
                        return f"{type(exc).__name__}: {exc}"
                replacement = await self._replace(connection, plan, reader)
                if replacement is None:
                    continue
                connection, reader = replacement
                self._live[index] = connection
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _rotation_due(self, connection: FeedConnection) -> None:
        if not self.market.is_binance:
            await asyncio.Event().wait()  # Bybit documents no forced cut: never rotate
        age_left = self._settings.binance_rotate_after_s - (time.monotonic() - connection.opened_at)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.shutdown_notice.wait(), timeout=max(0.0, age_left))

    async def _replace(
        self, old: FeedConnection, plan: ConnectionPlan, old_reader: asyncio.Task[str]
    ) -> tuple[FeedConnection, asyncio.Task[str]] | None:
        why = "serverShutdown" if old.shutdown_notice.is_set() else "connection age"
        log.info("rotating connection (make-before-break)", extra={"feed": self.market.value, "why": why})
        new = self._connection(plan)
        try:
            await asyncio.wait_for(new.open(), timeout=SUBSCRIBE_TIMEOUT_S)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await new.close()
            self._stats.record_error(f"rotation failed: {type(exc).__name__}: {exc}")
            # Keep the old connection; try again shortly (it may still be cut by the exchange).
            await asyncio.sleep(self._settings.reconnect_initial_s)
            return None
        new_reader = asyncio.create_task(new.run())
        first = asyncio.create_task(new.first_data.wait())
        await asyncio.wait(
            {first, old_reader, new_reader}, timeout=ROTATION_OVERLAP_S, return_when=asyncio.FIRST_COMPLETED
        )
        first.cancel()
        self._stats.rotations += 1
        old_reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await old_reader
        return new, new_reader


class _Ended(Exception):
    """The connection ended before it was subscribed."""
