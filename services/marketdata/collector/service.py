"""CollectorService over gRPC: StreamTrades, GetFeedStatus, ListInstruments, GetOrderBook,
StreamOrderBook.

StreamTrades sends batches that the bus serialized once for all subscribers, so its method
handler is registered with no response serializer (grpc then sends the bytes as they are); the
other methods use the generated handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from marketdata.collector.books import BookUnavailable
from marketdata.collector.books.metrics import add_book_status
from marketdata.collector.books.views import DEFAULT_DEPTH, DEPTHS
from marketdata.collector.collector import Collector
from marketdata.collector.health.failover import Composite, CompositeSubscription, resolve
from marketdata.core.grpc_server import add_servicer
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc

SERVICE_NAME = collector_pb2.DESCRIPTOR.services_by_name["CollectorService"].full_name
# How often a composite book stream checks for a switch while its book is quiet (the health tick).
COMPOSITE_RECHECK_S = 1.0


async def _invalid(context: grpc.aio.ServicerContext, field: str, message: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


class CollectorServicer(collector_grpc.CollectorServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self._collector = collector
        self._collected = set(collector.instruments)

    def _known(self) -> str:
        return ", ".join(i.key for i in self._collector.instruments)

    async def StreamTrades(
        self, request: collector_pb2.StreamTradesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        wanted: set[InstrumentId] = set()
        for n, msg in enumerate(request.instruments):
            field = f"instruments[{n}]"
            try:
                instrument = InstrumentId.from_proto(msg)
            except ValueError as exc:
                await _invalid(context, field, str(exc))
                return
            if instrument not in self._collected:
                await _invalid(
                    context, field, f"{instrument.key} is not collected; collected: {self._known()}"
                )
                return
            wanted.add(instrument)
        composites: list[Composite] = []
        for n, key in enumerate(request.composites):
            try:
                composites.append(resolve(self._collector.health.composites, key))
            except ValueError as exc:
                await _invalid(context, f"composites[{n}]", str(exc))
                return
        bus = self._collector.bus
        if composites:
            subscription = bus.subscribe(
                None, CompositeSubscription(wanted, composites, bus.capacity, bus.metrics)
            )
        else:
            subscription = bus.subscribe(wanted or None)
        try:
            async for message in subscription.messages():
                yield message
        finally:
            bus.unsubscribe(subscription)

    async def GetFeedStatus(
        self, request: collector_pb2.GetFeedStatusRequest, context: grpc.aio.ServicerContext
    ) -> collector_pb2.GetFeedStatusResponse:
        markets = []
        for n, text in enumerate(request.feeds):
            try:
                market = MarketKey.parse(text)
            except ValueError as exc:
                await _invalid(context, f"feeds[{n}]", str(exc))
            if market not in self._collector.stats:
                collected = ", ".join(m.value for m in self._collector.markets)
                await _invalid(
                    context, f"feeds[{n}]", f"{market.value} is not collected; collected: {collected}"
                )
            markets.append(market)
        selected = markets or self._collector.markets
        now_ns = time.time_ns()
        feeds = [self._collector.stats[m].to_proto(now_ns) for m in selected]
        health = self._collector.health
        for market, feed in zip(selected, feeds, strict=True):
            add_book_status(self._collector.books, feed, now_ns)
            feed.health.CopyFrom(health.feed_health(market, now_ns))
        failovers = [c.to_proto() for c in health.composites.values()]
        return collector_pb2.GetFeedStatusResponse(feeds=feeds, failovers=failovers)

    async def ListInstruments(
        self, request: collector_pb2.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> collector_pb2.ListInstrumentsResponse:
        return collector_pb2.ListInstrumentsResponse(
            instruments=[i.to_proto() for i in self._collector.instruments]
        )

    async def _book_args(
        self, instrument_msg: object, has_instrument: bool, depth: int, context: grpc.aio.ServicerContext
    ) -> tuple[InstrumentId, int]:
        """Validate a book request's instrument and depth; INVALID_ARGUMENT naming the field."""
        if not has_instrument:
            await _invalid(context, "instrument", "is required (exchange, market and symbol)")
        try:
            instrument = InstrumentId.from_proto(instrument_msg)  # type: ignore[arg-type]
        except ValueError as exc:
            await _invalid(context, "instrument", str(exc))
            raise  # not reached: abort raises
        if instrument not in self._collected:
            await _invalid(
                context, "instrument", f"{instrument.key} is not collected; collected: {self._known()}"
            )
        books = self._collector.books
        if books is None or not books.has_book(instrument):
            kept = ", ".join(i.key for i in books.instruments) if books is not None else "none"
            await _invalid(
                context,
                "instrument",
                f"no order book is kept for {instrument.key} (MARKETDATA_BOOK_INSTRUMENTS); books: {kept}",
            )
        if depth == 0:
            depth = DEFAULT_DEPTH
        elif depth not in DEPTHS:
            await _invalid(
                context, "depth", f"must be one of {', '.join(map(str, DEPTHS))} (0 means 20), got {depth}"
            )
        return instrument, depth

    async def _book_composite(
        self, key: str, has_instrument: bool, context: grpc.aio.ServicerContext
    ) -> Composite:
        """The composite of a book request; INVALID_ARGUMENT when unknown or no feed keeps its book."""
        if has_instrument:
            await _invalid(context, "composite", "give either instrument or composite, not both")
        try:
            composite = resolve(self._collector.health.composites, key)
        except ValueError as exc:
            await _invalid(context, "composite", str(exc))
            raise  # not reached
        if not self._composite_books(composite):
            await _invalid(context, "composite", f"no order book is kept for {composite.symbol} on any feed")
        return composite

    def _composite_books(self, composite: Composite) -> list[InstrumentId]:
        books = self._collector.books
        return [i for i in composite.candidates if books is not None and books.has_book(i)]

    def _composite_book(self, composite: Composite) -> tuple[InstrumentId, collector_pb2.Failover]:
        """The book answering for a composite now: the followed feed's, or, when that feed keeps no
        book, the healthiest feed's with one; and the Failover naming it."""
        with_books = self._composite_books(composite)
        selected = composite.selected
        if selected is None or selected not in with_books:
            scores = {m: s.result.score for m, s in self._collector.health.feeds.items()}
            selected = max(with_books, key=lambda i: scores.get(i.market, 0))
        failover = composite.to_proto()
        failover.selected.CopyFrom(selected.to_proto())
        return selected, failover

    async def GetOrderBook(
        self, request: collector_pb2.GetOrderBookRequest, context: grpc.aio.ServicerContext
    ) -> collector_pb2.GetOrderBookResponse:
        failover: collector_pb2.Failover | None = None
        if request.composite:
            composite = await self._book_composite(request.composite, request.HasField("instrument"), context)
            selected, failover = self._composite_book(composite)
            instrument, depth = await self._book_args(selected.to_proto(), True, request.depth, context)
        else:
            instrument, depth = await self._book_args(
                request.instrument, request.HasField("instrument"), request.depth, context
            )
        books = self._collector.books
        assert books is not None
        try:
            view = books.view(instrument, depth)
        except BookUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise  # not reached
        return collector_pb2.GetOrderBookResponse(view=view, failover=failover)

    async def StreamOrderBook(
        self, request: collector_pb2.StreamOrderBookRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[collector_pb2.StreamOrderBookResponse]:
        composite: Composite | None = None
        failover: collector_pb2.Failover | None = None
        if request.composite:
            composite = await self._book_composite(request.composite, request.HasField("instrument"), context)
            selected, failover = self._composite_book(composite)
            instrument, depth = await self._book_args(selected.to_proto(), True, request.depth, context)
        else:
            instrument, depth = await self._book_args(
                request.instrument, request.HasField("instrument"), request.depth, context
            )
        interval_ms = request.interval_ms
        if interval_ms and not 10 <= interval_ms <= 3_600_000:
            await _invalid(
                context, "interval_ms", f"must be 0 (every update) or 10..3600000 ms, got {interval_ms}"
            )
        books = self._collector.books
        assert books is not None
        changed = books.watch(instrument)
        sent: tuple[int, int, int] | None = None
        try:
            first = True
            while True:
                if not first:
                    if interval_ms:
                        await asyncio.sleep(interval_ms / 1000)
                    elif composite is None:
                        await changed.wait()
                        changed.clear()
                    else:
                        # also wake each health tick: the composite may switch while this book is quiet
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(changed.wait(), COMPOSITE_RECHECK_S)
                        changed.clear()
                first = False
                if composite is not None:
                    now_selected, now_failover = self._composite_book(composite)
                    if now_selected != instrument:
                        # the composite switched: follow it, and say so on the next message
                        books.unwatch(instrument, changed)
                        instrument, changed, sent = now_selected, books.watch(now_selected), None
                        failover = now_failover
                try:
                    view = books.view(instrument, depth)
                except BookUnavailable:
                    continue
                mark = (view.book.update_id, view.state, view.book.receive_time_ns)
                if not interval_ms and mark == sent:
                    continue
                sent = mark
                yield collector_pb2.StreamOrderBookResponse(view=view, failover=failover)
                failover = None
        finally:
            books.unwatch(instrument, changed)


def add_collector_service(servicer: CollectorServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_CollectorServiceServicer_to_server, but StreamTrades sends raw bytes."""
    add_servicer(
        servicer,
        server,
        collector_pb2.DESCRIPTOR.services_by_name["CollectorService"],
        frozenset({"StreamTrades"}),
    )
