"""The collector's side of storage: every trade batch goes to StorageService.WriteTrades, and stays in
memory until storage acknowledges it (after its durable commit).

- The bus hands each flushed batch to `on_trades` as wire bytes (collector/trade_runs.py); behind the
  instrument's header they are kept under a batch id and sent on a long-lived WriteTrades stream.
- Unacknowledged batches are bounded (MARKETDATA_STORAGE_UNACKED_MAX_TRADES): past it the oldest are
  shed, counted (`marketdata_collector_storage_shed_batches_total`) and logged (first time, then at
  most every 10 s with the running count).
- When the stream breaks (storage restarted, killed, unreachable), it is reopened with backoff and
  every unacknowledged batch is sent again, oldest first. Storage writes are idempotent by trade
  identity, so a batch that was committed but not yet acknowledged is not counted twice.
- Each batch carries the instrument's tick size (from exchange metadata, core/instrument_meta), so
  storage can bin footprint rows; batches of an instrument whose tick size is not known yet wait.
- Order-book snapshots (`write_book_snapshots`) use a second stream with the same guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from marketdata.collector.trade_runs import TradeRun
from marketdata.core.config import Settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instrument_meta import fetch_tick_sizes
from marketdata.core.instruments import InstrumentId
from marketdata.core.wire import length_delimited, varint
from marketdata.v1 import common_pb2, order_book_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2

log = logging.getLogger(__name__)

WRITE_TRADES = "/marketdata.v1.StorageService/WriteTrades"
WRITE_BOOK_SNAPSHOTS = "/marketdata.v1.StorageService/WriteBookSnapshots"
GET_LAST_TRADES = "/marketdata.v1.StorageService/GetLastTrades"
BACKOFF_INITIAL_S = 0.2
DONE_WRITING_TIMEOUT_S = 1.0
BACKOFF_MAX_S = 5.0
SHED_LOG_INTERVAL_S = 10.0


# A queued trade batch takes in later batches of its instrument up to this many trades (and a tenth of
# the unacked bound, so that shedding stays fine-grained).
JOIN_MAX_TRADES = 1000


@dataclass(slots=True)
class _Entry:
    batch_id: int
    # TradeBatch bytes (instrument, then trades; later batches joined add their trades), or the
    # snapshots field(s) of WriteBookSnapshotsRequest
    parts: list[bytes]
    count: int
    instrument: InstrumentId | None
    first_sent: float = 0.0

    @property
    def body(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


class _StreamMetrics:
    def __init__(
        self,
        unacked_batches: Gauge,
        unacked_items: Gauge,
        shed_batches: Counter,
        shed_items: Counter,
        latency: Histogram,
        connected: Gauge,
        resent: Counter,
        rejected: Counter,
    ) -> None:
        self.unacked_batches = unacked_batches
        self.unacked_items = unacked_items
        self.shed_batches = shed_batches
        self.shed_items = shed_items
        self.latency = latency
        self.connected = connected
        self.resent = resent
        self.rejected = rejected


class AckedStream:
    """One bidirectional stream with per-batch acknowledgements, a bounded unacked buffer and resend."""

    def __init__(
        self,
        what: str,
        channel: grpc.aio.Channel,
        method: str,
        response_type: Any,
        max_items: int,
        metrics: _StreamMetrics,
        render: Callable[[_Entry], bytes | None],
        linger_s: float = 0.0,
    ) -> None:
        self.what = what
        # Batches wait up to this long for later ones of their instrument to join them (see _join).
        self._linger_s = linger_s
        self._linger: asyncio.TimerHandle | None = None
        self._method = channel.stream_stream(
            method, request_serializer=None, response_deserializer=response_type.FromString
        )
        self._max_items = max_items
        self._metrics = metrics
        self._render = render
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        self.unacked_items = 0
        self._next_id = 1
        # Per instrument, its newest entry: later batches join it while it is still unsent.
        self._newest: dict[InstrumentId, _Entry] = {}
        self._join_max = max(1, min(JOIN_MAX_TRADES, max_items // 10))
        self._to_send: deque[int] = deque()
        self._waiting: list[int] = []
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.shed_batches = 0
        self.shed_items = 0
        self.acked_batches = 0
        self.acked_items = 0
        self.resent_batches = 0
        self.joined_batches = 0
        self.connects = 0
        self._last_shed_log = 0.0
        self._shed_since_log = 0
        metrics.unacked_batches.set_function(lambda: len(self.entries))
        metrics.unacked_items.set_function(lambda: self.unacked_items)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"storage-writer-{self.what}")

    def add(self, body: bytes, count: int, instrument: InstrumentId | None, header: int = 0) -> None:
        """Queue a batch. `body[:header]` is per-batch framing (the instrument) that a batch joining
        an earlier one of its instrument leaves out."""
        while self.entries and self.unacked_items + count > self._max_items:
            _, oldest = self.entries.popitem(last=False)
            self.unacked_items -= oldest.count
            self._shed(oldest)
        if instrument is not None and self._join(instrument, body[header:], count):
            return
        entry = _Entry(self._next_id, [body], count, instrument)
        self._next_id += 1
        self.entries[entry.batch_id] = entry
        if instrument is not None:
            self._newest[instrument] = entry
        self.unacked_items += count
        self._drained.clear()
        self._to_send.append(entry.batch_id)
        self._wake_after_linger(count)

    def _wake_after_linger(self, count: int) -> None:
        """Wake the sender now, or once the linger has passed, so that the batches coming meanwhile join
        the queued ones: at one frame a batch, storage would otherwise pay a request, a commit slot and
        an acknowledgement per exchange frame (hundreds of microseconds each) for a handful of trades."""
        if self._linger_s <= 0 or count >= self._join_max or self._stopping:
            self._wake.set()
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self._linger_s, self._linger_over)

    def _linger_over(self) -> None:
        self._linger = None
        self._wake.set()

    def _join(self, instrument: InstrumentId, trades: bytes, count: int) -> bool:
        """Add a batch's trades to its instrument's newest entry if that is still waiting to be sent.

        While storage keeps up, each batch is written as soon as it comes and nothing joins. When
        storage is slow or away, the backlog would otherwise be one request (and one commit slot and
        one acknowledgement) per exchange frame; joined, it drains at storage's batch rate. Order
        within the instrument is kept: the newest entry is behind every other entry of it."""
        newest = self._newest.get(instrument)
        if (
            newest is None
            or newest.first_sent
            or newest.count + count > self._join_max
            or self.entries.get(newest.batch_id) is not newest
        ):
            return False
        newest.parts.append(trades)
        newest.count += count
        self.unacked_items += count
        self._drained.clear()
        self.joined_batches += 1
        if newest.count >= self._join_max:
            self._wake.set()  # full: no reason to wait for the linger
        return True

    def _shed(self, entry: _Entry) -> None:
        self.shed_batches += 1
        self.shed_items += entry.count
        self._metrics.shed_batches.inc()
        self._metrics.shed_items.inc(entry.count)
        self._shed_since_log += entry.count
        now = time.monotonic()
        if self._last_shed_log == 0.0 or now - self._last_shed_log >= SHED_LOG_INTERVAL_S:
            log.warning(
                f"storage has not acknowledged {self.what} for too long; shedding the oldest",
                extra={
                    "shed": self._shed_since_log,
                    "shed_total": self.shed_items,
                    "unacked": self.unacked_items,
                    "limit": self._max_items,
                    "instrument": entry.instrument.key if entry.instrument else None,
                },
            )
            self._last_shed_log = now
            self._shed_since_log = 0

    def release_waiting(self) -> None:
        """Entries that could not be rendered (tick size unknown) go back in line."""
        if self._waiting:
            self._to_send.extendleft(reversed(self._waiting))
            self._waiting.clear()
            self._wake.set()

    def _ack(self, response: Any) -> None:
        entry = self.entries.pop(response.batch_id, None)
        if entry is None:
            return  # shed meanwhile, or acknowledged twice (resend raced the first ack)
        self.unacked_items -= entry.count
        self.acked_batches += 1
        self.acked_items += entry.count
        if entry.first_sent:
            self._metrics.latency.observe(time.monotonic() - entry.first_sent)
        if not self.entries:
            self._drained.set()

    async def _read(self, call: Any) -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            self._ack(response)

    async def _run(self) -> None:
        delay = BACKOFF_INITIAL_S
        while not self._stopping:
            call = self._method()
            reader: asyncio.Task[None] | None = None
            acked_before = self.acked_batches
            try:
                await call.wait_for_connection()
                self.connects += 1
                self._metrics.connected.set(1)
                reader = asyncio.create_task(self._read(call))
                self._waiting.clear()
                self._to_send = deque(self.entries)
                if self.connects > 1 and self._to_send:
                    self.resent_batches += len(self._to_send)
                    self._metrics.resent.inc(len(self._to_send))
                    log.info(
                        f"storage stream reopened; resending unacknowledged {self.what}",
                        extra={"batches": len(self._to_send), "items": self.unacked_items},
                    )
                await self._pump(call, reader)
                await reader
                if self._stopping:
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(call, exc)
            finally:
                self._metrics.connected.set(0)
                if reader is not None:
                    reader.cancel()
                    with contextlib.suppress(BaseException):
                        await reader
                call.cancel()
                # With client interceptors (tracing) grpc feeds write() through a request iterator
                # that ends only when told; without this every broken stream left that iterator's
                # task pending until garbage collection ("Task was destroyed but it is pending").
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(call.done_writing(), DONE_WRITING_TIMEOUT_S)
            if self.acked_batches > acked_before:
                delay = BACKOFF_INITIAL_S
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(BACKOFF_MAX_S, delay * 2)

    async def _pump(self, call: Any, reader: asyncio.Task[None]) -> None:
        """Send what is queued until the reader ends (stream broken) or the writer stops."""
        while True:
            while self._to_send:
                if reader.done():
                    return
                batch_id = self._to_send.popleft()
                entry = self.entries.get(batch_id)
                if entry is None:
                    continue
                data = self._render(entry)
                if data is None:
                    self._waiting.append(batch_id)
                    continue
                if not entry.first_sent:
                    entry.first_sent = time.monotonic()
                await call.write(data)
            if self._stopping and not self._waiting:
                await call.done_writing()
                return
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if reader.done():
                return

    async def _failed(self, call: Any, exc: Exception) -> None:
        code = None
        details = str(exc)
        with contextlib.suppress(Exception):
            code = await call.code()
            details = await call.details() or details
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            rejected = None
            with contextlib.suppress(Exception):
                for key, value in await call.trailing_metadata() or ():
                    if key == "rejected-batch-id":
                        rejected = int(value)
            entry = self.entries.pop(rejected, None) if rejected is not None else None
            if entry is not None:
                self.unacked_items -= entry.count
                self._metrics.rejected.inc()
                if not self.entries:
                    self._drained.set()
            log.error(
                f"storage rejected a {self.what} batch; it is dropped",
                extra={"batch_id": rejected, "error": details},
            )
            return
        log.warning(
            f"storage stream for {self.what} broke; will resend what is unacknowledged",
            extra={
                "code": code.name if code is not None else None,
                "error": details,
                "unacked": len(self.entries),
            },
        )

    async def stop(self, timeout: float) -> None:
        """Wait up to `timeout` for every batch to be acknowledged, then close the stream."""
        if self.entries:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        self._stopping = True
        self._wake.set()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.entries:
            log.warning(
                f"stopping with {self.what} storage never acknowledged",
                extra={"batches": len(self.entries), "items": self.unacked_items},
            )


class StorageWriter:
    """Attach with `bus.add_sink(writer.on_trades)`; `await start()`, `await stop()`."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry, instruments: Sequence[InstrumentId]
    ) -> None:
        self.settings = settings
        self.addr = settings.storage_addr
        self.instruments = tuple(instruments)
        self.tick_sizes: dict[InstrumentId, str] = {}
        self._instrument_bytes: dict[InstrumentId, bytes] = {}
        self._channel: grpc.aio.Channel | None = None
        self._ticks_task: asyncio.Task[None] | None = None
        self.trades: AckedStream | None = None
        self.snapshots: AckedStream | None = None
        p = "marketdata_collector_storage_"
        latency = Histogram(
            p + "ack_latency_seconds",
            "From first sending a trade batch to storage's acknowledgement (its durable commit)",
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                30.0,
                60.0,
            ),
            registry=registry,
        )
        self._trade_metrics = _StreamMetrics(
            Gauge(
                p + "unacked_batches", "Trade batches sent or queued, not yet acknowledged", registry=registry
            ),
            Gauge(p + "unacked_trades", "Trades not yet acknowledged by storage", registry=registry),
            Counter(
                p + "shed_batches", "Unacknowledged trade batches dropped at the bound", registry=registry
            ),
            Counter(p + "shed_trades", "Unacknowledged trades dropped at the bound", registry=registry),
            latency,
            Gauge(p + "connected", "1 while the WriteTrades stream is open", registry=registry),
            Counter(
                p + "resent_batches", "Trade batches sent again after the stream reopened", registry=registry
            ),
            Counter(
                p + "rejected_batches",
                "Trade batches storage refused as invalid (dropped)",
                registry=registry,
            ),
        )
        self._snapshot_metrics = _StreamMetrics(
            Gauge(p + "book_unacked_batches", "Snapshot batches not yet acknowledged", registry=registry),
            Gauge(
                p + "book_unacked_snapshots", "Order-book snapshots not yet acknowledged", registry=registry
            ),
            Counter(p + "book_shed_batches", "Snapshot batches dropped at the bound", registry=registry),
            Counter(p + "book_shed_snapshots", "Snapshots dropped at the bound", registry=registry),
            Histogram(
                p + "book_ack_latency_seconds",
                "From sending snapshots to their acknowledgement",
                registry=registry,
            ),
            Gauge(p + "book_connected", "1 while the WriteBookSnapshots stream is open", registry=registry),
            Counter(p + "book_resent_batches", "Snapshot batches sent again", registry=registry),
            Counter(p + "book_rejected_batches", "Snapshot batches refused as invalid", registry=registry),
        )

    async def start(self) -> None:
        self._channel = create_channel(self.addr)
        self.trades = AckedStream(
            "trades",
            self._channel,
            WRITE_TRADES,
            storage_pb2.WriteTradesResponse,
            self.settings.storage_unacked_max_trades,
            self._trade_metrics,
            self._render_trades,
            self.settings.storage_write_linger_ms / 1000,
        )
        self.snapshots = AckedStream(
            "book snapshots",
            self._channel,
            WRITE_BOOK_SNAPSHOTS,
            storage_pb2.WriteBookSnapshotsResponse,
            self.settings.storage_unacked_max_snapshots,
            self._snapshot_metrics,
            lambda entry: b"\x08" + varint(entry.batch_id) + entry.body,
        )
        self._ticks_task = asyncio.create_task(
            self._resolve_ticks(self.instruments), name="storage-tick-sizes"
        )
        self.trades.start()
        self.snapshots.start()
        log.info("storage writer started", extra={"storage": self.addr})

    async def stop(self, timeout: float = 5.0) -> None:
        if self._ticks_task is not None:
            self._ticks_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticks_task
        for stream in (self.trades, self.snapshots):
            if stream is not None:
                await stream.stop(timeout)
        if self._channel is not None:
            await self._channel.close()

    async def last_trades(self, timeout: float) -> dict[InstrumentId, list[common_pb2.Trade]]:
        """Where each instrument's stored history ends (StorageService.GetLastTrades), asked again
        until storage answers or `timeout` passes; instruments with nothing stored are absent.
        Raises grpc.aio.AioRpcError or TimeoutError when storage did not answer in time."""
        assert self._channel is not None, "start() first"
        call = self._channel.unary_unary(
            GET_LAST_TRADES,
            request_serializer=storage_pb2.GetLastTradesRequest.SerializeToString,
            response_deserializer=storage_pb2.GetLastTradesResponse.FromString,
        )
        request = storage_pb2.GetLastTradesRequest(instruments=[i.to_proto() for i in self.instruments])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = BACKOFF_INITIAL_S
        while True:
            try:
                # wait_for_ready: a storage that is starting (or restarting) is waited for, to the deadline
                response = await call(request, timeout=max(0.1, deadline - loop.time()), wait_for_ready=True)
                return {InstrumentId.from_proto(b.instrument): list(b.trades) for b in response.batches}
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or loop.time() + delay >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX_S, delay * 2)

    async def _resolve_ticks(self, instruments: Sequence[InstrumentId]) -> None:
        delay = 1.0
        while True:
            missing = [i for i in instruments if i not in self.tick_sizes]
            if not missing:
                return
            try:
                self.tick_sizes.update(await fetch_tick_sizes(self.settings, missing))
                log.info("tick sizes known", extra={k.key: v for k, v in self.tick_sizes.items()})
            except Exception as exc:
                log.warning(
                    "cannot read tick sizes from exchange metadata; trade batches wait for them",
                    extra={"error": str(exc), "instruments": [i.key for i in missing], "retry_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)
                continue
            finally:
                if self.trades is not None:
                    self.trades.release_waiting()

    def _render_trades(self, entry: _Entry) -> bytes | None:
        assert entry.instrument is not None
        tick = self.tick_sizes.get(entry.instrument)
        if tick is None:
            if self._ticks_task is None or self._ticks_task.done():
                self._ticks_task = asyncio.create_task(self._resolve_ticks([entry.instrument]))
            return None
        return (
            b"\x08"
            + varint(entry.batch_id)
            + length_delimited(0x12, entry.body)
            + length_delimited(0x1A, tick.encode())
        )

    # --- sinks -------------------------------------------------------------------------------------

    def on_trades(self, instrument: InstrumentId, run: TradeRun) -> None:
        """The bus sink: keep and send one flushed batch (its trades are already wire bytes)."""
        if self.trades is None or not run.ids:
            return
        header = self._instrument_bytes.get(instrument)
        if header is None:
            header = self._instrument_bytes[instrument] = length_delimited(
                0x0A, instrument.to_proto().SerializeToString()
            )
        self.trades.add(header + run.wire, len(run.ids), instrument, len(header))

    def write_book_snapshots(self, snapshots: list[order_book_pb2.OrderBookSnapshot]) -> None:
        """Keep and send order-book snapshots (of any instruments) as one batch."""
        if self.snapshots is None or not snapshots:
            return
        body = b"".join([length_delimited(0x12, s.SerializeToString()) for s in snapshots])
        self.snapshots.add(body, len(snapshots), None)

    @property
    def unacked_trades(self) -> int:
        return self.trades.unacked_items if self.trades is not None else 0
