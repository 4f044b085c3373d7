"""Order books of the replay exchange: a synthetic evolving book per generated instrument, its depth
streams (Binance diff depth, Bybit orderbook.{depth} topics) and REST snapshots, recorded REST
snapshots for recorded instruments, and the book faults.

The synthetic book follows the trade generator: after each batch of trades the book is made
consistent with the last print (a buy at p leaves the best ask at p and every bid below it; a sell
the other way round), then refilled, and between trades it churns (sizes change, levels come and go
near the top). Every level change takes one Binance-style update id, so diff events carry `U`..`u`
ranges, USD-M events chain through `pu`, and a REST snapshot's `lastUpdateId` is the id of the last
change it contains, exactly as on the exchange. Bybit topics push the difference between the current
top N and what their subscribers last got, with `u` rising by one per push.
"""

from __future__ import annotations

import math
import random
import re
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from marketdata.core.instruments import MarketKey, parse_symbol
from marketdata.replay_exchange.specs import InstrumentSpec

LEVELS = 300  # levels per side of a synthetic book
HISTORY_S = 1.0  # a copy of the book is kept this often, for the stale_snapshot fault
HISTORY = 5
BOOK_FAULT_KINDS = ("book_gap", "book_reset", "book_crossed", "book_malformed")
BOOK_MALFORMED_VARIANTS = ("negative_size", "non_numeric", "unknown_symbol")

# Binance diff-depth stream names and their push interval (s); @0ms pushes at every book tick.
_BINANCE_DEPTH = re.compile(r"^(?P<symbol>[a-z0-9_]+)@depth(?:@(?P<ms>\d+)ms)?$")
_BYBIT_INTERVALS = {1: 0.01, 50: 0.02, 200: 0.1, 1000: 0.2}
_REST_LINE = re.compile(r"^(?P<url>https?://\S+) -> (?P<ts>[0-9.]+): (?P<body>.*)$")


def binance_depth_interval(name: str, market: MarketKey) -> float | None:
    """Push interval of a Binance diff-depth stream name, None if the name is not one."""
    match = _BINANCE_DEPTH.match(name)
    if match is None:
        return None
    ms = match["ms"]
    if ms is None:
        return 1.0 if market == MarketKey.BINANCE_SPOT else 0.25
    return int(ms) / 1000


