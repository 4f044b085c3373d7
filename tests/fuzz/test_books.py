"""Book handlers under random sequences of snapshots, deltas, garbage levels, reconnects and ticks:
whatever arrives, the handler never raises, and what readers are served is either "unavailable" or a
consistent book (both sides sorted best first, no empty or malformed level, never crossed or locked)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from marketdata.collector.books import BookManager, BookUnavailable
from marketdata.collector.books.snapshots import DepthSnapshot
from marketdata.collector.frames import BookUpdate, Frame, FrameKind
from marketdata.core.config import load_settings
from marketdata.core.instruments import InstrumentId, MarketKey

from .conftest import fuzz
from .test_frames import json_values

INSTRUMENTS = [InstrumentId(m, "BTCUSDT") for m in MarketKey]
SETTINGS = load_settings(
    {
        "MARKETDATA_INSTRUMENTS": ",".join(i.key for i in INSTRUMENTS),
        "MARKETDATA_BOOK_BUFFER_MAX_EVENTS": "8",
        "MARKETDATA_BOOK_SERVE_STALE_S": "3600",
    }
)


# Prices on a small grid (bids mostly below 100, asks mostly above, overlapping a little so that some
# updates cross), written with varying decimals; sizes mostly valid, sometimes zero (a delete),
# sometimes garbage.
def price(low: int, high: int) -> st.SearchStrategy[str]:
    return st.builds(lambda n, d: f"{Decimal(n) / 10:.{d}f}", st.integers(low, high), st.integers(1, 3))


sizes = st.one_of(
    st.sampled_from(["1", "0.5", "2.000", "0", "0.000"]),
    st.sampled_from(["-1", "abc", "1e3", ""]),
    json_values,
)
good_sizes = st.sampled_from(["1", "0.5", "3", "0"])


def side(low: int, high: int, size: st.SearchStrategy[Any], garbage: bool) -> st.SearchStrategy[list[Any]]:
    level = st.tuples(price(low, high), size).map(list)
    return st.lists(st.one_of(level, json_values) if garbage else level, max_size=4)


BIDS, ASKS = (985, 1001), (999, 1015)


def sides(garbage: bool) -> st.SearchStrategy[tuple[list[Any], list[Any]]]:
    size = sizes if garbage else good_sizes
    return st.tuples(side(*BIDS, size, garbage), side(*ASKS, size, garbage))


class FakeFetcher:
    """The REST snapshot endpoint: hands out what the test queued, else waits."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[DepthSnapshot] = asyncio.Queue()

    async def fetch(self, instrument: InstrumentId) -> DepthSnapshot:
        return await self.queue.get()


def operations() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    step = st.one_of(st.just(1), st.just(1), st.just(1), st.integers(-3, 5))
    update = st.tuples(st.just("update"), step, st.integers(0, 3))
    op = st.one_of(
        st.tuples(update, sides(garbage=True), st.booleans()),
        st.tuples(update, sides(garbage=False), st.booleans()),
        st.tuples(update, sides(garbage=False), st.booleans()),
        st.tuples(st.tuples(st.just("snapshot"), st.integers(-2, 2)), sides(garbage=False)),
        st.tuples(st.tuples(st.just("snapshot"), st.integers(-2, 2)), sides(garbage=True)),
        st.tuples(st.tuples(st.sampled_from(["invalid", "disconnect", "connect", "tick"]))),
    ).map(lambda parts: tuple(x for part in parts for x in (part if isinstance(part, tuple) else (part,))))
    return st.lists(op, min_size=5, max_size=60)


def assert_consistent(manager: BookManager, instrument: InstrumentId) -> None:
    for depth in (1, 20):
        try:
            view = manager.view(instrument, depth)
        except BookUnavailable as exc:
            assert str(exc)
            continue
        bids = [Decimal(level.price) for level in view.book.bids]
        asks = [Decimal(level.price) for level in view.book.asks]
        assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids), view
        assert asks == sorted(asks) and len(set(asks)) == len(asks), view
        assert not (bids and asks and bids[0] >= asks[0]), f"served a crossed book: {view}"
        for level in [*view.book.bids, *view.book.asks]:
            assert Decimal(level.size) > 0, level
    sync = manager.syncs[instrument]
    if sync.book is not None:
        assert not sync.book.crossed()


async def run(instrument: InstrumentId, ops: list[tuple[Any, ...]]) -> None:
    manager = BookManager(SETTINGS, [instrument])
    fetcher = FakeFetcher()
    manager._fetcher = fetcher  # type: ignore[assignment]

    async def resubscribe(_: InstrumentId) -> bool:
        return True

    manager.set_resubscriber(instrument.market, resubscribe)
    market = instrument.market
    futures = market == MarketKey.BINANCE_FUTURES
    update_id = 100
    try:
        manager.on_connected([instrument])
        for op in ops:
            kind = op[0]
            if kind == "update":
                _, step, span, bids, asks, snapshot = op
                first = update_id + step
                last = first + (span if market.is_binance else 0)
                prev = update_id if futures else -1
                update_id = max(update_id, last)
                book = BookUpdate(
                    max(first, 1),
                    max(last, 1),
                    prev,
                    bids,
                    asks,
                    1,
                    1,
                    5,
                    snapshot=snapshot and not market.is_binance,
                )
                manager.on_frame(market, Frame(FrameKind.BOOK, instrument, book=book))
            elif kind == "snapshot":
                _, offset, bids, asks = op
                fetcher.queue.put_nowait(DepthSnapshot(max(update_id + offset, 0), bids, asks, 0, 1, 1000))
            elif kind == "invalid":
                manager.on_frame(market, Frame(FrameKind.BOOK_INVALID, instrument, detail="fuzz"))
            elif kind == "disconnect":
                manager.on_disconnected([instrument])
            elif kind == "connect":
                manager.on_connected([instrument])
            else:
                for sync in manager.syncs.values():
                    sync.tick(asyncio.get_running_loop().time() + 5)
            for _ in range(4):
                await asyncio.sleep(0)  # let the snapshot task run
            assert_consistent(manager, instrument)
        served = [s for s in manager.syncs.values() if s.book is not None]
        event(f"{instrument.market.value}: a book was served" if served else "never in sync")
    finally:
        await manager.stop()


@fuzz(150)
@given(index=st.integers(0, len(INSTRUMENTS) - 1), ops=operations())
def test_random_book_sequences_never_raise_or_serve_a_crossed_book(
    index: int, ops: list[tuple[Any, ...]]
) -> None:
    asyncio.run(run(INSTRUMENTS[index], ops))


@fuzz(100)
@given(index=st.integers(0, len(INSTRUMENTS) - 1), detail=st.text(max_size=20))
def test_frames_for_books_we_do_not_keep_are_counted(index: int, detail: str) -> None:
    manager = BookManager(SETTINGS, [])
    market = INSTRUMENTS[index].market
    manager.on_frame(market, Frame(FrameKind.BOOK_INVALID, None, detail=detail))
    manager.on_frame(market, Frame(FrameKind.BOOK, INSTRUMENTS[index], book=None))
    assert manager.invalid_frames[market] == 2
