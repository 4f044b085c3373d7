"""A feed: every connection of one market, each kept up by a supervisor.

Instruments are split across connections within the exchange's limits. A lost connection is
reopened with jittered exponential backoff. Binance connections are rotated make-before-break
(at `binance_rotate_after_s`, or at once on `serverShutdown`): the replacement is opened and
delivering before the old one is closed; trade identity drops the overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import aiohttp

from marketdata.collector import binance, bybit
from marketdata.collector.connection import (
    ConnectionPlan,
    FeedConnection,
    RawSink,
    SubscriptionRejected,
    TradesSink,
)
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


def connection_plans(
    market: MarketKey, instruments: Sequence[InstrumentId], settings: Settings
) -> list[ConnectionPlan]:
    """Split the instruments of one market into connections and describe each."""
    if market.is_binance:
        base = (
            settings.binance_spot_ws_url
            if market == MarketKey.BINANCE_SPOT
            else settings.binance_futures_ws_url
        )
        size = binance.MAX_STREAMS_PER_CONNECTION
    else:
        base = settings.bybit_ws_url
        size = bybit.MAX_TOPICS_PER_CONNECTION
    plans = []
    for start in range(0, len(instruments), size):
        chunk = instruments[start : start + size]
        by_symbol = {i.symbol: i for i in chunk}
        if market.is_binance:
            plans.append(
                ConnectionPlan(
                    url=binance.stream_url(market, base, chunk),
                    subscribe=(),
                    ping_interval_s=settings.binance_ping_interval_s,
                    ping_text=None,
                    parser=binance.BinanceFrameParser(market, by_symbol),
                )
            )
        else:
            plans.append(
                ConnectionPlan(
                    url=bybit.stream_url(market, base),
                    subscribe=tuple(bybit.subscribe_requests(chunk, first_req_id=1)),
                    ping_interval_s=settings.bybit_ping_interval_s,
                    ping_text=bybit.ping_request,
                    parser=bybit.BybitFrameParser(market, by_symbol),
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
    ) -> None:
        self.market = market
        self._instruments = list(instruments)
        self._settings = settings
        self._session = session
        self._stats = stats
        self._on_trades = on_trades
        self._on_connected = on_connected
        self._raw_sink = raw_sink
        self._plans = connection_plans(market, self._instruments, settings)
        self._chunks = [
            self._instruments[i : i + self._chunk_size()]
            for i in range(0, len(self._instruments), self._chunk_size())
        ]
        self._up: set[int] = set()

    def _chunk_size(self) -> int:
        return (
            binance.MAX_STREAMS_PER_CONNECTION if self.market.is_binance else bybit.MAX_TOPICS_PER_CONNECTION
        )

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
            started = time.monotonic()
            reason = await self._serve(connection, plan)
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
        )

    async def _open(self, plan: ConnectionPlan, backoff: Backoff) -> FeedConnection:
        """Open and subscribe, retrying with backoff until it works."""
        while True:
            connection = self._connection(plan)
            try:
                await asyncio.wait_for(connection.open(), timeout=SUBSCRIBE_TIMEOUT_S)
                if not plan.subscribe:
                    return connection
                return await self._await_subscribed(connection)
            except (aiohttp.ClientError, OSError, TimeoutError, SubscriptionRejected, _Ended) as exc:
                await connection.close()
                delay = backoff.next_delay()
                message = f"{plan.url}: {type(exc).__name__}: {exc}"
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

    async def _serve(self, connection: FeedConnection, plan: ConnectionPlan) -> str:
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
