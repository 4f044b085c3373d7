"""Per-instrument sequencing: each trade delivered once, in order, with gaps detected and repaired.

Two exchanges, two kinds of evidence:
- Binance ids are consecutive per symbol. A skipped id opens a gap; later trades are held back
  (order is kept), the missing ids are awaited briefly (an overlapping connection may still bring
  them) and then fetched over REST. Ids already delivered are duplicates and dropped.
- Bybit ids are not consecutive (UUIDs on linear), so a loss can only be suspected when a
  connection was lost. After each reconnect the window since the last trade is fetched from the
  recent-trades endpoint; whatever that endpoint no longer covers is recorded as a known gap.
  Duplicates are found through a bounded set of recently delivered ids.

Either way a gap that cannot be repaired is recorded (feed status + metric) and delivery goes on.

After a collector restart (crash, SIGKILL, rolling deploy) the in-memory state is gone; storage knows
where each instrument's stored history ends (StorageService.GetLastTrades). Until the collector has
asked, live trades are held (`expect_restart_point`); `resume_after` then continues from the last
stored trade as if the connection had only dropped: Binance backfills from the next id up to the
first live one (at most MARKETDATA_RESTART_BACKFILL_MAX_TRADES, the older rest recorded as an
unrepaired gap), Bybit fetches the recent-trades window after the last stored time. When storage
cannot say (`resume_unknown`), collection goes on and the unknown restart point is recorded as a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from marketdata.collector.rest import RestError
from marketdata.collector.stats import FeedStats
from marketdata.collector.trade_runs import TradeRun
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2

log = logging.getLogger(__name__)

Trade = common_pb2.Trade
Publish = Callable[[InstrumentId, TradeRun], None]
FetchFromId = Callable[[int, int], Awaitable[list[tuple[int, Trade]]]]
FetchRecent = Callable[[], Awaitable[list[Trade]]]

REST = common_pb2.TRADE_SOURCE_REST_BACKFILL
# Bybit ids remembered for duplicates: 10x the largest recent-trade page (1,000 on linear), the only
# source of trades older than the live stream's; a larger memory costs cache misses on every trade's
# lookup (50,000 gave 14 % less throughput at the firehose).
RECENT_IDS = 10_000
CATCH_UP_PAGE = 1000  # Binance's largest trades page


class Sequencer(Protocol):
    def on_trades(self, run: TradeRun) -> None: ...
    def on_connected(self) -> None: ...
    def expect_restart_point(self) -> None: ...
    def resume_after(self, stored: list[Trade]) -> None: ...
    def resume_unknown(self, reason: str) -> None: ...
    async def close(self) -> None: ...


class _Base:
    def __init__(self, instrument: InstrumentId, feed: FeedStats, publish: Publish, settings: Settings):
        self.instrument = instrument
        self._feed = feed
        self._stats = feed.instrument(instrument)
        self._publish = publish
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        # Live trades held until storage says where stored history ends (None: not waiting).
        self._waiting: list[Trade] | None = None
        self._connected_while_waiting = False
        # Set by resume_after until the restart's missed trades are dealt with (gap details say so).
        self._restart_pending = False

    def expect_restart_point(self) -> None:
        """Hold live trades until resume_after or resume_unknown (the collector asks storage)."""
        self._waiting = []
        self._connected_while_waiting = False

    def _hold_while_waiting(self, run: TradeRun) -> bool:
        waiting = self._waiting
        if waiting is None:
            return False
        waiting.extend(run.trades())
        if len(waiting) > self._settings.backfill_max_held_trades:
            self.resume_unknown("too many live trades held while waiting for storage's answer")
        return True

    def _stop_waiting(self) -> tuple[list[Trade], bool]:
        """The trades held while waiting, and whether a connection came up meanwhile."""
        waiting, connected = self._waiting or [], self._connected_while_waiting
        self._waiting = None
        self._connected_while_waiting = False
        return waiting, connected

    def resume_unknown(self, reason: str) -> None:
        """Storage could not say where stored history ends: go on, recording a possible loss."""
        if self._waiting is None:
            return
        waiting, _ = self._stop_waiting()
        gap = self._new_gap(
            common_pb2.GAP_KIND_RECONNECT_WINDOW,
            f"collector restart: where stored history ends is unknown ({reason}); trades sent while "
            "the collector was down are not recovered",
        )
        gap.to_time_ms = waiting[0].exchange_time_ms if waiting else time.time_ns() // 1_000_000
        self._feed.open_gap(gap)
        self._feed.close_gap(gap, repaired=False)
        if waiting:
            self.on_trades(self._run(waiting))

    # Binance ids are ints (consecutive), Bybit's the exchange's text (subclasses say which).
    INT_IDS = False

    def _run(self, trades: list[Trade]) -> TradeRun:
        return TradeRun.of(trades, int_ids=self.INT_IDS)

    def on_trades(self, run: TradeRun) -> None:
        raise NotImplementedError

    def _emit(self, run: TradeRun) -> None:
        stats = self._stats
        stats.trades += len(run.ids)
        stats.last_trade_id = run.last_trade_id
        stats.last_exchange_time_ms = run.last_time_ms
        stats.last_receive_ns = time.time_ns()
        self._publish(self.instrument, run)

    def _new_gap(self, kind: common_pb2.GapKind, detail: str) -> common_pb2.TradeGap:
        return common_pb2.TradeGap(
            instrument=self.instrument.to_proto(),
            kind=kind,
            state=common_pb2.GAP_STATE_REPAIRING,
            detected_time_ms=time.time_ns() // 1_000_000,
            detail=detail,
        )

    async def _retrying(self, call: Callable[[], Awaitable[object]], deadline: float) -> object:
        """Call until it succeeds or the deadline passes; honours Retry-After. Raises RestError."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        while True:
            try:
                return await call()
            except (RestError, ValueError) as exc:
                retry_after = getattr(exc, "retry_after", None)
                wait = retry_after if retry_after is not None else delay
                delay = min(delay * 2, 5.0)
                self._feed.record_error(f"{self.instrument.key} backfill: {exc}")
                if loop.time() + wait > deadline:
                    raise RestError(f"gave up: {exc}") from None
                log.warning(
                    "backfill call failed; retrying",
                    extra={"instrument": self.instrument.key, "error": str(exc), "wait_s": wait},
                )
                await asyncio.sleep(wait)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ConsecutiveIdSequencer(_Base):
    """Binance: consecutive integer ids."""

    INT_IDS = True

    def __init__(
        self,
        instrument: InstrumentId,
        feed: FeedStats,
        publish: Publish,
        settings: Settings,
        fetch_from_id: FetchFromId,
    ) -> None:
        super().__init__(instrument, feed, publish, settings)
        self._fetch = fetch_from_id
        self._next: int | None = None
        self._held: dict[int, Trade] = {}
        self._restart_budget = 0  # trades the restart backfill may still fetch

    def resume_after(self, stored: list[Trade]) -> None:
        """Continue after the last stored trade (storage's newest; [] when nothing is stored)."""
        if self._waiting is None:
            return
        waiting, connected = self._stop_waiting()
        if stored:
            last = max(stored, key=lambda t: int(t.trade_id))
            self._next = int(last.trade_id) + 1
            self._stats.last_trade_id = last.trade_id
            self._stats.last_exchange_time_ms = last.exchange_time_ms
            self._restart_pending = True
            self._restart_budget = self._settings.restart_backfill_max_trades
        if waiting:
            self.on_trades(self._run(waiting))
        if connected and stored:  # else it was a first connect: nothing before it to catch up on
            self.on_connected()

    def on_connected(self) -> None:
        if self._waiting is not None:
            self._connected_while_waiting = True
            return
        # The next trade's id tells whether anything was missed, but only once it comes: trades sent
        # while the connection was down stay missing for as long as the instrument is quiet (or for
        # good when it stopped trading). So after a reconnect, if no trade has come by the end of
        # the grace period, ask REST what followed the last delivered id.
        if self._next is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._catch_up(self._next))

    async def _catch_up(self, expected: int) -> None:
        try:
            await asyncio.sleep(self._settings.gap_grace_s)
            if self._next == expected and not self._held:
                await self._fetch_after_reconnect(expected)
            while self._held:  # a gap seen meanwhile (this task kept _repair from starting)
                await self._repair_first_hole()
        finally:
            self._stats.repairing = False
            self._task = None

    async def _fetch_after_reconnect(self, expected: int) -> None:
        """Ids from `expected` on that REST has and the stream did not bring, as a repaired gap."""
        restart, self._restart_pending = self._restart_pending, False
        budget = self._restart_budget if restart else None
        timeout = self._settings.restart_backfill_timeout_s if restart else self._settings.backfill_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        recovered: list[Trade] = []
        while self._next is not None and not self._held:
            start = self._next
            page = CATCH_UP_PAGE
            if budget is not None:
                page = min(page, budget - len(recovered))
                if page <= 0:
                    break
            try:
                rows = await self._retrying(functools.partial(self._fetch, start, page), deadline)
            except RestError as exc:
                log.warning(
                    "catch-up after reconnect failed",
                    extra={"instrument": self.instrument.key, "error": str(exc)},
                )
                break
            out: list[Trade] = []
            for trade_id, trade in rows:  # type: ignore[attr-defined]
                if self._next is not None and trade_id >= self._next:
                    self._accept(trade_id, trade, out)
            if out:
                recovered += out
                self._emit(self._run(out))
            if len(rows) < page or self._next == start:  # type: ignore[arg-type]
                break
        if restart and (self._held or (budget is not None and len(recovered) >= budget)):
            # Not caught up: the hole up to the first live trade is the restart's, with what is left
            # of its budget (none left: recorded, not fetched).
            self._restart_pending = True
            self._restart_budget = max(0, self._restart_budget - len(recovered))
        if recovered:
            what = "the collector was down" if restart else "disconnected"
            gap = self._new_gap(
                common_pb2.GAP_KIND_RECONNECT_WINDOW,
                f"{len(recovered)} trades sent while {what}, fetched after the "
                + ("restart (from the last stored trade)" if restart else "reconnect"),
            )
            gap.first_missing_trade_id, gap.last_missing_trade_id = (
                recovered[0].trade_id,
                recovered[-1].trade_id,
            )
            gap.missing_trades = gap.recovered_trades = len(recovered)
            gap.from_time_ms, gap.to_time_ms = recovered[0].exchange_time_ms, recovered[-1].exchange_time_ms
            self._stats.backfilled += len(recovered)
            self._feed.open_gap(gap)
            self._feed.close_gap(gap, repaired=True)

    def on_trades(self, run: TradeRun) -> None:
        ids: list[int] = run.ids  # type: ignore[assignment]
        if not ids or (self._waiting is not None and self._hold_while_waiting(run)):
            return
        expected = self._next
        if not self._held:
            # The usual case, no gap open and every id the next one: delivered as they came, the
            # check done on the ids alone (one comparison with a range, in C).
            first = ids[0] if expected is None else expected
            count = len(ids)
            if (
                ids[0] == first
                and ids[-1] == first + count - 1
                and (count < 3 or ids == list(range(first, first + count)))
            ):
                self._next = first + count
                self._restart_pending = False  # the stream follows on from stored history
                self._emit(run)
                return
        out: list[Trade] = []
        for trade_id, trade in zip(ids, run.trades(), strict=True):
            self._accept(trade_id, trade, out)
        if out:
            self._emit(self._run(out))

    def _accept(self, trade_id: int, trade: Trade, out: list[Trade]) -> None:
        expected = self._next
        if expected is None or trade_id == expected:
            out.append(trade)
            self._next = trade_id + 1
            self._restart_pending = False
            if self._held:
                self._drain(out)
        elif trade_id < expected or trade_id in self._held:
            self._stats.duplicates += 1
        else:
            self._held[trade_id] = trade
            if len(self._held) > self._settings.backfill_max_held_trades:
                self._skip_to_held("too many trades held back while repairing", out)
            elif self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._repair())

    def _drain(self, out: list[Trade]) -> None:
        held = self._held
        expected = self._next
        assert expected is not None
        while expected in held:
            out.append(held.pop(expected))
            expected += 1
        self._next = expected

    def _skip_to_held(self, reason: str, out: list[Trade]) -> None:
        """Give up on the ids before the first held trade: record them, deliver what is held."""
        if not self._held or self._next is None:
            return
        gap = self._id_gap(reason)
        self._feed.open_gap(gap)
        self._feed.close_gap(gap, repaired=False)
        self._next = min(self._held)
        self._drain(out)

    def _id_gap(self, detail: str) -> common_pb2.TradeGap:
        """A gap from the next expected id to just before the first held trade."""
        assert self._next is not None and self._held
        first_held = min(self._held)
        gap = self._new_gap(common_pb2.GAP_KIND_TRADE_ID, detail)
        gap.first_missing_trade_id = str(self._next)
        gap.last_missing_trade_id = str(first_held - 1)
        gap.missing_trades = first_held - self._next
        gap.from_time_ms = self._stats.last_exchange_time_ms
        gap.to_time_ms = self._held[first_held].exchange_time_ms
        return gap

    async def _repair(self) -> None:
        try:
            await asyncio.sleep(self._settings.gap_grace_s)
            while self._held:
                await self._repair_first_hole()
        finally:
            self._stats.repairing = False
            self._task = None

    async def _repair_first_hole(self) -> None:
        assert self._next is not None
        restart, self._restart_pending = self._restart_pending, False
        last_missing = min(self._held) - 1
        timeout = self._settings.backfill_timeout_s
        prefix = ""
        if restart:
            timeout = self._settings.restart_backfill_timeout_s
            prefix = "collector restart: "
            if not self._bound_restart_hole(last_missing):
                return
        gap = self._id_gap(f"{prefix}trade ids {self._next}..{last_missing} missing")
        self._feed.open_gap(gap)
        self._stats.repairing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        failure = ""
        while self._next is not None and self._next <= last_missing:
            start = self._next
            try:
                rows = await self._retrying(
                    functools.partial(self._fetch, start, last_missing - start + 1), deadline
                )
            except RestError as exc:
                failure = str(exc)
                break
            out: list[Trade] = []
            for trade_id, trade in rows:  # type: ignore[attr-defined]
                if self._next is not None and self._next <= trade_id <= last_missing:
                    self._accept(trade_id, trade, out)
            if out:
                backfilled = sum(1 for t in out if t.source == REST)
                self._stats.backfilled += backfilled
                gap.recovered_trades += backfilled
                self._emit(self._run(out))
            if self._next == start:
                failure = f"the exchange no longer serves trade id {start}"
                break
        if self._next is not None and self._next <= last_missing:
            out = []
            self._skip_to_held_quietly(out)
            if out:
                self._emit(self._run(out))
            self._feed.close_gap(gap, repaired=False, detail=failure or "backfill incomplete")
        else:
            self._feed.close_gap(gap, repaired=True)

    def _bound_restart_hole(self, last_missing: int) -> bool:
        """Backfill after a restart goes back at most the restart budget from the first live trade;
        ids before that are recorded as an unrepaired gap. False when nothing is left to fetch."""
        assert self._next is not None
        budget = self._restart_budget
        if last_missing - self._next + 1 <= budget:
            return True
        first_fetched = last_missing - budget + 1
        gap = self._new_gap(
            common_pb2.GAP_KIND_TRADE_ID,
            f"collector restart: trade ids {self._next}..{first_fetched - 1} (after the last stored trade) "
            f"were not backfilled: the backfill goes back at most {budget} trades "
            "(MARKETDATA_RESTART_BACKFILL_MAX_TRADES)",
        )
        gap.first_missing_trade_id, gap.last_missing_trade_id = str(self._next), str(first_fetched - 1)
        gap.missing_trades = first_fetched - self._next
        gap.from_time_ms = self._stats.last_exchange_time_ms
        gap.to_time_ms = self._held[min(self._held)].exchange_time_ms
        self._feed.open_gap(gap)
        self._feed.close_gap(gap, repaired=False)
        self._next = first_fetched
        if budget > 0:
            return True
        out: list[Trade] = []
        self._drain(out)
        if out:
            self._emit(self._run(out))
        return False

    def _skip_to_held_quietly(self, out: list[Trade]) -> None:
        if self._held:
            self._next = min(self._held)
            self._drain(out)


