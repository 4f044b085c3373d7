"""Keeping one local book in sync with its exchange, per the exchanges' documented procedures.

Binance spot (shared/reference/collectors.md §3a): buffer the diff events, fetch a REST snapshot,
drop events with `u <= lastUpdateId`; the first applied event must have `U <= lastUpdateId+1`
(it straddles the snapshot), and every later one `U == previous u + 1`. A snapshot older than the
first buffered event that follows it is fetched again.

Binance USD-M (§3b): the same, except that events with `u < lastUpdateId` are dropped, the first
applied one must have `U <= lastUpdateId <= u` (or `pu == lastUpdateId`), and every later one must
chain through `pu == previous u`.

Bybit (§3c): a snapshot (after subscribing, or pushed again by the exchange, or with `u == 1` after
a service restart) replaces the book; each delta must carry `u == previous u + 1`. A delta that does
not is a suspected gap: the topic is subscribed again, which brings a fresh snapshot.

Whatever goes wrong (a gap, a stale snapshot, a delta that would cross the book, a malformed level,
a lost connection) is counted by reason and the book is rebuilt, while trades keep flowing on the same
connections. Readers never see a half-built or crossed book: until the rebuilt book is in sync they
get the last good one, flagged RESYNCING, with its age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from marketdata.collector.books.book import BookInputError, OrderBook, Undo
from marketdata.collector.books.snapshots import DepthSnapshot
from marketdata.collector.frames import BookUpdate, FrameError
from marketdata.collector.rest import RestError
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import order_book_pb2

log = logging.getLogger(__name__)

SYNCING = order_book_pb2.BOOK_SYNC_STATE_SYNCING
SYNCED = order_book_pb2.BOOK_SYNC_STATE_SYNCED
RESYNCING = order_book_pb2.BOOK_SYNC_STATE_RESYNCING

# Why a book was rebuilt (the `reason` label of marketdata_collector_book_resyncs_total).
REASONS = (
    "gap",  # an update id was skipped
    "stale_snapshot",  # the REST snapshot was older than the updates that follow it (Binance)
    "crossed",  # an update would have crossed the book (best bid >= best ask)
    "bad_input",  # a malformed level, a negative or non-numeric size, an unreadable depth frame
    "reconnect",  # the connection carrying the book was lost
    "reset",  # Bybit u=1 (service restart) or a delta going backwards
    "exchange_snapshot",  # Bybit pushed a new snapshot unasked
    "snapshot_timeout",  # Bybit sent no snapshot after (re)subscribing
)

# A Binance snapshot with no update after it is accepted after this long (a quiet book).
QUIET_ACCEPT_S = 1.0
# Bybit: subscribe again when no snapshot came this long after (re)subscribing.
SNAPSHOT_TIMEOUT_S = 10.0
# Retries within one resync wait 0.25 s, 0.5 s, 1 s, ... (MARKETDATA_BOOK_RESYNC_MAX_DELAY_S at most).
FIRST_RETRY_S = 0.25
# A book that resyncs more often than this in a minute is flapping: its resyncs start late too.
FLAPPING_PER_MINUTE = 10


@dataclass(slots=True)
class BookStats:
    """Counters of one book, read by GetFeedStatus and /metrics (plain ints on the hot path)."""

    instrument: InstrumentId
    state: int = SYNCING
    resyncs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    last_reason: str = ""
    last_detail: str = ""
    updates: int = 0  # level updates applied
    events: int = 0  # depth messages applied
    crossed: int = 0  # updates refused because they would cross the book
    bad_input: int = 0
    snapshots: int = 0  # snapshots loaded (REST or Bybit)
    snapshot_errors: int = 0  # REST snapshot calls that failed
    buffer_dropped: int = 0  # buffered updates dropped past MARKETDATA_BOOK_BUFFER_MAX_EVENTS
    update_id: int = 0
    applied_ns: int = 0  # wall clock of the last applied update (receive time)

    @property
    def total_resyncs(self) -> int:
        return sum(self.resyncs.values())


Notify = Callable[[InstrumentId], None]


class BookSync:
    """What every book does: the served book, counters, resync bookkeeping, readers' view."""

    def __init__(self, instrument: InstrumentId, settings: Settings, notify: Notify) -> None:
        self.instrument = instrument
        self.settings = settings
        self.stats = BookStats(instrument)
        self._notify = notify
        # `book` is what readers get: the book in sync, or the last good one while resyncing.
        # `_work` is the book updates are applied to; it is `book` once in sync.
        self.book: OrderBook | None = None
        self._work: OrderBook | None = None
        self.unsynced_since = time.monotonic()
        self.synced_at = 0.0
        self.connected = False
        self._attempts = 0  # attempts within the current resync
        self._recent: deque[float] = deque()  # when the last resyncs began (flapping guard)
        self._task: asyncio.Task[None] | None = None
        self._undo: Undo = []

    # -- readers ----------------------------------------------------------------------------------------

    @property
    def state(self) -> int:
        return self.stats.state

    def stale_for(self) -> float:
        """Seconds the served book has been out of sync (0 while in sync)."""
        return 0.0 if self.stats.state == SYNCED else time.monotonic() - self.unsynced_since

    # -- applying ---------------------------------------------------------------------------------------

    def _apply(self, book: OrderBook, update: BookUpdate) -> str:
        """Apply one update; "" when applied, else the resync reason (the book is left unchanged)."""
        undo = self._undo
        undo.clear()
        try:
            count = book.apply(update.bids, update.asks, undo)
        except BookInputError as exc:
            book.rollback(undo)
            self.stats.bad_input += 1
            self.stats.last_detail = str(exc)
            return "bad_input"
        if book.crossed():
            book.rollback(undo)
            self.stats.crossed += 1
            bid, ask = book.best_bid(), book.best_ask()
            self.stats.last_detail = (
                f"update {update.first_id}..{update.last_id} would cross the book "
                f"(best bid/ask before it {bid[0] if bid else '-'} / {ask[0] if ask else '-'})"
            )
            # The levels that crossed are the update's own: show them in the log line.
            return "crossed"
        book.update_id = update.last_id
        book.exchange_time_ms = update.exchange_time_ms
        book.event_time_ms = update.event_time_ms
        book.receive_ns = update.receive_ns
        if update.cross_sequence:
            book.cross_sequence = update.cross_sequence
        stats = self.stats
        stats.updates += count
        stats.events += 1
        stats.update_id = update.last_id
        stats.applied_ns = update.receive_ns
        return ""

    def _promote(self, book: OrderBook) -> None:
        """`book` is in sync: serve it from now on."""
        self.book = self._work = book
        self._attempts = 0
        if self.stats.state != SYNCED:
            self.stats.state = SYNCED
            self.synced_at = time.monotonic()
            if self.stats.snapshots > 1 or self.stats.total_resyncs:
                log.info(
                    "order book back in sync",
                    extra={
                        "instrument": self.instrument.key,
                        "update_id": book.update_id,
                        "out_of_sync_s": round(time.monotonic() - self.unsynced_since, 3),
                    },
                )
        self.stats.update_id = book.update_id
        self.stats.applied_ns = book.receive_ns

    def _count_resync(self, reason: str, detail: str = "") -> None:
        stats = self.stats
        stats.resyncs[reason] = stats.resyncs.get(reason, 0) + 1
        stats.last_reason = reason
        detail = detail or stats.last_detail
        total = stats.total_resyncs
        # A clear line per resync; a book that flaps keeps logging, one line in a hundred.
        if total <= 20 or total % 100 == 0:
            log.warning(
                "order book out of sync; rebuilding it (trades are not affected)",
                extra={
                    "feed": self.instrument.market.value,
                    "instrument": self.instrument.key,
                    "reason": reason,
                    "detail": detail,
                    "update_id": self._work.update_id if self._work else stats.update_id,
                    "resyncs": total,
                },
            )

    def _unsync(self, reason: str, detail: str = "", *, count: bool = True) -> None:
        """Stop applying to the current book; readers keep the last good one until a new one is in sync."""
        if count:
            self._count_resync(reason, detail)
        if self.stats.state == SYNCED:
            self.unsynced_since = time.monotonic()
        self._work = None
        self.stats.state = SYNCING if self.book is None else RESYNCING
        self._notify(self.instrument)

    def _retry_delay(self) -> float:
        """How long to wait before the next attempt: none for the first attempt of a resync (unless
        the book is flapping), then doubling."""
        attempts = self._attempts
        self._attempts += 1
        now = time.monotonic()
        if attempts == 0:
            recent = self._recent
            recent.append(now)
            while recent and now - recent[0] > 60:
                recent.popleft()
            excess = len(recent) - FLAPPING_PER_MINUTE
            attempts = excess if excess > 0 else 0
        if attempts == 0:
            return 0.0
        return float(min(self.settings.book_resync_max_delay_s, FIRST_RETRY_S * 2 ** (attempts - 1)))

    def _start_task(self, factory: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(factory(), name=name)

    # -- events from the manager -----------------------------------------------------------------------

    def on_update(self, update: BookUpdate) -> None:
        raise NotImplementedError

    def on_invalid(self, detail: str) -> None:
        """A depth frame of this book could not be read: an update is lost, so rebuild."""
        self.stats.bad_input += 1
        self.stats.last_detail = detail
        if self._work is not None:
            self._restart("bad_input", detail)

    def on_connected(self) -> None:
        self.connected = True

    def on_disconnected(self) -> None:
        self.connected = False
        if self._work is not None:
            self._unsync("reconnect", "the connection carrying the book was lost")

    def _restart(self, reason: str, detail: str = "", keep: BookUpdate | None = None) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Called a few times a second by the manager."""

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class BinanceSync(BookSync):
    """Binance spot or USD-M: diff events + REST snapshots."""

    def __init__(
        self,
        instrument: InstrumentId,
        settings: Settings,
        notify: Notify,
        fetch: Callable[[InstrumentId], Awaitable[DepthSnapshot]],
    ) -> None:
        super().__init__(instrument, settings, notify)
        self.futures = instrument.market == MarketKey.BINANCE_FUTURES
        self._fetch = fetch
        self._buffer: deque[BookUpdate] = deque()
        self._first = True  # the next applied update is the first after the snapshot
        self._snapshot_at = 0.0  # monotonic time the pending snapshot was loaded
        self._connected = asyncio.Event()

    def on_connected(self) -> None:
        super().on_connected()
        self._connected.set()
        if self._work is None:
            self._start_fetch()

    def on_disconnected(self) -> None:
        self._connected.clear()
        self._buffer.clear()
        super().on_disconnected()

    def on_update(self, update: BookUpdate) -> None:
        work = self._work
        if work is None:
            buffer = self._buffer
            if len(buffer) >= self.settings.book_buffer_max_events:
                buffer.popleft()
                self.stats.buffer_dropped += 1
            buffer.append(update)
            return
        last_id = work.update_id
        if self._first:
            if self.futures:
                if update.last_id < last_id:
                    return
                if not (update.first_id <= last_id or update.prev_id == last_id):
                    self._restart(
                        "stale_snapshot",
                        f"snapshot lastUpdateId {last_id} is older than the next update "
                        f"(U={update.first_id}, pu={update.prev_id})",
                        keep=update,
                    )
                    return
            else:
                if update.last_id <= last_id:
                    return
                if update.first_id > last_id + 1:
                    self._restart(
                        "stale_snapshot",
                        f"snapshot lastUpdateId {last_id} is older than the next update (U={update.first_id})",
                        keep=update,
                    )
                    return
        else:
            if update.last_id <= last_id:
                return  # already applied (e.g. both connections of a rotation delivered it)
            if self.futures:
                if update.prev_id != last_id:
                    self._restart("gap", f"pu={update.prev_id} does not follow u={last_id}", keep=update)
                    return
            elif update.first_id > last_id + 1:
                self._restart("gap", f"U={update.first_id} skips ahead of u={last_id}", keep=update)
                return
        reason = self._apply(work, update)
        if reason:
            self._restart(reason)
            return
        self._first = False
        if self.book is not work:
            self._promote(work)
        self._notify(self.instrument)

    def _restart(self, reason: str, detail: str = "", keep: BookUpdate | None = None) -> None:
        self._unsync(reason, detail)
        self._first = True
        self._buffer.clear()
        if keep is not None:
            self._buffer.append(keep)
        self._start_fetch()

    def _start_fetch(self) -> None:
        self._start_task(self._fetch_loop, f"book-snapshot-{self.instrument.key}")

    async def _fetch_loop(self) -> None:
        await asyncio.sleep(self._retry_delay())
        while self._work is None:
            await self._connected.wait()
            try:
                snapshot = await self._fetch(self.instrument)
            except (RestError, FrameError) as exc:
                self.stats.snapshot_errors += 1
                retry_after = getattr(exc, "retry_after", None)
                wait = max(retry_after or 0.0, self._retry_delay(), FIRST_RETRY_S)
                log.warning(
                    "order book snapshot failed; retrying",
                    extra={"instrument": self.instrument.key, "error": str(exc), "wait_s": round(wait, 3)},
                )
                await asyncio.sleep(wait)
                continue
            if not self._connected.is_set():
                continue  # lost the stream meanwhile: its buffer is gone, fetch again once back
            self.on_snapshot(snapshot)
            if self._work is None:
                await asyncio.sleep(self._retry_delay())

    def on_snapshot(self, snapshot: DepthSnapshot) -> None:
        """Load a REST snapshot and replay the buffered updates onto it."""
        self.stats.snapshots += 1
        try:
            book = OrderBook.from_levels(
                snapshot.bids, snapshot.asks, update_id=snapshot.last_update_id, limit=snapshot.limit
            )
        except BookInputError as exc:
            self.stats.bad_input += 1
            self._count_resync("bad_input", f"REST snapshot: {exc}")
            return
        if book.crossed():
            self.stats.crossed += 1
            self._count_resync("crossed", f"REST snapshot {snapshot.last_update_id} is crossed")
            return
        book.exchange_time_ms = snapshot.exchange_time_ms
        book.receive_ns = snapshot.receive_ns
        self._work = book
        self._first = True
        self._snapshot_at = time.monotonic()
        buffered = list(self._buffer)
        self._buffer.clear()
        for update in buffered:
            self.on_update(update)
            # A failed replay re-buffers what follows: on_update buffers while _work is None.

    def tick(self, now: float) -> None:
        work = self._work
        if work is not None and self.book is not work and now - self._snapshot_at >= QUIET_ACCEPT_S:
            # No update has followed the snapshot: the market is quiet and the snapshot is the book.
            # The first update to come is still checked against it.
            self._promote(work)
            self._notify(self.instrument)


class BybitSync(BookSync):
    """Bybit orderbook.{depth}: snapshot + deltas with consecutive `u`; gaps resubscribe the topic."""

    def __init__(
        self,
        instrument: InstrumentId,
        settings: Settings,
        notify: Notify,
        resubscribe: Callable[[InstrumentId], Awaitable[bool]],
    ) -> None:
        super().__init__(instrument, settings, notify)
        self.depth = settings.book_bybit_depth
        self._resubscribe = resubscribe
        self._asked_at = 0.0  # when we (re)subscribed and started waiting for a snapshot; 0: not waiting
        self.resubscribes = 0

    def on_connected(self) -> None:
        super().on_connected()
        if self._work is None:
            self._asked_at = time.monotonic()  # the subscription itself brings a snapshot

    def on_disconnected(self) -> None:
        self._asked_at = 0.0
        super().on_disconnected()

    def on_update(self, update: BookUpdate) -> None:
        if update.snapshot:
            self._snapshot(update)
            return
        work = self._work
        if work is None:
            return  # deltas before the (new) snapshot mean nothing
        expected = work.update_id + 1
        if update.last_id != expected:
            if update.last_id == 1 or update.last_id < work.update_id:
                self._restart("reset", f"delta u={update.last_id} goes back from u={work.update_id}")
            elif update.last_id == work.update_id:
                return  # the same push again
            else:
                self._restart("gap", f"delta u={update.last_id}, expected u={expected}")
            return
        reason = self._apply(work, update)
        if reason:
            self._restart(reason)
            return
        self._notify(self.instrument)

    def _snapshot(self, update: BookUpdate) -> None:
        try:
            book = OrderBook.from_levels(update.bids, update.asks, update_id=update.last_id)
        except BookInputError as exc:
            self.stats.bad_input += 1
            self._restart("bad_input", f"snapshot: {exc}")
            return
        if book.crossed():
            self.stats.crossed += 1
            self._restart("crossed", f"snapshot u={update.last_id} is crossed")
            return
        book.exchange_time_ms = update.exchange_time_ms
        book.event_time_ms = update.event_time_ms
        book.receive_ns = update.receive_ns
        book.cross_sequence = update.cross_sequence
        work = self._work
        if work is not None and self.depth > 1 and not self._asked_at:
            # Unasked: the exchange restarted (u=1) or re-sent the book; either way it replaces ours.
            if update.last_id == 1:
                self._count_resync("reset", f"snapshot with u=1 replaced the book at u={work.update_id}")
            elif update.last_id != work.update_id:
                self._count_resync(
                    "exchange_snapshot",
                    f"snapshot u={update.last_id} replaced the book at u={work.update_id}",
                )
        self._asked_at = 0.0
        self.stats.snapshots += 1
        self.stats.events += 1
        self.stats.updates += book.bid_count + book.ask_count
        self._promote(book)
        self._notify(self.instrument)

    def _restart(self, reason: str, detail: str = "", keep: BookUpdate | None = None) -> None:
        self._unsync(reason, detail)
        if self.connected:
            self._start_task(self._resubscribe_loop, f"book-resubscribe-{self.instrument.key}")

    async def _resubscribe_loop(self) -> None:
        await asyncio.sleep(self._retry_delay())
        if self._work is not None or not self.connected:
            return  # a snapshot came meanwhile, or the reconnect will bring one
        self._asked_at = time.monotonic()
        self.resubscribes += 1
        if not await self._resubscribe(self.instrument):
            self._asked_at = 0.0

    def tick(self, now: float) -> None:
        if self._work is None and self._asked_at and now - self._asked_at > SNAPSHOT_TIMEOUT_S:
            self._asked_at = 0.0
            self._restart("snapshot_timeout", f"no snapshot {SNAPSHOT_TIMEOUT_S:.0f} s after subscribing")
