"""Books end to end: replay exchange (synthetic evolving books, real protocols) -> collector -> gRPC.

The exchange's own book is the oracle: with the market paused, every collector book equals it level
by level. Under injected gaps, resets, stale snapshots, crossing and malformed updates the served
book is never crossed, says when it is stale, recovers within a snapshot round trip, and trade
collection goes on untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from typing import Any

import aiohttp
import grpc
import pytest

from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2, order_book_pb2

from ..conftest import Stack, assert_exactly_sent, running_stack

ALL = "binance-spot:BTCUSDT,binance-futures:BTCUSDT,bybit-spot:BTCUSDT,bybit-linear:BTCUSDT"
KEYS = ALL.split(",")
SYNCED = order_book_pb2.BOOK_SYNC_STATE_SYNCED
RESYNCING = order_book_pb2.BOOK_SYNC_STATE_RESYNCING
# A resync is one REST snapshot (Binance) or one resubscription (Bybit) away; on a loaded 2-core CI
# machine a round trip stays far below this.
RECOVERY_S = 3.0


def replay(keys: str = ALL, rate: float = 300, max_trades: int | None = None, **extra: Any) -> ReplayConfig:
    return ReplayConfig(
        instruments=tuple(InstrumentId.parse(k) for k in keys.split(",")),
        rate=rate,
        max_trades=max_trades,
        seed=11,
        **extra,
    )


async def control(stack: Stack, path: str, body: dict[str, Any] | None = None, **params: str) -> Any:
    async with aiohttp.ClientSession() as session:
        url = f"{stack.exchange.http_url}/_replay/{path}"
        request = session.post(url, json=body) if body is not None else session.get(url, params=params)
        async with request as response:
            result = await response.json()
            assert response.status == 200, result
            return result


async def get_book(stack: Stack, key: str, depth: int = 200) -> collector_pb2.OrderBookView:
    request = collector_pb2.GetOrderBookRequest(instrument=InstrumentId.parse(key).to_proto(), depth=depth)
    response = await stack.stub.GetOrderBook(request)
    return response.view


def sync_of(stack: Stack, key: str) -> Any:
    books = stack.service.collector.books
    assert books is not None
    return books.syncs[InstrumentId.parse(key)]


async def all_synced(stack: Stack, keys: list[str] = KEYS, timeout: float = 15) -> None:
    await stack.wait_for(
        lambda: all(sync_of(stack, k).state == SYNCED for k in keys), timeout, "books in sync"
    )


async def assert_equal_to_exchange(stack: Stack, keys: list[str] = KEYS) -> None:
    """Pause the market, let the last pushes land, compare every book with the exchange's."""
    await control(stack, "generator", {"action": "pause"})
    try:
        await asyncio.sleep(0.5)  # > the slowest push interval (Bybit orderbook.200: 100 ms)
        await all_synced(stack, keys)
        for key in keys:
            view = await get_book(stack, key, 200)
            truth = await control(stack, "book", instrument=key)
            assert view.state == SYNCED, key
            assert [[lv.price, lv.size] for lv in view.book.bids] == truth["bids"][:200], key
            assert [[lv.price, lv.size] for lv in view.book.asks] == truth["asks"][:200], key
            if key.startswith("binance"):
                assert view.book.update_id == truth["update_id"], key
    finally:
        await control(stack, "generator", {"action": "resume"})


