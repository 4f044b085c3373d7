"""TradeBus: turns in-order trades into micro-batches and fans them out to StreamTrades subscribers.

Batching: trades published during one event-loop turn are flushed together by a call_soon
callback, so a quiet feed is delivered at once and a busy one in larger batches; full batches of
`max_batch` trades go out inline. Each batch is serialized once, as the wire form of a
StreamTradesResponse, and the same bytes go to every subscriber.

Back-pressure: each subscriber has a bounded queue; when it is full the oldest batch is dropped
and counted, so one slow consumer never slows the collector or the other consumers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from marketdata.core.instruments import InstrumentId
from marketdata.core.wire import length_delimited, varint
from marketdata.v1 import common_pb2

log = logging.getLogger(__name__)

# Wire form of StreamTradesResponse{batch: TradeBatch{instrument, trades}}, written by hand: each
# trade is serialized by protobuf (C) and the framing around it is joined here, which costs a third
# of building a TradeBatch (that deep-copies every trade into it) and serializing that. Fields go out
# in field-number order, so the bytes are exactly what SerializeToString makes.
_BATCH_KEY = 0x0A  # StreamTradesResponse.batch: field 1, length-delimited
_INSTRUMENT_KEY = 0x0A  # TradeBatch.instrument: field 1, length-delimited
_TRADE_KEY = 0x12  # TradeBatch.trades: field 2, length-delimited
# Key and length prefix of a serialized trade of each size up to 2 KiB (larger ones are framed on
# the slow path).
_TRADE_PREFIXES = tuple(bytes((_TRADE_KEY,)) + varint(size) for size in range(2048))
_serialize_trade = common_pb2.Trade.SerializeToString


def instrument_field(instrument: InstrumentId) -> bytes:
    """TradeBatch.instrument, keyed and length-prefixed."""
    return length_delimited(_INSTRUMENT_KEY, instrument.to_proto().SerializeToString())


def stream_trades_response(header: bytes, trades: list[common_pb2.Trade]) -> bytes:
    """A serialized StreamTradesResponse carrying one batch; `header` is instrument_field()."""
    blobs = list(map(_serialize_trade, trades))
    prefixes = _TRADE_PREFIXES
    try:
        body = header + b"".join([prefixes[len(blob)] + blob for blob in blobs])
    except IndexError:  # a trade of 2 KiB or more
        body = header + b"".join([length_delimited(_TRADE_KEY, blob) for blob in blobs])
    return length_delimited(_BATCH_KEY, body)


class BusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_trades = Histogram(
            "marketdata_collector_batch_trades",
            "Trades per delivered micro-batch",
            labelnames=["feed"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=registry,
        )
        self.subscribers = Gauge(
            "marketdata_collector_stream_subscribers", "Open StreamTrades subscriptions", registry=registry
        )
        self.dropped_batches = Counter(
            "marketdata_collector_subscriber_dropped_batches",
            "Batches dropped because a subscriber's queue was full (oldest first)",
            registry=registry,
        )


class Subscription:
    """One consumer's bounded queue of serialized StreamTradesResponse messages."""

    def __init__(self, instruments: Collection[InstrumentId] | None, capacity: int, metrics: BusMetrics):
        self.instruments = frozenset(instruments) if instruments else None
        self._queue: deque[bytes] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._closed = False
        self._metrics = metrics
        self.dropped = 0

    def wants(self, instrument: InstrumentId) -> bool:
        return self.instruments is None or instrument in self.instruments

    def put(self, message: bytes) -> None:
        if len(self._queue) >= self._capacity:
            self._queue.popleft()
            self.dropped += 1
            self._metrics.dropped_batches.inc()
        self._queue.append(message)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def messages(self) -> AsyncIterator[bytes]:
        queue = self._queue
        while True:
            while queue:
                yield queue.popleft()
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()


class TradeBus:
    def __init__(self, registry: CollectorRegistry, max_batch: int, subscriber_capacity: int) -> None:
        self._max_batch = max_batch
        self._capacity = subscriber_capacity
        self.capacity = subscriber_capacity
        self._pending: dict[InstrumentId, list[common_pb2.Trade]] = {}
        self._instrument_fields: dict[InstrumentId, bytes] = {}
        self._batch_sizes: dict[InstrumentId, Histogram] = {}
        self._subscribers: list[Subscription] = []
        self._sinks: list[Callable[[InstrumentId, list[common_pb2.Trade]], None]] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics = BusMetrics(registry)

    def publish(self, instrument: InstrumentId, trades: list[common_pb2.Trade]) -> None:
        """Queue trades (already deduplicated and in order) for the next flush."""
        pending = self._pending.get(instrument)
        if pending is None:
            self._pending[instrument] = pending = []
        pending.extend(trades)
        size = self._max_batch
        if len(pending) >= size:
            # Full batches go at once (a reader hands over a whole turn's trades, a Bybit frame
            # carries up to 1024); the rest waits for the flush at the end of the turn.
            full = len(pending) - len(pending) % size
            for start in range(0, full, size):
                self._send(instrument, pending[start : start + size])
            del pending[:full]
            if not pending:
                del self._pending[instrument]
                return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for instrument, trades in pending.items():
            self._send(instrument, trades)

    def _send(self, instrument: InstrumentId, trades: list[common_pb2.Trade]) -> None:
        batch_sizes = self._batch_sizes.get(instrument)
        if batch_sizes is None:
            batch_sizes = self._batch_sizes[instrument] = self.metrics.batch_trades.labels(
                instrument.market.value
            )
        batch_sizes.observe(len(trades))
        for sink in self._sinks:
            sink(instrument, trades)
        if not self._subscribers:
            return
        targets = [s for s in self._subscribers if s.wants(instrument)]
        if not targets:
            return
        header = self._instrument_fields.get(instrument)
        if header is None:
            header = self._instrument_fields[instrument] = instrument_field(instrument)
        message = stream_trades_response(header, trades)
        for subscription in targets:
            subscription.put(message)

    def add_sink(self, sink: Callable[[InstrumentId, list[common_pb2.Trade]], None]) -> None:
        """Also hand every flushed batch to `sink` (e.g. the storage writer), before serialization."""
        self._sinks.append(sink)

    def subscribe(
        self, instruments: Collection[InstrumentId] | None, subscription: Subscription | None = None
    ) -> Subscription:
        """Subscribe to `instruments` (None: all), or attach a ready-made subscription."""
        if subscription is None:
            subscription = Subscription(instruments, self._capacity, self.metrics)
        self._subscribers.append(subscription)
        self.metrics.subscribers.set(len(self._subscribers))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
        self.metrics.subscribers.set(len(self._subscribers))
        if subscription.dropped:
            log.warning("slow StreamTrades subscriber lost batches", extra={"dropped": subscription.dropped})

    def close(self) -> None:
        self.flush()
        for subscription in list(self._subscribers):
            subscription.close()
