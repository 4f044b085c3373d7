"""The backend behind its threads: one writer thread with group commit, a small pool for reads.

Batches from every WriteTrades stream queue here; the writer takes everything that has queued (up to
MAX_GROUP_TRADES) into one transaction, so the durable commit (an fsync) is paid once for many batches.
While one group commits, the next one gathers. Each batch's future resolves after its commit, which is
when the stream acknowledges it. Pending work is bounded: past MAX_PENDING_TRADES a stream waits,
which back-pressures its writer through gRPC flow control.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from marketdata.core.instruments import InstrumentId
from marketdata.storage.backends.base import (
    Backend,
    ChangedBar,
    InvalidBatch,
    StoredBar,
    StoreUnavailable,
    TradeWrite,
    WriteOutcome,
)
from marketdata.storage.metrics import StorageMetrics, StoreState
from marketdata.v1 import order_book_pb2

log = logging.getLogger(__name__)


def _lower_priority(by: int) -> None:
    """Lower the calling thread's CPU priority. On Linux the nice value belongs to the thread, so the
    writer's commits (inserts, footprint encoding, SQLite's page writes: bursts of a few ms every 50 ms
    under a live feed) give way to latency-bound work on shared cores, while this process's event loop
    (acknowledgements) and readers (queries) keep theirs."""
    if by:
        try:
            os.nice(by)
        except OSError as exc:
            log.warning("cannot lower the storage writer's priority", extra={"error": str(exc)})


MAX_GROUP_TRADES = 50_000
MAX_PENDING_TRADES = 400_000
# An idle writer saves what the backend deferred (SQLite: live 1h bars) after this long; while writes
# come, each commit saves what is due.
DEFERRED_FLUSH_S = 0.5
T = TypeVar("T")


@dataclass(slots=True)
class _Pending:
    write: TradeWrite
    future: asyncio.Future[WriteOutcome]
    received: float


@dataclass(slots=True)
class _PendingSnapshots:
    snapshots: Sequence[order_book_pb2.OrderBookSnapshot]
    future: asyncio.Future[WriteOutcome]


class Store:
    def __init__(
        self,
        backend: Backend,
        state: StoreState,
        metrics: StorageMetrics,
        on_changed_bars: Callable[[list[ChangedBar]], None] | None = None,
        writer_nice: int = 0,
    ) -> None:
        self.backend = backend
        self.state = state
        self.metrics = metrics
        self._on_changed_bars = on_changed_bars
        self._writer = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="storage-writer", initializer=_lower_priority, initargs=(writer_nice,)
        )
        self._readers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="storage-reader")
        self._trades: deque[_Pending] = deque()
        self._snapshots: deque[_PendingSnapshots] = deque()
        self._pending_trades = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._task: asyncio.Task[None] | None = None
        self._last_attempt = 0.0

    async def start(self) -> None:
        await self.run_write(self.backend.open)
        self.state.newest_ms.update(
            {
                s.instrument: s.newest_ms
                for s in await self.run_read(self.backend.stats)
                if s.collection == "trades"
            }
        )
        self._task = asyncio.create_task(self._loop(), name="storage-group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._trades:
            if not item.future.done():
                item.future.set_exception(StoreUnavailable("storage is stopping"))
        for snap in self._snapshots:
            if not snap.future.done():
                snap.future.set_exception(StoreUnavailable("storage is stopping"))
        await self.run_write(self.backend.close)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    # --- thread helpers ----------------------------------------------------------------------------

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run on the writer thread (after the group being committed, before the next)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    async def iterate(self, iterator: Iterator[T]) -> Any:
        """Pull an iterator that reads the store on the reader pool: `async for item in store.iterate(it)`."""
        loop = asyncio.get_running_loop()
        sentinel = object()
        try:
            while True:
                item = await loop.run_in_executor(self._readers, next, iterator, sentinel)
                if item is sentinel:
                    return
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                await loop.run_in_executor(self._readers, close)

    # --- writes ------------------------------------------------------------------------------------

    def tick_size(self, instrument: InstrumentId) -> str:
        return self.backend.tick_sizes().get(instrument, "")

    async def write_trades(self, write: TradeWrite) -> asyncio.Future[WriteOutcome]:
        """Queue a batch; the returned future resolves after its durable commit."""
        while self._pending_trades >= MAX_PENDING_TRADES:
            self._space.clear()
            await self._space.wait()
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        self._trades.append(_Pending(write, future, time.perf_counter()))
        self._pending_trades += len(write.trades)
        self._wake.set()
        return future

    async def write_snapshots(
        self, snapshots: Sequence[order_book_pb2.OrderBookSnapshot]
    ) -> asyncio.Future[WriteOutcome]:
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        self._snapshots.append(_PendingSnapshots(snapshots, future))
        self._wake.set()
        return future

    def _take_group(self) -> list[_Pending]:
        group: list[_Pending] = []
        count = 0
        while self._trades and (not group or count + len(self._trades[0].write.trades) <= MAX_GROUP_TRADES):
            item = self._trades.popleft()
            group.append(item)
            count += len(item.write.trades)
        self._pending_trades -= count
        if self._pending_trades < MAX_PENDING_TRADES:
            self._space.set()
        return group

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), DEFERRED_FLUSH_S)
            except TimeoutError:
                if self.backend.has_deferred():
                    await self.flush_deferred()
                continue
            self._wake.clear()
            while self._trades or self._snapshots:
                if self._trades:
                    await self._commit_trades(self._take_group())
                if self._snapshots:
                    batch = list(self._snapshots)
                    self._snapshots.clear()
                    await self._commit_snapshots(batch)

    async def flush_deferred(self) -> None:
        """Have the backend save what it deferred (a failure is reported like a failed commit; the
        backend keeps what it could not save for the next attempt)."""
        try:
            changed = await self.run_write(self.backend.flush_deferred, int(time.time() * 1000))
        except Exception as exc:
            self._failed(exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(str(exc)))
            return
        if changed and self._on_changed_bars is not None:
            self._on_changed_bars(changed)

    async def read_footprints(
        self, instrument: InstrumentId, resolution: int, start_ms: int, end_ms: int
    ) -> list[StoredBar]:
        """Stored bars of [start_ms, end_ms), every committed trade in them: bars the backend deferred
        in that range are saved first."""
        if self.backend.has_deferred(instrument, start_ms, end_ms):
            await self.flush_deferred()
        return await self.run_read(self.backend.read_footprints, instrument, resolution, start_ms, end_ms)

    def _failed(self, exc: BaseException) -> None:
        self.metrics.write_errors.inc()
        if self.state.writable:
            log.error("store cannot commit", extra={"error": str(exc)})
        self.state.writable = False
        self.state.last_error = str(exc)

    def _succeeded(self) -> None:
        if not self.state.writable:
            log.info("store commits again")
        self.state.writable = True
        self.state.last_error = ""
        self.state.last_write_ok = time.monotonic()

    async def _commit_trades(self, group: list[_Pending]) -> None:
        self._last_attempt = time.monotonic()
        now_ms = int(time.time() * 1000)
        try:
            result = await self.run_write(self.backend.write_trades, [p.write for p in group], now_ms)
        except Exception as exc:
            failure = (
                exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(f"{type(exc).__name__}: {exc}")
            )
            if not isinstance(exc, StoreUnavailable):
                log.exception("write failed")
            self._failed(failure)
            for item in group:
                if not item.future.done():
                    item.future.set_exception(failure)
            return
        self._succeeded()
        done = time.perf_counter()
        committed = 0
        for item, outcome in zip(group, result.outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, InvalidBatch):
                self.metrics.rejected_batches.labels("trades").inc()
                item.future.set_exception(outcome)
                continue
            written, duplicates, late = self.metrics.of(item.write.instrument)
            written.inc(outcome.inserted)
            if outcome.duplicates:
                duplicates.inc(outcome.duplicates)
            if outcome.late_bars:
                late.inc(outcome.late_bars)
            committed += len(item.write.trades)
            self.metrics.write_seconds.observe(done - item.received)
            item.future.set_result(outcome)
        self.metrics.commit_trades.observe(committed)
        for instrument, newest in result.newest_ms.items():
            if newest > self.state.newest_ms.get(instrument, 0):
                self.state.newest_ms[instrument] = newest
        if result.changed_bars and self._on_changed_bars is not None:
            self._on_changed_bars(result.changed_bars)

    async def _commit_snapshots(self, batch: list[_PendingSnapshots]) -> None:
        try:
            outcomes = await self.run_write(self.backend.write_book_snapshots, [p.snapshots for p in batch])
        except Exception as exc:
            failure = (
                exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(f"{type(exc).__name__}: {exc}")
            )
            self._failed(failure)
            for item in batch:
                item.future.set_exception(failure)
            return
        self._succeeded()
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, InvalidBatch):
                self.metrics.rejected_batches.labels("book_snapshots").inc()
                item.future.set_exception(outcome)
            else:
                self.metrics.snapshots_written.inc(outcome.inserted)
                item.future.set_result(outcome)

    async def probe(self) -> None:
        """A tiny durable write when the store has been idle; sets writable from its outcome."""
        if time.monotonic() - self._last_attempt < 5.0:
            return
        try:
            await self.run_write(self.backend.probe)
        except Exception as exc:
            self._failed(exc)
        else:
            self._succeeded()