class Watcher:
    """Polls GetOrderBook for every book while faults happen; remembers anything wrong."""

    def __init__(self, stack: Stack, keys: list[str]) -> None:
        self.stack = stack
        self.keys = keys
        self.problems: list[str] = []
        self.views = 0
        self.stale_views = 0
        self.unavailable = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for key in self.keys:
                try:
                    view = await get_book(self.stack, key, 20)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        self.problems.append(f"{key}: {exc.code()} {exc.details()}")
                    self.unavailable += 1
                    continue
                self.views += 1
                bids, asks = view.book.bids, view.book.asks
                if bids and asks and Decimal(bids[0].price) >= Decimal(asks[0].price):
                    self.problems.append(f"{key}: crossed book served at update {view.book.update_id}")
                prices = [Decimal(lv.price) for lv in bids]
                if prices != sorted(prices, reverse=True) or len(set(prices)) != len(prices):
                    self.problems.append(f"{key}: bids out of order")
                if view.state == RESYNCING:
                    self.stale_views += 1
                    if view.age_ms < 0 or not view.last_resync_reason:
                        self.problems.append(f"{key}: stale book without its age or reason")
                elif view.state != SYNCED:
                    self.problems.append(f"{key}: served in state {view.state}")
            await asyncio.sleep(0.005)

    def __enter__(self) -> Watcher:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def inject_and_recover(
    stack: Stack, keys: list[str], fault: dict[str, Any], reason: str | None
) -> float:
    """Inject a fault; wait until each book counted `reason` and is back in sync; the slowest recovery."""
    before = {k: dict(sync_of(stack, k).stats.resyncs) for k in keys}
    started = time.monotonic()
    result = await control(stack, "faults", fault)
    assert sorted(result["applied"]["instruments"]) == sorted(keys), result
    if reason is None:
        return 0.0
    slowest = 0.0
    for key in keys:
        sync = sync_of(stack, key)
        await stack.wait_for(
            lambda sync=sync, key=key: sync.stats.resyncs[reason] > before[key][reason],  # type: ignore[misc]
            10,
            f"{key} to count a {reason} resync",
        )
        counted, events = time.monotonic(), sync.stats.events
        await stack.wait_for(
            lambda sync=sync, events=events: sync.state == SYNCED and sync.stats.events > events,  # type: ignore[misc]
            10,
            f"{key} back in sync after {reason}",
        )
        slowest = max(slowest, time.monotonic() - counted)
    assert time.monotonic() - started < 15
    return slowest


async def test_books_equal_the_exchange_and_trades_are_untouched() -> None:
    async with running_stack(replay(rate=800, max_trades=600), ALL) as stack:
        await all_synced(stack)
        await stack.wait_for(lambda: stack.received.count() >= 200, 20, "trading")
        await assert_equal_to_exchange(stack)
        view = await get_book(stack, "binance-futures:BTCUSDT", 5)
        assert len(view.book.bids) == 5 and len(view.book.asks) == 5 and view.depth == 5
        best_bid, best_ask = Decimal(view.book.bids[0].price), Decimal(view.book.asks[0].price)
        assert view.summary.best_bid == view.book.bids[0] and view.summary.best_ask == view.book.asks[0]
        assert Decimal(view.summary.spread) == best_ask - best_bid
        assert Decimal(view.summary.mid) == (best_ask + best_bid) / 2
        bid_size = sum(Decimal(lv.size) for lv in view.book.bids)
        ask_size = sum(Decimal(lv.size) for lv in view.book.asks)
        assert Decimal(view.summary.bid_size) == bid_size
        assert view.summary.depth_imbalance == pytest.approx(
            float((bid_size - ask_size) / (bid_size + ask_size))
        )
        assert view.book.exchange_time_ms > 0 and 0 <= view.age_ms < 5000
        assert view.book.instrument.symbol == "BTCUSDT"
        # The book follows the trades: the last print sits between the best bid and the best ask.
        await stack.wait_all_delivered()
        for key in KEYS:
            assert_exactly_sent(stack, key)
        status = await stack.status()
        for feed in status.feeds:
            assert feed.books == 1 and feed.books_synced == 1 and feed.book_resyncs == 0
            (instrument,) = feed.instruments
            assert (
                instrument.book_state == SYNCED
                and instrument.book_updates > 0
                and instrument.book_update_id > 0
            )


