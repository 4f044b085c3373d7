"""The local order book: exact levels, kept sorted, cheap to update and to read from the top.

Prices are compared as scaled integers (the price string with its decimal point removed, scaled to
the book's number of decimals), never as binary floats; the exchange's price and size strings are
kept unchanged for output. Each side is a dict (key -> (price, size)) plus a sorted list of keys with
the best price last, so that the busy end of the book is the cheap end of the list: inserting or
deleting near the top moves few list items. Asks are stored under negated keys for that reason.

Updates are absolute (size "0" deletes the level; deleting an absent level is a no-op, as both
exchanges document). `apply` validates every level before touching the book and records what it
changed, so a bad level or a crossing update can be rolled back and the last good book kept.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Any

# Exchange decimals: digits, optionally a fraction (no sign, no exponent, no NaN), as frames.py.
_MATCH = re.compile(r"\d{1,30}(?:\.\d{1,30})?\Z").match
_POW10: list[int] = [10**n for n in range(40)]
_CONTEXT = Context(prec=80)

Level = tuple[str, str]  # (price, size) exactly as the exchange sent them
# One undo record: (levels, keys, stored key, previous level or None when it was absent)
Undo = list[tuple[dict[int, Level], list[int], int, Level | None]]


class BookInputError(ValueError):
    """An update that must not be applied: a malformed level, a negative or non-numeric size."""


class _Rescale(Exception):
    """A price has more decimals than the book's scale."""

    def __init__(self, decimals: int) -> None:
        self.decimals = decimals


def decimals_of(price: str) -> int:
    dot = price.find(".")
    return 0 if dot < 0 else len(price) - dot - 1


def price_key(price: str, scale: int) -> int:
    """The price as an integer number of 10**-scale units; _Rescale if it has more decimals."""
    dot = price.find(".")
    if dot < 0:
        return int(price) * _POW10[scale]
    decimals = len(price) - dot - 1
    if decimals == scale:
        return int(price[:dot] + price[dot + 1 :])
    if decimals < scale:
        return int(price[:dot] + price[dot + 1 :]) * _POW10[scale - decimals]
    raise _Rescale(decimals)


def _is_zero(size: str) -> bool:
    return not size.strip("0.")


