"""Footprint bars with exact decimal arithmetic: integers at fixed scales, never binary floats.

A row is floor(price / row_size) * row_size (DESIGN, invariant 2). Prices are held as integers at the
row size's own decimals (the row size "0.10" prints rows as "65000.10"); since prices are positive,
truncating the price's extra decimals is the floor. Volumes are integers at VOLUME_SCALE (18) decimals,
enough for every exchange's sizes, and print canonically ("1.25", "0.003", "0").

A Bar is the writer's working copy of one stored FootprintBar message: it decodes the stored bytes,
adds newly stored trades, and re-encodes only the rows that changed.
"""

from __future__ import annotations

from collections.abc import Iterable

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

_ROW_TAG = b"\x22"  # FootprintBar.rows = 4, length-delimited


def row_units(price: str, tick_units: int, decimals: int) -> int:
    units = to_units(price, decimals)
    return units - units % tick_units


def bar_start(time_ms: int, resolution: int = RES_1M) -> int:
    size = BAR_MS[resolution]
    return time_ms - time_ms % size


class Bar:
    """One footprint bar being updated: rows keyed by price units -> [buy, sell, buy_n, sell_n]."""

    __slots__ = (
        "_encoded_rows",
        "buy",
        "decimals",
        "first_ms",
        "last_ms",
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
        self._encoded_rows: dict[int, bytes] = {}

    def add(self, price: str, size: str, is_buy: bool, time_ms: int) -> None:
        units = to_units(price, self.decimals)
        key = units - units % self.tick_units
        volume = volume_units(size)
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
        self._encoded_rows.pop(key, None)
        self.trades += 1
        if self.first_ms == 0 or time_ms < self.first_ms:
            self.first_ms = time_ms
        if time_ms > self.last_ms:
            self.last_ms = time_ms

    def merge(self, other: Bar) -> None:
        """Add another bar's rows (a roll-up), re-flooring them onto this bar's row size."""
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
            self._encoded_rows.pop(units, None)
        self.trades += other.trades
        self.buy += other.buy
        self.sell += other.sell
        if other.first_ms and (self.first_ms == 0 or other.first_ms < self.first_ms):
            self.first_ms = other.first_ms
        self.last_ms = max(self.last_ms, other.last_ms)

    def _row_bytes(self, key: int) -> bytes:
        encoded = self._encoded_rows.get(key)
        if encoded is None:
            buy, sell, buy_n, sell_n = self.rows[key]
            body = storage_pb2.FootprintRow(
                price=format_units(key, self.decimals),
                buy_volume=format_volume(buy),
                sell_volume=format_volume(sell),
                buy_trades=buy_n,
                sell_trades=sell_n,
            ).SerializeToString()
            encoded = self._encoded_rows[key] = _ROW_TAG + varint(len(body)) + body
        return encoded

    def encode(self) -> bytes:
        """The FootprintBar message (rows re-encoded only where they changed since the last encode)."""
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
        ).SerializeToString()
        row_bytes = self._row_bytes
        return head + b"".join([row_bytes(key) for key in sorted(self.rows)])

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
        return bar

    def to_proto(self) -> storage_pb2.FootprintBar:
        return storage_pb2.FootprintBar.FromString(self.encode())


def roll_up(bars: Iterable[Bar], resolution: int = RES_1H) -> dict[int, Bar]:
    """Merge bars into coarser bars (by start), each at the largest row size among its inputs."""
    groups: dict[int, list[Bar]] = {}
    for bar in bars:
        groups.setdefault(bar_start(bar.start_ms, resolution), []).append(bar)
    out: dict[int, Bar] = {}
    for start, members in groups.items():
        row_size = max((m.row_size for m in members), key=lambda r: to_units(r, MAX_DECIMALS))
        merged = Bar(start, row_size, resolution)
        for member in members:
            merged.merge(member)
        out[start] = merged
    return out
