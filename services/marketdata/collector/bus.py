"""TradeBus: turns in-order trades into micro-batches and fans them out to StreamTrades subscribers.

Batching: trades published during one event-loop turn are flushed together by a call_soon
callback, so a quiet feed is delivered at once and a busy one in larger batches; full batches of
`max_batch` trades go out inline. With `min_interval_s` (MARKETDATA_STREAM_MIN_INTERVAL_MS, off by
default) flushes are at least that far apart: after a quiet spell the next flush is at once, while
trades keep coming they are gathered until the interval is over (every message costs each subscriber
a gRPC read, tens of microseconds in Python). Trades arrive as wire bytes (collector/trade_runs.py),
so a batch is the StreamTradesResponse framing around the runs' bytes, made once; the same bytes go
to every subscriber.

Back-pressure: each subscriber has a bounded queue; when it is full the oldest batch is dropped
and counted, so one slow consumer never slows the collector or the other consumers. A subscriber
that is behind gets what queued up meanwhile as one message per instrument (its batches joined, in
order, up to JOIN_MAX_BYTES a message): a stream writes one message per event-loop turn while the
readers of a busy collector add several batches per turn, so one write per batch kept it behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from marketdata.collector.trade_runs import TradeRun
from marketdata.core.instruments import InstrumentId
from marketdata.core.wire import length_delimited

log = logging.getLogger(__name__)

# Wire form of StreamTradesResponse{batch: TradeBatch{instrument, trades}}, written by hand around
# the run's bytes (already TradeBatch.trades fields). Fields go out in field-number order, so the
# bytes are exactly what SerializeToString makes.
_BATCH_KEY = 0x0A  # StreamTradesResponse.batch: field 1, length-delimited
_INSTRUMENT_KEY = 0x0A  # TradeBatch.instrument: field 1, length-delimited
# Largest message made of a subscriber's queued batches (about 10k trades; grpc's limit is 16 MiB
# between our services, 4 MiB by default elsewhere).
JOIN_MAX_BYTES = 1 << 20


def instrument_field(instrument: InstrumentId) -> bytes:
    """TradeBatch.instrument, keyed and length-prefixed."""
    return length_delimited(_INSTRUMENT_KEY, instrument.to_proto().SerializeToString())


def stream_trades_response(header: bytes, run: TradeRun) -> bytes:
    """A serialized StreamTradesResponse carrying one batch; `header` is instrument_field()."""
    return length_delimited(_BATCH_KEY, header + run.wire)


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
        self._queue: deque[tuple[InstrumentId, bytes]] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._closed = False
        self._metrics = metrics
        self.dropped = 0

    def wants(self, instrument: InstrumentId) -> bool:
        return self.instruments is None or instrument in self.instruments

    def put(self, instrument: InstrumentId, message: bytes) -> None:
        if len(self._queue) >= self._capacity:
            self._queue.popleft()
            self.dropped += 1
            self._metrics.dropped_batches.inc()
        self._queue.append((instrument, message))
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def drain(self) -> list[bytes]:
        """The queued messages one by one, taken without waiting (tests, diagnostics)."""
        messages = [message for _, message in self._queue]
        self._queue.clear()
        return messages

    async def messages(self) -> AsyncIterator[bytes]:
        queue = self._queue
        while True:
            if len(queue) == 1:
                yield queue.popleft()[1]
            elif queue:
                backlog = list(queue)
                queue.clear()
                for message in joined_per_instrument(backlog):
                    yield message
            elif self._closed:
                return
            else:
                self._ready.clear()
                await self._ready.wait()


def joined_per_instrument(backlog: list[tuple[InstrumentId, bytes]]) -> list[bytes]:
    """The queued messages as one per instrument (or more, of up to JOIN_MAX_BYTES each), in each
    instrument's order. Serialized messages concatenate as a merge (protobuf's rule for an embedded
    message field that appears more than once): StreamTradesResponse.batch fields of one instrument
    become one batch holding their trades in order, and a failover notice stays."""
    groups: dict[InstrumentId, list[tuple[int, list[bytes]]]] = {}
    for instrument, message in backlog:
        chunks = groups.setdefault(instrument, [])
        if chunks and chunks[-1][0] + len(message) <= JOIN_MAX_BYTES:
            size, parts = chunks[-1]
            parts.append(message)
            chunks[-1] = (size + len(message), parts)
        else:
            chunks.append((len(message), [message]))
    return [b"".join(parts) for chunks in groups.values() for _, parts in chunks]


class TradeBus:
    def __init__(
        self,
        registry: CollectorRegistry,
        max_batch: int,
        subscriber_capacity: int,
        min_interval_s: float = 0.0,
    ) -> None:
        self.max_batch = max_batch
        self._min_interval_s = min_interval_s
        self._last_flush = float("-inf")
        self._capacity = subscriber_capacity
        self.capacity = subscriber_capacity
        # Per instrument: the runs published this turn and their trade count.
        self._pending: dict[InstrumentId, list[TradeRun]] = {}
        self._pending_count: dict[InstrumentId, int] = {}
        self._instrument_fields: dict[InstrumentId, bytes] = {}
        self._batch_sizes: dict[InstrumentId, Histogram] = {}
        self._subscribers: list[Subscription] = []
        self._sinks: list[Callable[[InstrumentId, TradeRun], None]] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics = BusMetrics(registry)

    def publish(self, instrument: InstrumentId, run: TradeRun) -> None:
        """Queue trades (already deduplicated and in order) for the next flush."""
        pending = self._pending.get(instrument)
        if pending is None:
            self._pending[instrument] = pending = [run]
            count = self._pending_count[instrument] = len(run.ids)
        else:
            pending.append(run)
            count = self._pending_count[instrument] = self._pending_count[instrument] + len(run.ids)
        size = self.max_batch
        if count >= size:
            # Full batches go at once (a reader hands over a whole turn's trades, a Bybit frame
            # carries up to 1024); the rest waits for the flush at the end of the turn.
            pieces = TradeRun.join(pending).split(size)
            rest = pieces.pop() if len(pieces[-1].ids) < size else None
            for piece in pieces:
                self._send(instrument, piece)
            if rest is None:
                del self._pending[instrument], self._pending_count[instrument]
                return
            self._pending[instrument] = [rest]
            self._pending_count[instrument] = len(rest.ids)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            wait = self._last_flush + self._min_interval_s - loop.time() if self._min_interval_s else 0.0
            if wait > 0:
                loop.call_later(wait, self.flush)
            else:
                loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._min_interval_s and self._loop is not None:
            self._last_flush = self._loop.time()
        pending, self._pending = self._pending, {}
        self._pending_count = {}
        for instrument, runs in pending.items():
            self._send(instrument, TradeRun.join(runs))

    def _send(self, instrument: InstrumentId, trades: TradeRun) -> None:
        batch_sizes = self._batch_sizes.get(instrument)
        if batch_sizes is None:
            batch_sizes = self._batch_sizes[instrument] = self.metrics.batch_trades.labels(
                instrument.market.value
            )
        batch_sizes.observe(len(trades.ids))
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
            subscription.put(instrument, message)

    def add_sink(self, sink: Callable[[InstrumentId, TradeRun], None]) -> None:
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