async def test_faults_never_serve_a_crossed_book_and_recover_within_a_round_trip() -> None:
    async with running_stack(replay(rate=200), ALL) as stack:
        await all_synced(stack)
        binance, bybit = KEYS[:2], KEYS[2:]
        with Watcher(stack, KEYS) as watcher:
            slowest = [
                await inject_and_recover(stack, KEYS, {"kind": "book_gap"}, "gap"),
                await inject_and_recover(stack, KEYS, {"kind": "book_crossed"}, "crossed"),
                await inject_and_recover(
                    stack, KEYS, {"kind": "book_malformed", "variant": "negative_size"}, "bad_input"
                ),
                await inject_and_recover(
                    stack, KEYS, {"kind": "book_malformed", "variant": "non_numeric"}, "bad_input"
                ),
                await inject_and_recover(stack, bybit, {"kind": "book_reset"}, "reset"),
            ]
            # A stale snapshot answers the resync that the next gap causes; the retry gets a fresh one.
            await control(stack, "faults", {"kind": "stale_snapshot"})
            slowest.append(
                await inject_and_recover(stack, binance, {"kind": "book_gap", "exchange": "binance"}, "gap")
            )
            for key in binance:
                assert sync_of(stack, key).stats.resyncs["stale_snapshot"] == 1, (
                    key,
                    sync_of(stack, key).stats,
                    stack.exchange.state.depth.describe(),
                )
            invalid = await inject_and_recover(
                stack, KEYS, {"kind": "book_malformed", "variant": "unknown_symbol"}, None
            )
            assert invalid == 0.0
            await stack.wait_for(
                lambda: all(
                    stack.service.collector.books.invalid_frames[InstrumentId.parse(k).market] >= 1  # type: ignore[union-attr]
                    for k in KEYS
                ),
                10,
                "unknown-symbol frames counted",
            )
            await asyncio.sleep(0.2)
        assert not watcher.problems, watcher.problems[:5]
        assert watcher.views > 100
        assert max(slowest) < RECOVERY_S, slowest
        await assert_equal_to_exchange(stack)
        status = await stack.status()
        for feed in status.feeds:
            (instrument,) = feed.instruments
            assert feed.book_resyncs == instrument.book_resyncs >= 5, feed
            assert instrument.book_crossed >= 1 and feed.book_invalid_frames >= 1
            assert instrument.book_state == SYNCED
        url = f"http://127.0.0.1:{stack.service.metrics.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        labels = 'feed="bybit-linear",instrument="bybit-linear:BTCUSDT"'
        assert f'marketdata_collector_book_resyncs_total{{{labels},reason="reset"}} 1.0' in text
        assert f"marketdata_collector_book_synced{{{labels}}} 1.0" in text
        assert f"marketdata_collector_book_crossed_total{{{labels}}}" in text
        assert f"marketdata_collector_book_updates_total{{{labels}}}" in text
        assert f"marketdata_collector_book_age_seconds{{{labels}}}" in text
        # Trades went on throughout.
        assert all(len(stack.received.trades.get(k, [])) > 50 for k in KEYS)


async def test_reconnect_resyncs_the_books_and_trades_stay_exact() -> None:
    async with running_stack(replay(rate=800, max_trades=600), ALL) as stack:
        await all_synced(stack)
        await stack.wait_for(lambda: stack.received.count() >= 300, 20, "trading")
        with Watcher(stack, KEYS) as watcher:
            await control(stack, "faults", {"kind": "drop", "mode": "abort"})
            await stack.wait_for(
                lambda: all(sync_of(stack, k).stats.resyncs["reconnect"] == 1 for k in KEYS), 10, "resyncs"
            )
            await all_synced(stack)
        assert not watcher.problems, watcher.problems[:5]
        await stack.wait_all_delivered()
        for key in KEYS:
            assert_exactly_sent(stack, key)
        await assert_equal_to_exchange(stack)


