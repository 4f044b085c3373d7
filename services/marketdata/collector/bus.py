"""TradeBus: turns in-order trades into micro-batches and fans them out to StreamTrades subscribers.

Batching: trades published during one event-loop turn are flushed together by a call_soon
callback, so a quiet feed is delivered at once and a busy one in larger batches; a batch also
flushes inline when it reaches `max_batch`. Each batch is serialized once, as the wire form of a
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
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2

log = logging.getLogger(__name__)


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
        self._instrument_protos: dict[InstrumentId, common_pb2.Instrument] = {}
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
        if len(pending) >= self._max_batch:
            self._send(instrument, self._pending.pop(instrument))
        elif not self._flush_scheduled:
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
        proto = self._instrument_protos.get(instrument)
        if proto is None:
            proto = self._instrument_protos[instrument] = instrument.to_proto()
        message = collector_pb2.StreamTradesResponse(
            batch=common_pb2.TradeBatch(instrument=proto, trades=trades)
        ).SerializeToString()
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