class OrderBook:
    """Both sides of one instrument's book and where it stands in the exchange's update sequence."""

    __slots__ = (
        "ask_bound",
        "ask_keys",
        "ask_levels",
        "bid_bound",
        "bid_keys",
        "bid_levels",
        "cross_sequence",
        "event_time_ms",
        "exchange_time_ms",
        "receive_ns",
        "scale",
        "update_id",
    )

    def __init__(self, scale: int = 8) -> None:
        self.scale = scale
        self.bid_levels: dict[int, Level] = {}
        self.bid_keys: list[int] = []  # ascending price: best bid last
        self.ask_levels: dict[int, Level] = {}
        self.ask_keys: list[int] = []  # ascending negated price: best ask last
        # Stored keys past which a side is outside the snapshot's range (untrusted); None: all known.
        self.bid_bound: int | None = None
        self.ask_bound: int | None = None
        self.update_id = 0
        self.exchange_time_ms = 0
        self.event_time_ms = 0
        self.receive_ns = 0
        self.cross_sequence = 0

    # -- building ---------------------------------------------------------------------------------------

    @classmethod
    def from_levels(
        cls,
        bids: Sequence[Any],
        asks: Sequence[Any],
        *,
        update_id: int,
        limit: int | None = None,
    ) -> OrderBook:
        """A book from a snapshot's levels; with `limit` (the depth asked of a REST snapshot), a side
        that came back full may continue past its last level, so anything beyond it is untrusted.
        Raises BookInputError on a bad level."""
        scale = 0
        for side in (bids, asks):
            for level in side[:50]:
                if type(level) in (list, tuple) and len(level) == 2 and type(level[0]) is str:
                    scale = max(scale, decimals_of(level[0]))
        book = cls(scale)
        book.apply(bids, asks, None)
        book.update_id = update_id
        if limit is not None:
            if len(bids) >= limit and book.bid_keys:
                book.bid_bound = book.bid_keys[0]
            if len(asks) >= limit and book.ask_keys:
                book.ask_bound = book.ask_keys[0]
        return book

    # -- updating ---------------------------------------------------------------------------------------

    def apply(self, bids: Sequence[Any], asks: Sequence[Any], undo: Undo | None) -> int:
        """Apply absolute levels; returns how many were applied. On BookInputError the levels
        applied so far stay applied: pass `undo` and call `rollback` to restore the book."""
        try:
            count = _apply_side(self.bid_levels, self.bid_keys, bids, self.scale, 1, undo)
            return count + _apply_side(self.ask_levels, self.ask_keys, asks, self.scale, -1, undo)
        except _Rescale as exc:
            if exc.decimals > 30:
                raise BookInputError(f"price with {exc.decimals} decimals") from None
            if undo:
                self.rollback(undo)
                undo.clear()
            self._rescale(exc.decimals)
            return self.apply(bids, asks, undo)

    def rollback(self, undo: Undo) -> None:
        """Undo the changes recorded by `apply`, newest first."""
        for levels, keys, key, old in reversed(undo):
            if old is None:
                if levels.pop(key, None) is not None:
                    del keys[bisect_left(keys, key)]
            else:
                if key not in levels:
                    insort(keys, key)
                levels[key] = old

    def _rescale(self, decimals: int) -> None:
        factor = _POW10[decimals - self.scale]
        self.scale = decimals
        self.bid_levels = {k * factor: v for k, v in self.bid_levels.items()}
        self.bid_keys = [k * factor for k in self.bid_keys]
        self.ask_levels = {k * factor: v for k, v in self.ask_levels.items()}
        self.ask_keys = [k * factor for k in self.ask_keys]
        if self.bid_bound is not None:
            self.bid_bound *= factor
        if self.ask_bound is not None:
            self.ask_bound *= factor

    # -- reading ----------------------------------------------------------------------------------------

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask (locked counts as crossed)."""
        return bool(self.bid_keys and self.ask_keys and self.bid_keys[-1] >= -self.ask_keys[-1])

    @property
    def bid_count(self) -> int:
        return len(self.bid_keys)

    @property
    def ask_count(self) -> int:
        return len(self.ask_keys)

    def best_bid(self) -> Level | None:
        return self.bid_levels[self.bid_keys[-1]] if self.bid_keys else None

    def best_ask(self) -> Level | None:
        return self.ask_levels[self.ask_keys[-1]] if self.ask_keys else None

    def top(self, depth: int) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
        """Up to `depth` levels per side, best first, as (price, size, untrusted)."""
        return (
            _top(self.bid_levels, self.bid_keys, depth, self.bid_bound),
            _top(self.ask_levels, self.ask_keys, depth, self.ask_bound),
        )

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level, best first (for tests and comparisons)."""
        return (
            [self.bid_levels[k] for k in reversed(self.bid_keys)],
            [self.ask_levels[k] for k in reversed(self.ask_keys)],
        )

    def copy(self) -> OrderBook:
        other = OrderBook(self.scale)
        other.bid_levels = dict(self.bid_levels)
        other.bid_keys = list(self.bid_keys)
        other.ask_levels = dict(self.ask_levels)
        other.ask_keys = list(self.ask_keys)
        other.bid_bound, other.ask_bound = self.bid_bound, self.ask_bound
        other.update_id = self.update_id
        other.exchange_time_ms, other.event_time_ms = self.exchange_time_ms, self.event_time_ms
        other.receive_ns, other.cross_sequence = self.receive_ns, self.cross_sequence
        return other


def _apply_side(
    levels: dict[int, Level],
    keys: list[int],
    updates: Sequence[Any],
    scale: int,
    sign: int,
    undo: Undo | None,
) -> int:
    # Hot loop: every level of every depth update goes through here.
    match, get = _MATCH, levels.get
    count = 0
    for entry in updates:
        try:
            price, size = entry
        except (TypeError, ValueError):
            raise BookInputError(f"level {entry!r} is not a [price, size] pair") from None
        if type(price) is not str or match(price) is None:
            raise BookInputError(f"price {price!r} is not a decimal string")
        if type(size) is not str or match(size) is None:
            raise BookInputError(f"size {size!r} at price {price} is not a non-negative decimal string")
        key = price_key(price, scale) * sign
        old = get(key)
        if not size.strip("0."):
            if old is not None:
                del levels[key]
                del keys[bisect_left(keys, key)]
                if undo is not None:
                    undo.append((levels, keys, key, old))
        else:
            levels[key] = (price, size)
            if old is None:
                insort(keys, key)
            if undo is not None:
                undo.append((levels, keys, key, old))
        count += 1
    return count


def _top(
    levels: dict[int, Level], keys: list[int], depth: int, bound: int | None
) -> list[tuple[str, str, bool]]:
    chosen = keys[-depth:] if depth < len(keys) else keys
    out = []
    for key in reversed(chosen):
        price, size = levels[key]
        out.append((price, size, bound is not None and key < bound))
    return out


def spread_and_mid(bid: str, ask: str) -> tuple[str, str]:
    """Exact best ask - best bid and (bid + ask) / 2, as plain decimal strings."""
    b, a = Decimal(bid), Decimal(ask)
    spread = _CONTEXT.subtract(a, b)
    mid = _CONTEXT.divide(_CONTEXT.add(a, b), 2)
    return _plain(spread), _plain(mid)


def total(sizes: Sequence[str]) -> Decimal:
    result = Decimal(0)
    for size in sizes:
        result = _CONTEXT.add(result, Decimal(size))
    return result


def _plain(value: Decimal) -> str:
    return format(value, "f")


def plain(value: Decimal) -> str:
    return _plain(value)