async def test_grpc_arguments_are_checked_and_named() -> None:
    keys = "binance-spot:BTCUSDT,bybit-linear:BTCUSDT"
    async with running_stack(replay(keys, rate=50), keys, book_instruments="bybit-linear:BTCUSDT") as stack:
        linear = InstrumentId.parse("bybit-linear:BTCUSDT").to_proto()
        cases: list[tuple[collector_pb2.GetOrderBookRequest, str]] = [
            (collector_pb2.GetOrderBookRequest(), "instrument: is required"),
            (
                collector_pb2.GetOrderBookRequest(instrument=common_pb2.Instrument(symbol="BTCUSDT")),
                "instrument: exchange is unspecified",
            ),
            (
                collector_pb2.GetOrderBookRequest(
                    instrument=InstrumentId.parse("bybit-spot:BTCUSDT").to_proto()
                ),
                "instrument: bybit-spot:BTCUSDT is not collected",
            ),
            (
                collector_pb2.GetOrderBookRequest(
                    instrument=InstrumentId.parse("binance-spot:BTCUSDT").to_proto()
                ),
                "instrument: no order book is kept for binance-spot:BTCUSDT",
            ),
            (
                collector_pb2.GetOrderBookRequest(instrument=linear, depth=7),
                "depth: must be one of 5, 10, 20, 50, 200",
            ),
        ]
        for request, message in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stack.stub.GetOrderBook(request)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (info.value.details() or ""), info.value.details()
        bad_stream = collector_pb2.StreamOrderBookRequest(instrument=linear, interval_ms=5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stack.stub.StreamOrderBook(bad_stream):
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "interval_ms: must be 0 (every update) or 10..3600000" in (info.value.details() or "")
        await all_synced(stack, ["bybit-linear:BTCUSDT"])
        view = await get_book(stack, "bybit-linear:BTCUSDT", 0)
        assert view.depth == 20 and len(view.book.bids) == 20
        status = await stack.status()
        spot = next(f for f in status.feeds if f.feed == "binance-spot")
        assert spot.books == 0 and spot.instruments[0].book_state == order_book_pb2.BOOK_SYNC_STATE_OFF


async def test_unsynced_book_is_unavailable_not_empty() -> None:
    keys = "binance-futures:BTCUSDT"
    async with running_stack(replay(keys, rate=50), keys, reconnect_initial_s="0.05") as stack:
        await all_synced(stack, [keys])
        # From now on every REST call fails: the next resync cannot finish.
        await control(
            stack, "faults", {"kind": "rest", "market": "binance-futures", "count": 1000, "status": 500}
        )
        settings_stale = stack.service.collector.settings.book_serve_stale_s
        await control(stack, "faults", {"kind": "book_gap"})
        await stack.wait_for(lambda: sync_of(stack, keys).state == RESYNCING, 10, "resyncing")
        view = await get_book(stack, keys, 5)
        assert view.state == RESYNCING and view.last_resync_reason == "gap" and view.age_ms >= 0
        sync_of(stack, keys).unsynced_since -= settings_stale + 1  # as if it had resynced that long
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_book(stack, keys, 5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "resyncing for" in (info.value.details() or "")
        assert sync_of(stack, keys).stats.snapshot_errors >= 1


async def test_stream_order_book_at_an_interval_and_on_every_update() -> None:
    key = "binance-spot:BTCUSDT"
    async with running_stack(replay(key, rate=300), key) as stack:
        await all_synced(stack, [key])
        instrument = InstrumentId.parse(key).to_proto()
        stream = stack.stub.StreamOrderBook(
            collector_pb2.StreamOrderBookRequest(instrument=instrument, depth=10, interval_ms=100)
        )
        stamps, ids = [], []
        async for response in stream:
            stamps.append(time.monotonic())
            ids.append(response.view.book.update_id)
            assert len(response.view.book.bids) == 10 and response.view.state == SYNCED
            if len(stamps) == 5:
                break
        stream.cancel()
        assert stamps[-1] - stamps[0] >= 0.35 and ids == sorted(ids)
        every = stack.stub.StreamOrderBook(
            collector_pb2.StreamOrderBookRequest(instrument=instrument, depth=5)
        )
        ids = []
        async for response in every:
            ids.append(response.view.book.update_id)
            if len(ids) == 8:
                break
        every.cancel()
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)


async def test_rate_limited_snapshot_waits_as_told() -> None:
    key = "binance-spot:BTCUSDT"
    async with running_stack(replay(key, rate=100), key) as stack:
        await all_synced(stack, [key])
        await control(
            stack, "faults", {"kind": "rest", "market": "binance-spot", "status": 429, "retry_after": 1}
        )
        started = time.monotonic()
        await inject_and_recover(stack, [key], {"kind": "book_gap", "instrument": key}, "gap")
        assert time.monotonic() - started >= 0.9  # Retry-After: 1 was honoured
        sync = sync_of(stack, key)
        assert sync.stats.snapshot_errors == 1 and sync.state == SYNCED
