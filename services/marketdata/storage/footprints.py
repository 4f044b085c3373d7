"""Footprint bars with exact decimal arithmetic: integers at fixed scales, never binary floats.

A row is floor(price / row_size) * row_size (DESIGN, invariant 2). Prices are held as integers at the
row size's own decimals (the row size "0.10" prints rows as "65000.10"); since prices are positive,
truncating the price's extra decimals is the floor. Volumes are integers at VOLUME_SCALE (18) decimals,
enough for every exchange's sizes, and print canonically ("1.25", "0.003", "0").

A Bar is the writer's working copy of one stored FootprintBar message: it decodes the stored bytes,
adds newly stored trades, and re-encodes only the rows that changed.

Order-dependent fields (open, close, max_delta, min_delta) follow the bar's trades in (exchange time,
storage sequence) order: the order storage received trades of one millisecond in. High/low and these
four are "the price fields"; a bar holds all six or none (`exact` False: a bar written before they
existed, or one whose raw trades are gone when a late trade needed them). A trade that arrives after
the bar's last trade (the live case) or before its first one updates them in place; one that lands in
between sets `needs_recompute`, and the writer recomputes the bar from its stored raw trades
(`recompute`) before it saves it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

from marketdata.core.analytics.exact import (  # shared with the analytics; re-exported here
    MAX_DECIMALS,
    VOLUME_SCALE,
    decimals_of,
    format_units,
    format_volume,
    is_plain_decimal,
    parse_tick,
    to_units,
    volume_units,
)
from marketdata.core.wire import varint
from marketdata.v1 import storage_service_pb2 as storage_pb2

__all__ = [
    "BAR_MS",
    "HOUR_MS",
    "MAX_DECIMALS",
    "MINUTE_MS",
    "RES_1H",
    "RES_1M",
    "VOLUME_SCALE",
    "Bar",
    "bar_start",
    "decimals_of",
    "format_units",
    "format_volume",
    "is_plain_decimal",
    "parse_tick",
    "roll_up",
    "row_units",
    "to_units",
    "volume_units",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
RES_1M: int = storage_pb2.FOOTPRINT_RESOLUTION_1M
RES_1H: int = storage_pb2.FOOTPRINT_RESOLUTION_1H
BAR_MS: dict[int, int] = {RES_1M: MINUTE_MS, RES_1H: HOUR_MS}

# Encoded rows are cached in blocks of consecutive rows (one bytes object per block, the only copy of
# the row bytes a Bar keeps): an encode re-encodes the changed rows, splices them into their blocks and
# joins the blocks, so its cost follows the change, not the bar's size (an open 1h bar holds ~50k rows).
_BLOCK_ROWS = 64  # rows per block when blocks are (re)built
_MAX_BLOCK_ROWS = 2 * _BLOCK_ROWS  # a block that grows past this is split
_SMALL = tuple(chr(n) for n in range(0x80))  # one-byte varints as latin-1 text


def _varint_text(value: int) -> str:
    """Protobuf varint as latin-1 text (a row is assembled as text, then encoded byte for char)."""
    return _SMALL[value] if value < 0x80 else varint(value).decode("latin-1")


def _row_frame(key: int, row: list[int], decimals: int) -> bytes:
    """One FootprintBar.rows field (tag 4) exactly as protobuf serializes FootprintRow: fields in number
    order, strings always present (a price or volume text is never empty), zero trade counts omitted."""
    buy, sell, buy_n, sell_n = row
    price, buy_text, sell_text = format_units(key, decimals), format_volume(buy), format_volume(sell)
    body = (
        f"\n{_varint_text(len(price))}{price}"
        f"\x12{_varint_text(len(buy_text))}{buy_text}"
        f"\x1a{_varint_text(len(sell_text))}{sell_text}"
    )
    if buy_n:
        body += "\x20" + _varint_text(buy_n)
    if sell_n:
        body += "\x28" + _varint_text(sell_n)
    return f"\x22{_varint_text(len(body))}{body}".encode("latin-1")


def row_units(price: str, tick_units: int, decimals: int) -> int:
    units = to_units(price, decimals)
    return units - units % tick_units


def bar_start(time_ms: int, resolution: int = RES_1M) -> int:
    size = BAR_MS[resolution]
    return time_ms - time_ms % size


def _signed_volume(text: str) -> int:
    return -volume_units(text[1:]) if text.startswith("-") else volume_units(text)


def _above(price: str, units: int, than: str, than_units: int, decimals: int) -> bool:
    """price > than, exactly: by the row-decimal units first, by every digit only when those tie."""
    if units != than_units:
        return units > than_units
    if decimals_of(price) <= decimals and decimals_of(than) <= decimals:
        return False
    return to_units(price, MAX_DECIMALS) > to_units(than, MAX_DECIMALS)


class Bar:
    """One footprint bar being updated: rows keyed by price units -> [buy, sell, buy_n, sell_n]."""

    __slots__ = (
        "_block_firsts",
        "_block_keys",
        "_block_lens",
        "_chunks",
        "_dirty",
        "_encoded",
        "_high_units",
        "_low_units",
        "buy",
        "close",
        "decimals",
        "exact",
        "first_ms",
        "high",
        "last_ms",
        "low",
        "max_delta",
        "min_delta",
        "needs_recompute",
        "open",
        "resolution",
        "row_size",
        "rows",
        "sell",
        "start_ms",
        "tick_units",
        "trades",
        "version",
    )

    def __init__(self, start_ms: int, row_size: str, resolution: int = RES_1M) -> None:
        self.start_ms = start_ms
        self.resolution = resolution
        self.row_size = row_size
        self.tick_units, self.decimals = parse_tick(row_size)
        self.rows: dict[int, list[int]] = {}
        self.version = 0
        self.trades = 0
        self.buy = 0
        self.sell = 0
        self.first_ms = 0
        self.last_ms = 0
        # Encode state. Rows are only ever added, never removed. Every change this class makes to
        # `rows` puts the key in _dirty; the blocks hold the rows not in _dirty, encoded, in price
        # order: block i has keys _block_keys[i] (the first is _block_firsts[i]), their encoded
        # lengths _block_lens[i] and their joined bytes _chunks[i + 1] (_chunks[0] is the head).
        # _encoded counts the rows in blocks, so rows added to `rows` directly (decode, or a backend
        # filling a fresh bar) show as a count that differs from len(rows): the blocks are rebuilt.
        # Changing an existing row's list from outside would go unseen: use add/add_parsed/merge.
        self._dirty: set[int] = set()
        self._block_firsts: list[int] = []
        self._block_keys: list[list[int]] = []
        self._block_lens: list[list[int]] = []
        self._chunks: list[bytes] = []
        self._encoded = 0
        # the price fields (meaningful when exact and trades > 0)
        self.exact = True
        self.needs_recompute = False
        self.open = self.close = self.high = self.low = ""
        self._high_units = self._low_units = 0
        self.max_delta = self.min_delta = 0

    def add(self, price: str, size: str, is_buy: bool, time_ms: int) -> tuple[int, int]:
        """Add a newly stored trade (its storage sequence is above every trade the bar holds); returns
        (price units at this bar's decimals, volume units) for add_parsed on a bar of the same grid."""
        units = to_units(price, self.decimals)
        volume = volume_units(size)
        self.add_parsed(price, units, volume, is_buy, time_ms)
        return units, volume

    def add_parsed(self, price: str, units: int, volume: int, is_buy: bool, time_ms: int) -> None:
        """add() with the price already in units at this bar's decimals and the size in volume units."""
        key = units - units % self.tick_units
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0, 0, 0]
        if is_buy:
            row[0] += volume
            row[2] += 1
            self.buy += volume
        else:
            row[1] += volume
            row[3] += 1
            self.sell += volume
        self._dirty.add(key)
        if self.exact:  # the price fields, in place (inline: this runs for every stored trade, twice)
            if self.trades == 0:
                self.open = self.close = self.high = self.low = price
                self._high_units = self._low_units = units
                self.max_delta = self.min_delta = volume if is_buy else -volume
            else:
                if units >= self._high_units and (
                    units > self._high_units or _above(price, units, self.high, units, self.decimals)
                ):
                    self.high, self._high_units = price, units
                if units <= self._low_units and (
                    units < self._low_units or _above(self.low, units, price, units, self.decimals)
                ):
                    self.low, self._low_units = price, units
                if time_ms >= self.last_ms:  # after every held trade (same ms: received later)
                    self.close = price
                    delta = self.buy - self.sell  # includes this trade
                    if delta > self.max_delta:
                        self.max_delta = delta
                    elif delta < self.min_delta:
                        self.min_delta = delta
                elif time_ms < self.first_ms:  # before every held trade: each running delta shifts by it
                    signed = volume if is_buy else -volume
                    self.open = price
                    self.max_delta = max(signed, signed + self.max_delta)
                    self.min_delta = min(signed, signed + self.min_delta)
                else:
                    self.needs_recompute = True
        self.trades += 1
        if self.first_ms == 0 or time_ms < self.first_ms:
            self.first_ms = time_ms
        if time_ms > self.last_ms:
            self.last_ms = time_ms

    def same_grid(self, other: Bar) -> bool:
        """Rows of both bars are keyed alike (add's units can go to add_parsed)."""
        return self.decimals == other.decimals and self.tick_units == other.tick_units

    def recompute(self, trades: Sequence[tuple[str, str, bool]]) -> None:
        """Set the price fields from the bar's raw trades in (exchange time, storage sequence) order;
        when they are not all of the bar's trades (retention removed some), the fields become unknown."""
        self.needs_recompute = False
        if len(trades) != self.trades or not trades:
            self.exact = False
            return
        decimals = self.decimals
        first_price = trades[0][0]
        high = low = first_price
        high_units = low_units = to_units(first_price, decimals)
        delta = max_delta = min_delta = 0
        for n, (price, size, is_buy) in enumerate(trades):
            volume = volume_units(size)
            delta += volume if is_buy else -volume
            if n == 0:
                max_delta = min_delta = delta
                continue
            max_delta = max(max_delta, delta)
            min_delta = min(min_delta, delta)
            units = to_units(price, decimals)
            if _above(price, units, high, high_units, decimals):
                high, high_units = price, units
            if _above(low, low_units, price, units, decimals):
                low, low_units = price, units
        self.exact = True
        self.open, self.close = first_price, trades[-1][0]
        self.high, self._high_units, self.low, self._low_units = high, high_units, low, low_units
        self.max_delta, self.min_delta = max_delta, min_delta

    def price_fields(self) -> tuple[str, str, str, str, str, str] | None:
        """(open, high, low, close, max_delta, min_delta) as exact decimal text; None when unknown."""
        if not (self.exact and self.trades):
            return None
        return (
            self.open,
            self.high,
            self.low,
            self.close,
            format_volume(self.max_delta),
            format_volume(self.min_delta),
        )

    def set_price_fields(self, fields: Sequence[str] | None) -> None:
        """Take stored price fields (as price_fields() gives them); None or empty: unknown."""
        if not fields or not fields[0]:
            self.exact = self.trades == 0
            return
        self.open, self.high, self.low, self.close = fields[0], fields[1], fields[2], fields[3]
        self._high_units = to_units(self.high, self.decimals)
        self._low_units = to_units(self.low, self.decimals)
        self.max_delta, self.min_delta = _signed_volume(fields[4]), _signed_volume(fields[5])
        self.exact = True

    def merge(self, other: Bar, *, follows: bool = True) -> None:
        """Add another bar's rows (a roll-up), re-flooring them onto this bar's row size. `follows`:
        every trade of `other` comes after every trade merged so far (roll-ups merge in start order);
        otherwise the order-dependent fields cannot be known and become unknown."""
        shift = self.decimals - other.decimals
        for key, (buy, sell, buy_n, sell_n) in other.rows.items():
            units = key * 10**shift if shift >= 0 else key // 10**-shift
            units -= units % self.tick_units
            row = self.rows.get(units)
            if row is None:
                row = self.rows[units] = [0, 0, 0, 0]
            row[0] += buy
            row[1] += sell
            row[2] += buy_n
            row[3] += sell_n
            self._dirty.add(units)
        if other.trades:
            self._merge_price_fields(other, follows)
        self.trades += other.trades
        self.buy += other.buy
        self.sell += other.sell
        if other.first_ms and (self.first_ms == 0 or other.first_ms < self.first_ms):
            self.first_ms = other.first_ms
        self.last_ms = max(self.last_ms, other.last_ms)

    def _merge_price_fields(self, other: Bar, follows: bool) -> None:
        if not (self.exact and other.exact and (follows or self.trades == 0)):
            self.exact = False
            return
        other_high = to_units(other.high, self.decimals)
        other_low = to_units(other.low, self.decimals)
        if self.trades == 0:
            self.open, self.close = other.open, other.close
            self.high, self._high_units, self.low, self._low_units = (
                other.high,
                other_high,
                other.low,
                other_low,
            )
            self.max_delta, self.min_delta = other.max_delta, other.min_delta
            return
        before = self.buy - self.sell  # the running delta when `other` begins
        self.close = other.close
        if _above(other.high, other_high, self.high, self._high_units, self.decimals):
            self.high, self._high_units = other.high, other_high
        if _above(self.low, self._low_units, other.low, other_low, self.decimals):
            self.low, self._low_units = other.low, other_low
        self.max_delta = max(self.max_delta, before + other.max_delta)
        self.min_delta = min(self.min_delta, before + other.min_delta)

    def encode(self) -> bytes:
        """The FootprintBar message: the head, then the rows in price order (only rows that changed
        since the last encode are encoded again)."""
        head = storage_pb2.FootprintBar(
            start_time_ms=self.start_ms,
            resolution=self.resolution,  # type: ignore[arg-type]
            row_size=self.row_size,
            version=self.version,
            trades=self.trades,
            buy_volume=format_volume(self.buy),
            sell_volume=format_volume(self.sell),
            first_trade_time_ms=self.first_ms,
            last_trade_time_ms=self.last_ms,
        )
        fields = self.price_fields()
        if fields is not None:
            head.open, head.high, head.low, head.close, head.max_delta, head.min_delta = fields
        rows = len(self.rows)
        if not self._block_keys or 2 * len(self._dirty) > rows:  # none yet, or mostly new
            self._build()
        elif self._dirty:
            self._update()
        if self._encoded != rows:  # rows came without _dirty: cached blocks do not cover them
            self._build()
        chunks = self._chunks
        chunks[0] = head.SerializeToString()
        return b"".join(chunks)

    def _build(self) -> None:
        """Encode every row into fresh blocks."""
        rows, decimals = self.rows, self.decimals
        keys = sorted(rows)
        frames = [_row_frame(key, rows[key], decimals) for key in keys]
        lens = list(map(len, frames))
        self._block_firsts = keys[::_BLOCK_ROWS]
        self._block_keys = [keys[i : i + _BLOCK_ROWS] for i in range(0, len(keys), _BLOCK_ROWS)]
        self._block_lens = [lens[i : i + _BLOCK_ROWS] for i in range(0, len(keys), _BLOCK_ROWS)]
        self._chunks = [b""]
        self._chunks += [b"".join(frames[i : i + _BLOCK_ROWS]) for i in range(0, len(keys), _BLOCK_ROWS)]
        self._encoded = len(keys)
        self._dirty.clear()

    def _update(self) -> None:
        """Re-encode the dirty rows and splice them into their blocks (blocks exist: _build ran)."""
        rows, decimals, firsts = self.rows, self.decimals, self._block_firsts
        by_block: dict[int, list[int]] = {}
        for key in self._dirty:
            # the last block starting at or below the key; a key below every block goes to the first
            by_block.setdefault(max(bisect_right(firsts, key) - 1, 0), []).append(key)
        self._dirty.clear()
        # highest block first, so a split (which inserts blocks after i) leaves lower indices valid
        for i in sorted(by_block, reverse=True):
            keys, lens = self._block_keys[i], self._block_lens[i]
            data = self._chunks[i + 1]
            pieces: list[bytes] = []
            end = len(data)  # data[:end] is not yet in pieces
            # highest key first: an insertion at j never moves the rows below j still to come, so
            # lens[:j] still gives row j's offset in data
            for key in sorted(by_block[i], reverse=True):
                j = bisect_right(keys, key) - 1
                frame = _row_frame(key, rows[key], decimals)
                if j >= 0 and keys[j] == key:  # a changed row: replace data[start:after]
                    start = sum(lens[:j])
                    after = start + lens[j]
                    lens[j] = len(frame)
                else:  # a new row, after row j
                    j += 1
                    start = after = sum(lens[:j])
                    keys.insert(j, key)
                    lens.insert(j, len(frame))
                    self._encoded += 1
                pieces += (data[after:end], frame)
                end = start
            pieces.append(data[:end])
            pieces.reverse()
            joined = b"".join(pieces)
            firsts[i] = keys[0]
            if len(keys) <= _MAX_BLOCK_ROWS:
                self._chunks[i + 1] = joined
            else:
                self._split(i, joined)

    def _split(self, i: int, joined: bytes) -> None:
        """Replace block i (its bytes `joined`) by blocks of _BLOCK_ROWS rows."""
        keys, lens = self._block_keys[i], self._block_lens[i]
        starts = list(accumulate(lens, initial=0))
        cuts = range(0, len(keys), _BLOCK_ROWS)
        self._block_firsts[i : i + 1] = keys[::_BLOCK_ROWS]
        self._block_keys[i : i + 1] = [keys[c : c + _BLOCK_ROWS] for c in cuts]
        self._block_lens[i : i + 1] = [lens[c : c + _BLOCK_ROWS] for c in cuts]
        self._chunks[i + 1 : i + 2] = [
            joined[starts[c] : starts[min(c + _BLOCK_ROWS, len(keys))]] for c in cuts
        ]

    @classmethod
    def decode(cls, payload: bytes) -> Bar:
        message = storage_pb2.FootprintBar.FromString(payload)
        bar = cls(message.start_time_ms, message.row_size, message.resolution or RES_1M)
        bar.version = message.version
        bar.trades = message.trades
        bar.first_ms = message.first_trade_time_ms
        bar.last_ms = message.last_trade_time_ms
        decimals = bar.decimals
        for row in message.rows:
            buy, sell = volume_units(row.buy_volume), volume_units(row.sell_volume)
            bar.rows[to_units(row.price, decimals)] = [buy, sell, row.buy_trades, row.sell_trades]
            bar.buy += buy
            bar.sell += sell
        # empty: written before the price fields existed, or no longer knowable
        bar.set_price_fields(
            (message.open, message.high, message.low, message.close, message.max_delta, message.min_delta)
        )
        return bar

    def to_proto(self) -> storage_pb2.FootprintBar:
        return storage_pb2.FootprintBar.FromString(self.encode())


def roll_up(bars: Iterable[Bar], resolution: int = RES_1H) -> dict[int, Bar]:
    """Merge bars into coarser bars (by start), each at the largest row size among its inputs; the
    price fields merge in start order (open of the earliest bar, close of the latest, delta extremes
    offset by the delta before each bar)."""
    groups: dict[int, list[Bar]] = {}
    for bar in bars:
        groups.setdefault(bar_start(bar.start_ms, resolution), []).append(bar)
    out: dict[int, Bar] = {}
    for start, members in groups.items():
        row_size = max((m.row_size for m in members), key=lambda r: to_units(r, MAX_DECIMALS))
        merged = Bar(start, row_size, resolution)
        members.sort(key=lambda m: m.start_ms)
        previous = None
        for member in members:
            merged.merge(member, follows=previous is None or member.start_ms > previous)
            previous = member.start_ms
        out[start] = merged
    return out
