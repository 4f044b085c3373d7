"""The replay exchange's depth hub: synthetic books of generated instruments and their streams,
REST snapshots (synthetic or recorded) and the book faults (book_gap, book_reset, stale_snapshot,
book_crossed, book_malformed).

Books start when a depth stream or topic of a generated instrument is first subscribed (or its REST
snapshot first asked for), at the trade generator's current price; recorded instruments are served
their recorded depth frames (by feeds.py) and recorded REST snapshots (from cryptofeed `*.http.*`
captures next to the `*.ws.*` file, or given with --rest-file).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from marketdata.core.instruments import InstrumentId, MarketKey, parse_symbol
from marketdata.replay_exchange import binance
from marketdata.replay_exchange.books import (
    BinanceDepthStream,
    BybitBookTopic,
    RecordedSnapshots,
    SyntheticBook,
    binance_depth_interval,
    bybit_book_topic,
    price_ticks,
    sibling_rest_captures,
)
from marketdata.replay_exchange.peers import Peer, ws_frame

if TYPE_CHECKING:
    from marketdata.replay_exchange.state import ReplayState

TICK_S = 0.005  # book loop period while any depth stream is subscribed
IDLE_S = 0.05


class DepthHub:
    def __init__(self, state: ReplayState) -> None:
        self.state = state
        self.books: dict[InstrumentId, SyntheticBook] = {}
        self.binance_streams: dict[tuple[MarketKey, str], BinanceDepthStream] = {}
        self.bybit_topics: dict[tuple[MarketKey, str], BybitBookTopic] = {}
        self.recorded = RecordedSnapshots()
        self.pending: dict[InstrumentId, deque[tuple[str, str]]] = {}  # book faults waiting for a push
        self.stale: dict[InstrumentId, int] = {}  # stale REST snapshots still to serve
        self.faults_applied: dict[str, int] = {}
        self.snapshots_served = 0
        self._last_tick = 0.0
        paths: list[Path] = list(state.config.rest_recordings)
        for source in state.config.recordings:
            paths += [p for p in sibling_rest_captures(source.path) if p not in paths]
        for path in paths:
            self.recorded.load(path)

    # -- books ----------------------------------------------------------------------------------------

    def book_for(self, instrument: InstrumentId) -> SyntheticBook | None:
        """The synthetic book of a generated instrument (started on first use); None otherwise."""
        book = self.books.get(instrument)
        if book is not None:
            return book
        generator = self.state.generator
        slot = generator.slots.get(instrument) if generator is not None else None
        if slot is None:
            return None
        book = SyntheticBook(slot.walk.spec, self.state.config.seed, slot.walk.price_ticks, self.state.now())
        self.books[instrument] = book
        return book

    def on_trades(self, instrument: InstrumentId, trades: list[Any]) -> None:
        book = self.books.get(instrument)
        if book is not None and trades:
            last = trades[-1]
            book.on_trade(price_ticks(book.spec, last.price), last.is_buy)

    def active(self) -> bool:
        return bool(self.books)

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S if self.active() else IDLE_S)
            now = self.state.now()
            self.tick(now)
            self.state.outbox.flush(now)

    def tick(self, now: float) -> None:
        elapsed = min(0.25, now - self._last_tick) if self._last_tick else 0.0
        self._last_tick = now
        generator = self.state.generator
        # Pausing the generator pauses the whole market: no trades and no book changes.
        rate = 0.0 if generator is not None and generator.paused else self.state.config.book_churn_per_s
        for book in self.books.values():
            due = book.churn_carry + rate * elapsed
            count = int(due)
            book.churn_carry = due - count
            if count:
                book.churn(count)
            book.maybe_freeze(now)
        self._binance(now)
        self._bybit(now)

    def _binance(self, now: float) -> None:
        streams = self.binance_streams
        live: set[tuple[MarketKey, str]] = set()
        for market in (MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES):
            hub = self.state.hubs[market]
            for name, peers in list(hub.receivers.items()):
                if not peers:
                    continue
                stream = self._stream(market, name, now)
                if stream is None:
                    continue
                live.add((market, name))
                if stream.due(now):
                    self._push_binance(stream, peers, now)
        for key in [k for k in streams if k not in live]:
            streams.pop(key).detach()

    def _stream(self, market: MarketKey, name: str, now: float) -> BinanceDepthStream | None:
        """The diff-depth stream `name` of a synthetic book, created on first use."""
        stream = self.binance_streams.get((market, name))
        if stream is not None:
            return stream
        interval = binance_depth_interval(name, market)
        instrument = _instrument(market, name.partition("@")[0]) if interval is not None else None
        book = self.book_for(instrument) if instrument is not None else None
        if book is None or interval is None:
            return None
        stream = self.binance_streams[(market, name)] = BinanceDepthStream(name, book, market, interval, now)
        return stream

    def _push_binance(self, stream: BinanceDepthStream, peers: set[Peer], now: float) -> None:
        book = stream.book
        fault = self._take_fault(book.instrument)
        extra: list[list[str]] | None = None
        if fault is not None:
            extra = self._bad_levels(book, fault)
        payload = stream.event(now, extra)
        if payload is None:
            self._put_back(book.instrument, fault)
            return
        if fault is not None and fault[0] == "book_gap":
            return  # computed and dropped: the client sees the next event skip ahead
        if fault is not None and fault == ("book_malformed", "unknown_symbol"):
            bogus = dict(payload, s="ZZZNOPEUSDT", b=[], a=[])
            self._send_binance(stream.name, peers, orjson.dumps(bogus))
        self._send_binance(stream.name, peers, orjson.dumps(payload))

    @staticmethod
    def _send_binance(name: str, peers: set[Peer], payload: bytes) -> None:
        raw: bytes | None = None
        wrapped: bytes | None = None
        for peer in peers:
            if peer.combined:
                if wrapped is None:
                    wrapped = ws_frame(binance.combined(name, payload))
                peer.queue(wrapped)
            else:
                if raw is None:
                    raw = ws_frame(payload)
                peer.queue(raw)

    def _bybit(self, now: float) -> None:
        topics = self.bybit_topics
        live: set[tuple[MarketKey, str]] = set()
        for market in (MarketKey.BYBIT_SPOT, MarketKey.BYBIT_LINEAR):
            hub = self.state.hubs[market]
            for name, peers in list(hub.receivers.items()):
                if not peers or not name.startswith("orderbook."):
                    continue
                topic = self._topic(market, name)
                if topic is None:
                    continue
                live.add((market, name))
                if topic.due(now):
                    fault = self._take_fault(topic.book.instrument)
                    extra = self._bad_levels(topic.book, fault) if fault is not None else None
                    if fault is not None and fault[0] == "book_reset":
                        topic.reset_pending = True
                    frame = topic.push(now, extra)
                    if frame is None:
                        self._put_back(topic.book.instrument, fault)
                        continue
                    if fault is not None and fault[0] == "book_gap":
                        continue
                    if fault == ("book_malformed", "unknown_symbol"):
                        bogus = orjson.loads(frame)
                        bogus["topic"] = f"orderbook.{topic.depth}.ZZZNOPEUSDT"
                        bogus["data"]["s"] = "ZZZNOPEUSDT"
                        _send(peers, orjson.dumps(bogus))
                    _send(peers, frame)
        for key in [k for k in topics if k not in live]:
            del topics[key]

    def _topic(self, market: MarketKey, name: str) -> BybitBookTopic | None:
        topic = self.bybit_topics.get((market, name))
        if topic is not None:
            return topic
        parsed = bybit_book_topic(name)
        instrument = _instrument(market, parsed[1]) if parsed is not None else None
        book = self.book_for(instrument) if instrument is not None else None
        if parsed is None or book is None:
            return None
        topic = self.bybit_topics[(market, name)] = BybitBookTopic(
            name, parsed[0], book, market, self.state.now()
        )
        return topic

    def on_peer_subscribe(self, peer: Peer, name: str) -> None:
        """A Binance depth stream starts collecting changes at once (none may be lost between the
        subscription and the first push); a Bybit order-book subscription gets the topic's snapshot
        right after the acknowledgement."""
        if peer.market.is_binance:
            self._stream(peer.market, name, self.state.now())
            return
        if not name.startswith("orderbook."):
            return
        topic = self._topic(peer.market, name)
        if topic is None:
            return

        def send() -> None:
            if not peer.gone and name in peer.subscriptions:
                peer.queue(ws_frame(topic.snapshot_frame()))
                peer.flush(self.state.now())

        asyncio.get_running_loop().call_soon(send)

    # -- faults ---------------------------------------------------------------------------------------

    def add_fault(
        self, kind: str, instruments: list[InstrumentId], count: int, variant: str = ""
    ) -> list[str]:
        """Arm a book fault; returns the instruments it applies to."""
        applied = []
        for instrument in instruments:
            if kind == "stale_snapshot":
                if not instrument.market.is_binance:
                    continue
                self.stale[instrument] = self.stale.get(instrument, 0) + count
            else:
                if kind == "book_reset" and instrument.market.is_binance:
                    continue
                queue = self.pending.setdefault(instrument, deque())
                for n in range(count):
                    queue.append((kind, variant or _cycle(kind, n)))
            applied.append(instrument.key)
        return applied

    def _take_fault(self, instrument: InstrumentId) -> tuple[str, str] | None:
        queue = self.pending.get(instrument)
        if not queue:
            return None
        fault = queue.popleft()
        self.faults_applied[fault[0]] = self.faults_applied.get(fault[0], 0) + 1
        return fault

    def _put_back(self, instrument: InstrumentId, fault: tuple[str, str] | None) -> None:
        """A fault taken for a push that did not happen waits for the next one."""
        if fault is not None:
            self.pending.setdefault(instrument, deque()).appendleft(fault)
            self.faults_applied[fault[0]] -= 1

    @staticmethod
    def _bad_levels(book: SyntheticBook, fault: tuple[str, str]) -> list[list[str]] | None:
        kind, variant = fault
        best_bid, best_ask = book.best()
        if kind == "book_crossed" and best_ask is not None:
            return [[book.price(best_ask), book.qty(3)]]  # a bid at the best ask: crossed
        if kind == "book_malformed" and best_bid is not None:
            if variant == "negative_size":
                return [[book.price(best_bid), "-" + book.qty(1)]]
            if variant == "non_numeric":
                return [[book.price(best_bid), "lots"]]
        return None

    # -- REST -----------------------------------------------------------------------------------------

    def binance_snapshot(self, market: MarketKey, symbol: str, limit: int) -> dict[str, Any] | None:
        """The body of `/api/v3/depth` or `/fapi/v1/depth`, or None when the symbol has no book."""
        recorded = self.recorded.take(market, symbol)
        if recorded is not None:
            body = dict(recorded)
            body["bids"] = list(recorded.get("bids", []))[:limit]
            body["asks"] = list(recorded.get("asks", []))[:limit]
            self.snapshots_served += 1
            return body
        instrument = _instrument(market, symbol)
        book = self.book_for(instrument) if instrument is not None else None
        if book is None or instrument is None:
            return None
        stale = self.stale.get(instrument, 0)
        if stale and book.history:
            self.stale[instrument] = stale - 1
            self.faults_applied["stale_snapshot"] = self.faults_applied.get("stale_snapshot", 0) + 1
            frozen = book.history[0]
            last_id = frozen.update_id
            bids, asks = book.frozen_top(frozen, limit)
        else:
            last_id = book.update_id
            bids, asks = book.top(limit)
        self.snapshots_served += 1
        now_ms = time.time_ns() // 1_000_000
        if market == MarketKey.BINANCE_FUTURES:
            return {"lastUpdateId": last_id, "E": now_ms, "T": now_ms, "bids": bids, "asks": asks}
        return {"lastUpdateId": last_id, "bids": bids, "asks": asks}

    def bybit_snapshot(self, market: MarketKey, symbol: str, limit: int) -> dict[str, Any] | None:
        instrument = _instrument(market, symbol)
        book = self.book_for(instrument) if instrument is not None else None
        if book is None:
            return None
        bids, asks = book.top(limit)
        now_ms = time.time_ns() // 1_000_000
        return {
            "s": symbol,
            "b": bids,
            "a": asks,
            "ts": now_ms,
            "u": book.update_id,
            "seq": book.cross_sequence,
            "cts": now_ms - 1,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "books": {i.key: b.describe() for i, b in self.books.items()},
            "binance_streams": sorted(f"{m.value}:{n}" for m, n in self.binance_streams),
            "bybit_topics": sorted(f"{m.value}:{n}" for m, n in self.bybit_topics),
            "recorded_snapshots": {f"{m.value}:{s}": len(b) for (m, s), b in self.recorded.bodies.items()},
            "snapshots_served": self.snapshots_served,
            "faults_applied": dict(self.faults_applied),
            "pending": {i.key: len(q) for i, q in self.pending.items() if q},
            "stale_pending": {i.key: n for i, n in self.stale.items() if n},
        }


def _send(peers: set[Peer], frame: bytes) -> None:
    framed = ws_frame(frame)
    for peer in peers:
        peer.queue(framed)


def _instrument(market: MarketKey, symbol: str) -> InstrumentId | None:
    try:
        return InstrumentId(market, parse_symbol(symbol))
    except ValueError:
        return None


def _cycle(kind: str, n: int) -> str:
    if kind != "book_malformed":
        return ""
    variants = ("negative_size", "non_numeric", "unknown_symbol")
    return variants[n % len(variants)]