def bybit_book_topic(topic: str) -> tuple[int, str] | None:
    """(depth, symbol) of an `orderbook.{depth}.{symbol}` topic."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != "orderbook" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2]


# -- the synthetic book ---------------------------------------------------------------------------------


class Side:
    """One side of the synthetic book: ticks -> lot steps, and the sorted ticks."""

    __slots__ = ("keys", "levels")

    def __init__(self) -> None:
        self.levels: dict[int, int] = {}
        self.keys: list[int] = []  # ascending ticks

    def set(self, ticks: int, steps: int) -> bool:
        """True if something changed."""
        old = self.levels.get(ticks)
        if steps <= 0:
            if old is None:
                return False
            del self.levels[ticks]
            del self.keys[bisect_left(self.keys, ticks)]
            return True
        if old == steps:
            return False
        if old is None:
            insort(self.keys, ticks)
        self.levels[ticks] = steps
        return True


@dataclass
class Frozen:
    """A copy of the book at one update id (REST snapshots served late, for the stale_snapshot fault)."""

    update_id: int
    bids: dict[int, int]
    asks: dict[int, int]
    at: float


class SyntheticBook:
    def __init__(self, spec: InstrumentSpec, seed: int, price_ticks: int, now: float) -> None:
        self.spec = spec
        self.instrument = spec.instrument
        self.rng = random.Random(f"{seed}:book:{spec.instrument.key}")
        rng = self.rng
        self.bids = Side()
        self.asks = Side()
        self.update_id = rng.randrange(10**9, 10**11)
        self.cross_sequence = rng.randrange(10**10, 10**11)
        sigma = max(1.0, float(spec.start_price) * 2e-5 / float(spec.tick))
        self.gap = max(1, round(sigma / 8))  # ticks between neighbouring synthetic levels
        self.size_mu = math.log(max(1.0, float(spec.typical_qty / spec.step)) * 3)
        self.watchers: list[dict[tuple[int, int], None]] = []  # Binance emitters' changed levels
        self.history: deque[Frozen] = deque(maxlen=HISTORY)
        self.last_frozen = now
        self.churn_carry = 0.0
        self.changes = 0
        price_ticks = max(self.gap * 3, price_ticks)
        for n in range(1, LEVELS + 1):
            if price_ticks - n * self.gap > 0:
                self._set(0, price_ticks - n * self.gap, self._size())
            self._set(1, price_ticks + n * self.gap, self._size())
        self.history.append(self.freeze(now))

    def _size(self) -> int:
        return max(1, int(self.rng.lognormvariate(self.size_mu, 1.0)))

    def side(self, index: int) -> Side:
        return self.bids if index == 0 else self.asks

    def _set(self, side: int, ticks: int, steps: int) -> None:
        if self.side(side).set(ticks, steps):
            self.update_id += 1
            self.changes += 1
            for dirty in self.watchers:
                dirty[(side, ticks)] = None

    def best(self) -> tuple[int | None, int | None]:
        return (
            self.bids.keys[-1] if self.bids.keys else None,
            self.asks.keys[0] if self.asks.keys else None,
        )

    # -- evolution ------------------------------------------------------------------------------------

    def on_trade(self, price_ticks: int, is_buy: bool) -> None:
        """Make the book consistent with a print at `price_ticks` by a buyer (or a seller)."""
        bids, asks = self.bids, self.asks
        if is_buy:
            # The buyer lifted every ask below the print; what is left at the print stays best ask.
            for ticks in asks.keys[: bisect_left(asks.keys, price_ticks)]:
                self._set(1, ticks, 0)
            for ticks in bids.keys[bisect_left(bids.keys, price_ticks) :]:
                self._set(0, ticks, 0)
            self._set(1, price_ticks, self._size())
            top = bids.keys[-1] if bids.keys else 0
            ticks = price_ticks - self.gap
            while ticks > top and ticks > 0 and price_ticks - ticks <= 8 * self.gap:
                self._set(0, ticks, self._size())
                ticks -= self.gap
        else:
            for ticks in bids.keys[bisect_right(bids.keys, price_ticks) :]:
                self._set(0, ticks, 0)
            for ticks in asks.keys[: bisect_right(asks.keys, price_ticks)]:
                self._set(1, ticks, 0)
            if price_ticks > 0:
                self._set(0, price_ticks, self._size())
            low = asks.keys[0] if asks.keys else price_ticks + 10 * self.gap
            ticks = price_ticks + self.gap
            while ticks < low and ticks - price_ticks <= 8 * self.gap:
                self._set(1, ticks, self._size())
                ticks += self.gap
        self._refill()

    def churn(self, count: int) -> None:
        """`count` random changes near the top: new sizes, levels removed and added, never crossing."""
        rng = self.rng
        for _ in range(count):
            side_index = rng.random() < 0.5
            side = self.asks if side_index else self.bids
            if not side.keys:
                continue
            near = side.keys[:20] if side_index else side.keys[-20:]
            ticks = rng.choice(near)
            roll = rng.random()
            if roll < 0.6:
                self._set(int(side_index), ticks, self._size())
            elif roll < 0.8 and len(side.keys) > 5:
                self._set(int(side_index), ticks, 0)
            else:
                best_bid, best_ask = self.best()
                offset = rng.randint(1, 5 * self.gap)
                if side_index:
                    new = (best_ask or 0) + offset - 2 * self.gap
                    if best_bid is not None and new <= best_bid:
                        new = best_bid + 1
                else:
                    new = (best_bid or 0) - offset + 2 * self.gap
                    if best_ask is not None and new >= best_ask:
                        new = best_ask - 1
                if new > 0:
                    self._set(int(side_index), new, self._size())
        self._refill()

    def _refill(self) -> None:
        for index in (0, 1):
            side = self.side(index)
            keys = side.keys
            while len(keys) < LEVELS:
                if index == 0:
                    far = (keys[0] if keys else (self.asks.keys[0] if self.asks.keys else 100)) - self.gap
                    if far <= 0:
                        break
                else:
                    far = (keys[-1] if keys else (self.bids.keys[-1] if self.bids.keys else 100)) + self.gap
                self._set(index, far, self._size())
            while len(keys) > LEVELS + 50:
                self._set(index, keys[0] if index == 0 else keys[-1], 0)

    def maybe_freeze(self, now: float) -> None:
        if now - self.last_frozen >= HISTORY_S:
            self.last_frozen = now
            self.history.append(self.freeze(now))

    def freeze(self, now: float) -> Frozen:
        return Frozen(self.update_id, dict(self.bids.levels), dict(self.asks.levels), now)

    # -- wire forms -----------------------------------------------------------------------------------

    def price(self, ticks: int) -> str:
        return self.spec.format_price(ticks)

    def qty(self, steps: int) -> str:
        return self.spec.format_qty(steps)

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        """Best-first [price, size] pairs of the live book."""
        bids = [[self.price(t), self.qty(self.bids.levels[t])] for t in reversed(self.bids.keys[-depth:])]
        asks = [[self.price(t), self.qty(self.asks.levels[t])] for t in self.asks.keys[:depth]]
        return bids, asks

    def frozen_top(self, frozen: Frozen, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        bid_ticks = sorted(frozen.bids, reverse=True)[:depth]
        ask_ticks = sorted(frozen.asks)[:depth]
        return (
            [[self.price(t), self.qty(frozen.bids[t])] for t in bid_ticks],
            [[self.price(t), self.qty(frozen.asks[t])] for t in ask_ticks],
        )

    def describe(self) -> dict[str, Any]:
        best_bid, best_ask = self.best()
        return {
            "update_id": self.update_id,
            "bids": len(self.bids.keys),
            "asks": len(self.asks.keys),
            "best_bid": self.price(best_bid) if best_bid is not None else None,
            "best_ask": self.price(best_ask) if best_ask is not None else None,
            "changes": self.changes,
        }


# -- emitters -------------------------------------------------------------------------------------------


class BinanceDepthStream:
    """One `<symbol>@depth[@Nms]` stream of a synthetic book: diff events of what changed."""

    def __init__(
        self, name: str, book: SyntheticBook, market: MarketKey, interval: float, now: float
    ) -> None:
        self.name = name
        self.book = book
        self.market = market
        self.interval = interval
        self.dirty: dict[tuple[int, int], None] = {}
        book.watchers.append(self.dirty)
        self.first_id = book.update_id + 1  # U of the next event
        self.last_u = book.update_id  # u of the previous event (USD-M pu)
        self.next_at = now + interval
        self.events = 0

    def detach(self) -> None:
        if self.dirty in self.book.watchers:
            self.book.watchers.remove(self.dirty)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def event(self, now: float, extra_bids: list[list[str]] | None = None) -> dict[str, Any] | None:
        """The next diff event (None when nothing changed); advances the stream either way."""
        self.next_at = max(self.next_at + self.interval, now)
        book = self.book
        if not self.dirty and extra_bids is None:
            return None
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        for side, ticks in sorted(self.dirty):
            levels = book.bids.levels if side == 0 else book.asks.levels
            entry = [book.price(ticks), book.qty(levels.get(ticks, 0))]
            (bids if side == 0 else asks).append(entry)
        self.dirty.clear()
        if extra_bids is not None:
            book.update_id += 1  # the injected level takes an update id, as a real one would
            bids.extend(extra_bids)
        now_ms = time.time_ns() // 1_000_000
        payload: dict[str, Any] = {"e": "depthUpdate", "E": now_ms}
        if self.market == MarketKey.BINANCE_FUTURES:
            payload["T"] = now_ms
        payload["s"] = book.instrument.symbol
        payload["U"] = self.first_id
        payload["u"] = book.update_id
        if self.market == MarketKey.BINANCE_FUTURES:
            payload["pu"] = self.last_u
        payload["b"] = bids
        payload["a"] = asks
        self.first_id = book.update_id + 1
        self.last_u = book.update_id
        self.events += 1
        return payload


class BybitBookTopic:
    """One `orderbook.{depth}.{symbol}` topic of a synthetic book: snapshot, then deltas of the top N."""

    def __init__(self, topic: str, depth: int, book: SyntheticBook, market: MarketKey, now: float) -> None:
        self.topic = topic
        self.depth = depth
        self.book = book
        self.market = market
        self.interval = _BYBIT_INTERVALS.get(depth, 0.1)
        self.u = book.rng.randrange(10**6, 10**8)
        self.view_bids, self.view_asks = self._current()
        self.next_at = now + self.interval
        self.reset_pending = False
        self.pushes = 0

    def _current(self) -> tuple[dict[int, int], dict[int, int]]:
        book = self.book
        bids = {t: book.bids.levels[t] for t in book.bids.keys[-self.depth :]}
        asks = {t: book.asks.levels[t] for t in book.asks.keys[: self.depth]}
        return bids, asks

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def _frame(self, kind: str, bids: list[list[str]], asks: list[list[str]]) -> bytes:
        now_ms = time.time_ns() // 1_000_000
        self.book.cross_sequence += 1 + self.book.rng.randrange(50)
        data = {
            "s": self.book.instrument.symbol,
            "b": bids,
            "a": asks,
            "u": self.u,
            "seq": self.book.cross_sequence,
        }
        if self.market == MarketKey.BYBIT_SPOT:  # spot writes ts before type (Bybit's docs warn of it)
            body: dict[str, Any] = {"topic": self.topic, "ts": now_ms, "type": kind, "data": data}
        else:
            body = {"topic": self.topic, "type": kind, "ts": now_ms, "data": data}
        body["cts"] = now_ms - 1
        return orjson.dumps(body)

    def snapshot_frame(self) -> bytes:
        """The view subscribers have now, as a snapshot (for a new subscriber)."""
        book = self.book
        bids = [[book.price(t), book.qty(self.view_bids[t])] for t in sorted(self.view_bids, reverse=True)]
        asks = [[book.price(t), book.qty(self.view_asks[t])] for t in sorted(self.view_asks)]
        return self._frame("snapshot", bids, asks)

    def push(self, now: float, extra_bids: list[list[str]] | None = None) -> bytes | None:
        """The next push (None when the top did not change)."""
        self.next_at = max(self.next_at + self.interval, now)
        if self.reset_pending:
            self.reset_pending = False
            self.u = 1
            self.view_bids, self.view_asks = self._current()
            self.pushes += 1
            return self.snapshot_frame()
        bids_now, asks_now = self._current()
        book = self.book
        if self.depth == 1:
            if (bids_now, asks_now) == (self.view_bids, self.view_asks) and extra_bids is None:
                return None
            self.u += 1
            self.view_bids, self.view_asks = bids_now, asks_now
            self.pushes += 1
            return self.snapshot_frame()
        bids = _diff(book, self.view_bids, bids_now, reverse=True)
        asks = _diff(book, self.view_asks, asks_now, reverse=False)
        if extra_bids is not None:
            bids.extend(extra_bids)
        if not bids and not asks:
            return None
        self.u += 1
        self.view_bids, self.view_asks = bids_now, asks_now
        self.pushes += 1
        return self._frame("delta", bids, asks)


def _diff(book: SyntheticBook, old: dict[int, int], new: dict[int, int], *, reverse: bool) -> list[list[str]]:
    changed = [t for t, s in new.items() if old.get(t) != s] + [t for t in old if t not in new]
    changed.sort(reverse=reverse)
    return [[book.price(t), book.qty(new.get(t, 0))] for t in changed]


# -- recorded REST snapshots ----------------------------------------------------------------------------


@dataclass
class RecordedSnapshots:
    """REST depth snapshots from cryptofeed `*.http.*` captures, per (market, symbol), served in order."""

    bodies: dict[tuple[MarketKey, str], list[dict[str, Any]]] = field(default_factory=dict)
    served: dict[tuple[MarketKey, str], int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def load(self, path: Path) -> None:
        """Read one capture; ValueError naming the line when it is not one."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{path}: cannot open: {exc.strerror}") from None
        self.files.append(str(path))
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            match = _REST_LINE.match(line)
            if match is None:
                raise ValueError(f"{path}:{lineno}: expected '<url> -> <receive_ts>: <body>'")
            url = match["url"]
            market = _rest_market(url)
            symbol = re.search(r"[?&]symbol=([A-Za-z0-9_-]+)", url)
            if market is None or symbol is None or "/depth" not in url:
                continue  # other endpoints in the capture are not served
            try:
                body = orjson.loads(match["body"])
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: body is not JSON: {exc}") from None
            if isinstance(body, dict) and "lastUpdateId" in body:
                self.bodies.setdefault((market, parse_symbol(symbol[1])), []).append(body)

    def symbols(self) -> Iterator[tuple[MarketKey, str]]:
        return iter(self.bodies)

    def take(self, market: MarketKey, symbol: str) -> dict[str, Any] | None:
        """The next recorded snapshot of the symbol (the last one again once all were served)."""
        key = (market, symbol)
        bodies = self.bodies.get(key)
        if not bodies:
            return None
        index = self.served.get(key, 0)
        self.served[key] = index + 1
        return bodies[min(index, len(bodies) - 1)]


def _rest_market(url: str) -> MarketKey | None:
    if "fapi.binance" in url or "/fapi/" in url:
        return MarketKey.BINANCE_FUTURES
    if "binance" in url and "/api/v3/" in url:
        return MarketKey.BINANCE_SPOT
    return None


def is_rest_capture(path: Path) -> bool:
    """True for a cryptofeed REST capture (`<url> -> <ts>: <body>` lines)."""
    try:
        with path.open("r", encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(_REST_LINE.match(first.rstrip("\r\n")))


def sibling_rest_captures(path: Path) -> list[Path]:
    """cryptofeed writes `NAME.ws.N.M` next to `NAME.http.N.M`: the REST captures of a WS capture."""
    name = path.name
    if ".ws." not in name:
        return []
    prefix = name.split(".ws.", 1)[0]
    return sorted(p for p in path.parent.glob(f"{prefix}.http.*") if p.is_file())


def price_ticks(spec: InstrumentSpec, price: str) -> int:
    return int(Decimal(price) / spec.tick)
