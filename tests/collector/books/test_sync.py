"""The sync state machines on hand-made sequences: gaps, stale snapshots, crossing and malformed
updates, duplicates, resets; what readers get meanwhile (the last good book, flagged, or UNAVAILABLE)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from marketdata.collector.books import BookManager, BookUnavailable
from marketdata.collector.books import sync as sync_module
from marketdata.collector.books.snapshots import DepthSnapshot, WeightBudget
from marketdata.collector.books.sync import RESYNCING, SYNCED, SYNCING, BinanceSync, BybitSync
from marketdata.collector.frames import BookUpdate, Frame, FrameKind
from marketdata.core.config import Settings, load_settings
from marketdata.core.instruments import InstrumentId, MarketKey

SPOT = InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")
USDM = InstrumentId(MarketKey.BINANCE_FUTURES, "BTCUSDT")
LINEAR = InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT")


def settings(**extra: str) -> Settings:
    env = {"MARKETDATA_INSTRUMENTS": "binance-spot:BTCUSDT,binance-futures:BTCUSDT,bybit-linear:BTCUSDT"}
    env.update({f"MARKETDATA_{k.upper()}": v for k, v in extra.items()})
    return load_settings(env)


def event(first: int, last: int, bids: Any = (), asks: Any = (), prev: int = -1) -> BookUpdate:
    return BookUpdate(first, last, prev, [list(b) for b in bids], [list(a) for a in asks], 1, 1, 5)


def bybit(u: int, bids: Any = (), asks: Any = (), snapshot: bool = False) -> BookUpdate:
    return BookUpdate(u, u, -1, [list(b) for b in bids], [list(a) for a in asks], 1, 1, 5, snapshot=snapshot)


class Snapshots:
    """A fake REST endpoint: hands out the queued snapshots, counting the calls."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[DepthSnapshot] = asyncio.Queue()
        self.calls = 0

    def put(self, last_id: int, bids: Any, asks: Any) -> None:
        self.queue.put_nowait(
            DepthSnapshot(last_id, [list(b) for b in bids], [list(a) for a in asks], 0, 1, 1000)
        )

    async def fetch(self, instrument: InstrumentId) -> DepthSnapshot:
        self.calls += 1
        return await self.queue.get()


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def synced_spot(snapshots: Snapshots, **extra: str) -> BinanceSync:
    sync = BinanceSync(SPOT, settings(**extra), lambda _: None, snapshots.fetch)
    sync.on_update(event(95, 100, bids=[("99.0", "1")]))
    sync.on_connected()
    snapshots.put(100, bids=[("99.0", "1"), ("98.0", "2")], asks=[("101.0", "1"), ("102.0", "3")])
    await until(lambda: sync._work is not None)
    sync.on_update(event(101, 103, asks=[("101.5", "1")]))
    assert sync.state == SYNCED and sync.book is not None and sync.book.update_id == 103
    return sync


async def test_spot_gap_keeps_the_last_good_book_and_refetches() -> None:
    snapshots = Snapshots()
    sync = await synced_spot(snapshots)
    good = sync.book
    assert good is not None
    levels = good.levels()
    sync.on_update(event(110, 112, bids=[("100.0", "9")]))  # 104..109 missing
    assert sync.state == RESYNCING and sync.stats.resyncs["gap"] == 1
    assert sync.book is good and good.levels() == levels and good.update_id == 103
    sync.on_update(event(113, 113, bids=[("100.5", "1")]))  # buffered for the next snapshot
    snapshots.put(112, bids=[("100.0", "9"), ("99.0", "1")], asks=[("101.0", "1")])
    await until(lambda: sync.state == SYNCED)
    assert sync.book is not good and sync.book is not None
    assert sync.book.levels() == ([("100.5", "1"), ("100.0", "9"), ("99.0", "1")], [("101.0", "1")])
    assert sync.book.update_id == 113 and snapshots.calls == 2
    await sync.close()


async def test_spot_snapshot_older_than_the_buffer_is_fetched_again() -> None:
    snapshots = Snapshots()
    sync = BinanceSync(SPOT, settings(), lambda _: None, snapshots.fetch)
    sync.on_update(event(200, 205, bids=[("10", "1")]))
    sync.on_update(event(206, 210, asks=[("11", "1")]))
    sync.on_connected()
    snapshots.put(150, bids=[("9", "1")], asks=[("12", "1")])  # older than U=200: stale
    await until(lambda: sync.stats.resyncs["stale_snapshot"] == 1)
    assert sync.state == SYNCING and sync.book is None
    sync.on_update(event(211, 211, bids=[("10", "2")]))
    snapshots.put(207, bids=[("10", "1")], asks=[("11", "1"), ("12", "1")])
    await until(lambda: sync.state == SYNCED)
    assert sync.book is not None and sync.book.update_id == 211
    assert sync.book.levels() == ([("10", "2")], [("11", "1"), ("12", "1")])
    await sync.close()


