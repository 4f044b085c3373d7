"""Real recorded Binance depth streams and their REST snapshots (shared/fixtures/recorded), replayed
through the real parser and sync code, and end to end through the replay exchange and gRPC, give
books equal to an independent reconstruction (reconstruct.py), level by level."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from marketdata.collector.binance import BinanceFrameParser
from marketdata.collector.books.snapshots import DepthSnapshot
from marketdata.collector.books.sync import SYNCED, BinanceSync
from marketdata.collector.bybit import BybitFrameParser
from marketdata.collector.frames import FrameKind
from marketdata.core.config import load_settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange.config import RecordingSource, ReplayConfig
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_book_pb2

from ..conftest import running_stack
from .reconstruct import (
    FUTURES_HTTP,
    FUTURES_WS,
    RECORDED,
    SPOT_HTTP,
    SPOT_WS,
    Recording,
    load,
    reconstruct,
)

CASES = [
    pytest.param(SPOT_WS, SPOT_HTTP, MarketKey.BINANCE_SPOT, id="spot"),
    pytest.param(FUTURES_WS, FUTURES_HTTP, MarketKey.BINANCE_FUTURES, id="usdm"),
]


def _snapshot(body: dict, receive_ns: int = 1) -> DepthSnapshot:  # type: ignore[type-arg]
    return DepthSnapshot(body["lastUpdateId"], body["bids"], body["asks"], body.get("T", 0), receive_ns, 1000)


async def _replay_through_sync(recording: Recording, market: MarketKey, when: str) -> dict[str, BinanceSync]:
    """Every recorded frame through the real parser into BinanceSync; each symbol's REST snapshot
    arrives `when`: before any event, at its recorded receive time, or after every event."""
    symbols = {s: InstrumentId(market, s) for s in recording.events}
    parser = BinanceFrameParser(market, symbols, symbols)
    settings = load_settings({})

    async def no_fetch(instrument: InstrumentId) -> DepthSnapshot:
        raise AssertionError("the test hands snapshots over itself")

    syncs = {s: BinanceSync(i, settings, lambda _: None, no_fetch) for s, i in symbols.items()}
    pending = dict(recording.snapshots)
    if when == "first":
        for symbol, (_, body) in pending.items():
            syncs[symbol].on_snapshot(_snapshot(body))
        pending.clear()
    for stamp, text in recording.frames:
        for symbol, (taken, body) in list(pending.items()):
            if when == "recorded" and taken <= stamp:
                syncs[symbol].on_snapshot(_snapshot(body))
                del pending[symbol]
        frame = parser.parse(text, int(stamp * 1e9))
        if frame.kind is FrameKind.BOOK:
            assert frame.instrument is not None and frame.book is not None
            syncs[frame.instrument.symbol].on_update(frame.book)
        else:
            assert frame.kind in (FrameKind.IGNORED, FrameKind.TRADES)  # bookTicker, kline, aggTrade
    for symbol, (_, body) in pending.items():
        syncs[symbol].on_snapshot(_snapshot(body))
    return syncs


@pytest.mark.parametrize(("ws", "http", "market"), CASES)
@pytest.mark.parametrize("when", ["first", "recorded", "last"])
async def test_sync_code_rebuilds_the_recorded_books_exactly(
    ws: Path, http: Path, market: MarketKey, when: str
) -> None:
    recording = load(ws, http)
    futures = market == MarketKey.BINANCE_FUTURES
    syncs = await _replay_through_sync(recording, market, when)
    assert len(syncs) == 4
    for symbol, sync in syncs.items():
        bids, asks, last_id = reconstruct(recording.snapshots[symbol][1], recording.events[symbol], futures)
        assert sync.stats.total_resyncs == 0, sync.stats
        book = sync.book
        assert book is not None and book.update_id == last_id, symbol
        if when != "first" or book.update_id != recording.snapshots[symbol][1]["lastUpdateId"]:
            assert sync.state == SYNCED
        assert book.levels() == (bids, asks), symbol
        assert not book.crossed()
        # Past a side the snapshot truncated (1000 levels asked, 1000 got), levels are untrusted.
        snapshot = recording.snapshots[symbol][1]
        top_bids, top_asks = book.top(10**6)
        for side, got, beyond in (
            (snapshot["bids"], top_bids, lambda p, edge: Decimal(p) < edge),
            (snapshot["asks"], top_asks, lambda p, edge: Decimal(p) > edge),
        ):
            if len(side) < 1000:
                assert not any(untrusted for _, _, untrusted in got)
            else:
                edge = Decimal(side[-1][0])
                assert all(untrusted == beyond(p, edge) for p, _, untrusted in got)


@pytest.mark.parametrize(("ws", "http", "market"), CASES)
async def test_end_to_end_replay_serves_the_reconstructed_books(
    ws: Path, http: Path, market: MarketKey
) -> None:
    """Replay exchange (recorded WS frames + the REST snapshots next to them) -> collector -> gRPC."""
    recording = load(ws, http)
    futures = market == MarketKey.BINANCE_FUTURES
    keys = ",".join(f"{market.value}:{s}" for s in recording.events)
    want = {s: reconstruct(recording.snapshots[s][1], e, futures) for s, e in recording.events.items()}
    replay = ReplayConfig(recordings=(RecordingSource(ws),), speed=0)
    async with running_stack(replay, keys) as stack:
        books = stack.service.collector.books
        assert books is not None
        ids = {s: InstrumentId(market, s) for s in want}
        await stack.wait_for(
            lambda: all(books.syncs[ids[s]].stats.update_id == want[s][2] for s in want),
            20,
            "the last update",
        )
        for symbol, (bids, asks, last_id) in want.items():
            request = collector_pb2.GetOrderBookRequest(instrument=ids[symbol].to_proto(), depth=200)
            view = (await stack.stub.GetOrderBook(request)).view
            assert view.state == order_book_pb2.BOOK_SYNC_STATE_SYNCED
            assert [(lv.price, lv.size) for lv in view.book.bids] == bids[:200], symbol
            assert [(lv.price, lv.size) for lv in view.book.asks] == asks[:200], symbol
            assert view.book.update_id == last_id
            assert view.summary.best_bid.price == bids[0][0] and view.summary.best_ask.price == asks[0][0]
            book = books.syncs[ids[symbol]].book
            assert book is not None and book.levels() == (bids, asks)  # every level, not just the top 200
        status = await stack.status()
        (feed,) = status.feeds
        assert feed.books == 4 and feed.books_synced == 4 and feed.book_resyncs == 0


def test_bybit_recorded_frames_parse_as_book_updates() -> None:
    """The real Bybit v5 lines: orderbook.1 snapshot and an orderbook.50 delta (with cts and seq)."""
    instrument = InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT")
    lines = (RECORDED / "bybit-v5-linear-2025-09-25.jsonl").read_text().splitlines()
    frames = {}
    for depth in (1, 50):
        parser = BybitFrameParser(
            MarketKey.BYBIT_LINEAR, {"BTCUSDT": instrument}, {"BTCUSDT": instrument}, depth
        )
        for line in lines:
            stamp, _, text = line.partition(" ")
            frame = parser.parse(text, int(stamp))
            if frame.kind is FrameKind.BOOK:
                frames[depth] = frame
    snapshot, delta = frames[1].book, frames[50].book
    assert snapshot is not None and snapshot.snapshot and snapshot.last_id == 14869255
    assert snapshot.bids == [["109378.80", "1.273"]] and snapshot.exchange_time_ms == 1758841134598
    assert delta is not None and not delta.snapshot and delta.last_id == 21111423
    assert delta.cross_sequence == 457538796406 and delta.asks[0] == ["109148.00", "0"]