class ReconnectWindowSequencer(_Base):
    """Bybit: ids are not consecutive; loss is suspected across reconnects and backfilled by time."""

    def __init__(
        self,
        instrument: InstrumentId,
        feed: FeedStats,
        publish: Publish,
        settings: Settings,
        fetch_recent: FetchRecent,
        window_limit: int,
    ) -> None:
        super().__init__(instrument, feed, publish, settings)
        self._fetch = fetch_recent
        self._window_limit = window_limit
        # Delivered ids in two generations: the newest (up to RECENT_IDS) and the one before it, so at
        # least RECENT_IDS are always remembered and forgetting is dropping a whole set.
        self._recent: set[str] = set()
        self._older: set[str] = set()
        self._held: list[Trade] = []
        self._last_time_ms: int | None = None
        self._repairing = False
        self._overflowed = False

    def resume_after(self, stored: list[Trade]) -> None:
        """Continue after the last stored trades (those of storage's newest millisecond, [] when
        nothing is stored): their time is where the recent-trades window must reach back to, their
        ids are already stored."""
        if self._waiting is None:
            return
        waiting, connected = self._stop_waiting()
        if stored:
            self._last_time_ms = max(t.exchange_time_ms for t in stored)
            self._remember([t.trade_id for t in stored])
            self._restart_pending = True
        if connected and self._last_time_ms is not None:
            self._held = waiting
            self._start_repair()
        elif waiting:
            self._deliver(self._run(waiting))

    def on_trades(self, run: TradeRun) -> None:
        if self._waiting is not None and self._hold_while_waiting(run):
            return
        if self._repairing:
            self._held.extend(run.trades())
            if len(self._held) > self._settings.backfill_max_held_trades and self._task is not None:
                self._overflowed = True
                self._task.cancel()
            return
        self._deliver(run)

    def _seen(self, trade_id: str) -> bool:
        return trade_id in self._recent or trade_id in self._older

    def _remember(self, ids: list[str]) -> None:
        self._recent.update(ids)
        if len(self._recent) >= RECENT_IDS:
            self._older, self._recent = self._recent, set()

    def _deliver(self, run: TradeRun) -> None:
        # Duplicates are found in a bounded memory of the last RECENT_IDS or more delivered ids.
        ids: list[str] = run.ids  # type: ignore[assignment]
        if not ids:
            return
        recent = self._recent
        out = run
        if recent.isdisjoint(ids) and self._older.isdisjoint(ids):
            # The usual case, no id seen before nor twice in the run: whole-set operations only (a
            # repeat within the run shows as the set growing by less than the run).
            before = len(recent)
            recent.update(ids)
            if len(recent) - before != len(ids):
                recent.difference_update(ids)  # none of them was there before
                out = self._without_seen(run)
            elif len(recent) >= RECENT_IDS:
                self._older, self._recent = recent, set()
        else:
            out = self._without_seen(run)
        self._stats.duplicates += len(ids) - len(out.ids)
        if out.ids:
            self._last_time_ms = out.last_time_ms
            self._emit(out)

    def _without_seen(self, run: TradeRun) -> TradeRun:
        """The run without the trades whose id was delivered before or earlier in the run."""
        kept: list[Trade] = []
        for trade_id, trade in zip(run.ids, run.trades(), strict=True):
            if not self._seen(trade_id):  # type: ignore[arg-type]
                self._remember([trade_id])  # type: ignore[list-item]
                kept.append(trade)
        return self._run(kept)

    def on_connected(self) -> None:
        if self._waiting is not None:
            self._connected_while_waiting = True
            return
        if self._last_time_ms is None or self._repairing:
            return  # first connection and nothing stored: nothing can have been missed yet
        self._start_repair()

    def _start_repair(self) -> None:
        self._repairing = True
        self._stats.repairing = True
        self._task = asyncio.get_running_loop().create_task(self._repair())

    async def _repair(self) -> None:
        since = self._last_time_ms or 0
        restart, self._restart_pending = self._restart_pending, False
        gap = self._new_gap(
            common_pb2.GAP_KIND_RECONNECT_WINDOW,
            f"collector restart (stored history ends at {since} ms)" if restart else "connection lost",
        )
        gap.from_time_ms = since
        deadline = asyncio.get_running_loop().time() + self._settings.backfill_timeout_s
        try:
            rows: list[Trade] = await self._retrying(self._fetch, deadline)  # type: ignore[assignment]
        except RestError as exc:
            self._record_unrepaired(gap, f"recent-trade backfill failed: {exc}")
            return
        except asyncio.CancelledError:
            if not self._overflowed:
                raise
            self._record_unrepaired(gap, "too many live trades held back while repairing")
            return
        finally:
            self._task = None
        missed = [t for t in rows if t.exchange_time_ms >= since and not self._seen(t.trade_id)]
        # The endpoint returns only the newest `limit` trades: if it returned a full page whose
        # oldest trade is after our last one, trades between them may be lost for good.
        covered = len(rows) < self._window_limit or (bool(rows) and rows[0].exchange_time_ms <= since)
        if missed or not covered:
            gap.recovered_trades = len(missed)
            gap.to_time_ms = missed[-1].exchange_time_ms if missed else since
            if not covered:
                gap.to_time_ms = rows[0].exchange_time_ms
            self._feed.open_gap(gap)
            self._stats.backfilled += len(missed)
            if covered:
                self._feed.close_gap(gap, repaired=True, detail=f"{len(missed)} trades recovered")
            else:
                self._feed.close_gap(
                    gap,
                    repaired=False,
                    detail=f"recent-trade covers only the last {self._window_limit} trades; "
                    f"trades between {since} and {rows[0].exchange_time_ms} ms may be lost",
                )
        self._release(missed)

    def _record_unrepaired(self, gap: common_pb2.TradeGap, detail: str) -> None:
        gap.to_time_ms = self._held[0].exchange_time_ms if self._held else time.time_ns() // 1_000_000
        self._feed.open_gap(gap)
        self._feed.close_gap(gap, repaired=False, detail=detail)
        self._release([])

    def _release(self, backfilled: list[Trade]) -> None:
        """Deliver recovered trades, then the live trades held meanwhile, and resume."""
        held, self._held = self._held, []
        self._repairing = False
        self._overflowed = False
        self._stats.repairing = False
        self._deliver(self._run(backfilled + held))