async def test_crossing_update_is_refused_and_the_book_rebuilt() -> None:
    snapshots = Snapshots()
    sync = await synced_spot(snapshots)
    good = sync.book
    assert good is not None
    levels = good.levels()
    sync.on_update(event(104, 104, bids=[("101.0", "5")]))  # a bid at the best ask
    assert sync.stats.crossed == 1 and sync.stats.resyncs["crossed"] == 1
    assert sync.state == RESYNCING and sync.book is good
    assert good.levels() == levels and not good.crossed()
    snapshots.put(104, bids=[("99.0", "1")], asks=[("101.0", "1")])
    await until(lambda: sync._work is not None)
    sync.on_update(event(105, 105, bids=[("99.5", "1")]))  # confirms the snapshot
    assert sync.state == SYNCED and sync.book is not None and not sync.book.crossed()
    await sync.close()


@pytest.mark.parametrize("size", ["-1", "abc", "1e5", ""])
async def test_bad_sizes_are_counted_and_resynced(size: str) -> None:
    snapshots = Snapshots()
    sync = await synced_spot(snapshots)
    good = sync.book
    assert good is not None
    levels = good.levels()
    sync.on_update(event(104, 105, bids=[("98.5", "1"), ("98.0", size)]))
    assert sync.stats.bad_input == 1 and sync.stats.resyncs["bad_input"] == 1
    assert good.levels() == levels and sync.state == RESYNCING
    assert "not a non-negative decimal" in sync.stats.last_detail
    await sync.close()


async def test_duplicates_are_ignored_and_a_quiet_snapshot_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_module, "QUIET_ACCEPT_S", 0.05)
    snapshots = Snapshots()
    sync = BinanceSync(SPOT, settings(), lambda _: None, snapshots.fetch)
    sync.on_connected()
    snapshots.put(50, bids=[("1", "1")], asks=[("2", "1")])
    await until(lambda: sync._work is not None)
    assert sync.state == SYNCING  # not served before an update confirms it, or it stays quiet
    await asyncio.sleep(0.06)
    sync.tick(asyncio.get_running_loop().time() + 10)
    assert sync.state == SYNCED
    sync.on_update(event(45, 50, bids=[("1", "7")]))  # already in the snapshot
    sync.on_update(event(51, 52, bids=[("1", "3")]))
    sync.on_update(event(51, 52, bids=[("1", "9")]))  # the same event again (a rotation overlap)
    assert sync.book is not None and sync.book.levels()[0] == [("1", "3")]
    assert sync.stats.total_resyncs == 0
    await sync.close()


async def test_usdm_chains_through_pu() -> None:
    snapshots = Snapshots()
    sync = BinanceSync(USDM, settings(), lambda _: None, snapshots.fetch)
    sync.on_update(event(90, 99, prev=89, bids=[("5", "1")]))
    sync.on_update(event(100, 120, prev=99, bids=[("5", "2")]))  # straddles lastUpdateId 110
    sync.on_connected()
    snapshots.put(110, bids=[("5", "1")], asks=[("6", "1")])
    await until(lambda: sync.state == SYNCED)
    assert sync.book is not None and sync.book.levels()[0] == [("5", "2")]
    sync.on_update(event(121, 125, prev=120, asks=[("6", "4")]))
    sync.on_update(event(127, 130, prev=126, asks=[("6", "5")]))  # pu 126 != 125
    assert sync.stats.resyncs["gap"] == 1 and sync.book.levels()[1] == [("6", "4")]
    await sync.close()


async def test_usdm_snapshot_older_than_the_stream_is_stale() -> None:
    snapshots = Snapshots()
    sync = BinanceSync(USDM, settings(), lambda _: None, snapshots.fetch)
    sync.on_update(event(100, 120, prev=99))
    sync.on_connected()
    snapshots.put(90, bids=[("5", "1")], asks=[("6", "1")])  # U=100 > 90 and pu=99 != 90
    await until(lambda: sync.stats.resyncs["stale_snapshot"] == 1)
    await sync.close()


async def test_lost_connection_waits_for_the_next_one_before_fetching() -> None:
    snapshots = Snapshots()
    sync = await synced_spot(snapshots)
    sync.on_disconnected()
    assert sync.state == RESYNCING and sync.stats.resyncs["reconnect"] == 1
    await asyncio.sleep(0.05)
    assert snapshots.calls == 1
    sync.on_connected()
    await until(lambda: snapshots.calls == 2)
    await sync.close()


async def test_buffer_is_bounded() -> None:
    sync = BinanceSync(SPOT, settings(book_buffer_max_events="3"), lambda _: None, Snapshots().fetch)
    for n in range(5):
        sync.on_update(event(n, n))
    assert sync.stats.buffer_dropped == 2 and [u.first_id for u in sync._buffer] == [2, 3, 4]


class Resubscriber:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, instrument: InstrumentId) -> bool:
        self.calls += 1
        return True


async def synced_bybit(resubscribe: Resubscriber) -> BybitSync:
    sync = BybitSync(LINEAR, settings(), lambda _: None, resubscribe)
    sync.on_connected()
    sync.on_update(bybit(7, bids=[("1", "4")]))  # a delta before any snapshot: ignored
    sync.on_update(bybit(10, bids=[("1.0", "1")], asks=[("2.0", "1")], snapshot=True))
    sync.on_update(bybit(11, bids=[("1.5", "2")]))
    assert sync.state == SYNCED and sync.book is not None and sync.book.update_id == 11
    return sync


async def test_bybit_gap_resubscribes_and_the_next_snapshot_restores() -> None:
    resubscribe = Resubscriber()
    sync = await synced_bybit(resubscribe)
    good = sync.book
    sync.on_update(bybit(13, bids=[("1.6", "1")]))  # u=12 missing
    assert sync.stats.resyncs["gap"] == 1 and sync.state == RESYNCING and sync.book is good
    await until(lambda: resubscribe.calls == 1)
    sync.on_update(bybit(14, bids=[("1.7", "1")]))  # ignored until the snapshot
    sync.on_update(bybit(20, bids=[("1.6", "1")], asks=[("2.0", "1")], snapshot=True))
    assert sync.state == SYNCED and sync.book is not None and sync.book.levels()[0] == [("1.6", "1")]
    assert sync.stats.total_resyncs == 1  # the snapshot we asked for is not another resync
    await sync.close()


async def test_bybit_u1_snapshot_resets_and_is_counted() -> None:
    resubscribe = Resubscriber()
    sync = await synced_bybit(resubscribe)
    sync.on_update(bybit(1, bids=[("0.9", "1")], asks=[("1.1", "1")], snapshot=True))
    assert sync.stats.resyncs["reset"] == 1 and sync.state == SYNCED
    assert sync.book is not None and sync.book.update_id == 1
    sync.on_update(bybit(2, asks=[("1.2", "1")]))
    assert sync.book.update_id == 2 and resubscribe.calls == 0
    sync.on_update(bybit(9, bids=[("0.9", "1")], asks=[("1.1", "1")], snapshot=True))
    assert sync.stats.resyncs["exchange_snapshot"] == 1
    await sync.close()


async def test_bybit_crossing_delta_and_missing_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_module, "SNAPSHOT_TIMEOUT_S", 0.05)
    resubscribe = Resubscriber()
    sync = await synced_bybit(resubscribe)
    sync.on_update(bybit(12, bids=[("2.0", "1")]))  # bid at the best ask
    assert sync.stats.crossed == 1 and sync.stats.resyncs["crossed"] == 1
    await until(lambda: resubscribe.calls == 1)
    await asyncio.sleep(0.06)
    sync.tick(asyncio.get_running_loop().time() + 1)
    assert sync.stats.resyncs["snapshot_timeout"] == 1
    await until(lambda: resubscribe.calls == 2)
    await sync.close()


async def test_manager_serves_last_good_book_then_unavailable() -> None:
    manager = BookManager(settings(book_serve_stale_s="0.2"), [SPOT])
    snapshots = Snapshots()
    manager.syncs[SPOT] = spot = BinanceSync(SPOT, manager.settings, manager._changed, snapshots.fetch)
    with pytest.raises(BookUnavailable, match="not in sync yet"):
        manager.view(SPOT, 5)
    spot.on_connected()
    snapshots.put(10, bids=[("1", "1")], asks=[("2", "1")])
    await until(lambda: spot._work is not None)
    manager.on_frame(
        MarketKey.BINANCE_SPOT, Frame(FrameKind.BOOK, SPOT, book=event(11, 11, asks=[("3", "1")]))
    )
    view = manager.view(SPOT, 5)
    assert view.state == SYNCED and view.book.update_id == 11 and view.summary.spread == "1"
    manager.on_frame(MarketKey.BINANCE_SPOT, Frame(FrameKind.BOOK_INVALID, SPOT, detail="U/u are not ..."))
    view = manager.view(SPOT, 5)
    assert view.state == RESYNCING and view.last_resync_reason == "bad_input" and view.resyncs == 1
    await asyncio.sleep(0.25)
    with pytest.raises(BookUnavailable, match="resyncing for"):
        manager.view(SPOT, 5)
    manager.on_frame(MarketKey.BINANCE_SPOT, Frame(FrameKind.BOOK_INVALID, None, detail="no book for X"))
    assert manager.invalid_frames[MarketKey.BINANCE_SPOT] == 1
    assert SYNCING != SYNCED
    await manager.stop()


async def test_snapshot_weight_budget_queues_a_storm() -> None:
    budget = WeightBudget(per_minute=600)  # 10 weight/s, bursts of 300
    started = asyncio.get_running_loop().time()
    for _ in range(6):
        await budget.take(50)  # the burst: at once
    assert asyncio.get_running_loop().time() - started < 0.05
    await budget.take(5)  # the bucket is empty: half a second of refill
    assert asyncio.get_running_loop().time() - started >= 0.45
