"""Bar.encode caches encoded rows between encodes (the writer re-encodes every open bar at every commit);
whatever sequence of trades, merges and decodes a bar went through, each encode must give exactly the
bytes a plain encoding of the bar's current fields gives, built here with the protobuf classes."""

from __future__ import annotations

import random

import pytest

from marketdata.storage.footprints import (
    RES_1H,
    RES_1M,
    Bar,
    format_units,
    format_volume,
    to_units,
)
from marketdata.v1 import storage_service_pb2 as storage_pb2


def reference(bar: Bar) -> bytes:
    """The message from the bar's public fields: the head, then every row in price order, each as a
    FootprintBar.rows field (a one-row FootprintBar serializes as exactly that field)."""
    head = storage_pb2.FootprintBar(
        start_time_ms=bar.start_ms,
        resolution=bar.resolution,  # type: ignore[arg-type]
        row_size=bar.row_size,
        version=bar.version,
        trades=bar.trades,
        buy_volume=format_volume(bar.buy),
        sell_volume=format_volume(bar.sell),
        first_trade_time_ms=bar.first_ms,
        last_trade_time_ms=bar.last_ms,
    )
    fields = bar.price_fields()
    if fields is not None:
        head.open, head.high, head.low, head.close, head.max_delta, head.min_delta = fields
    out = [head.SerializeToString()]
    for key in sorted(bar.rows):
        buy, sell, buy_n, sell_n = bar.rows[key]
        row = storage_pb2.FootprintRow(
            price=format_units(key, bar.decimals),
            buy_volume=format_volume(buy),
            sell_volume=format_volume(sell),
            buy_trades=buy_n,
            sell_trades=sell_n,
        )
        out.append(storage_pb2.FootprintBar(rows=[row]).SerializeToString())
    return b"".join(out)


def check(bar: Bar) -> bytes:
    encoded = bar.encode()
    expected = reference(bar)
    assert encoded == expected
    assert storage_pb2.FootprintBar.FromString(encoded) == storage_pb2.FootprintBar.FromString(expected)
    return encoded


class Trades:
    """Random trades around a drifting price on one grid: at existing rows, new rows in the middle and
    beyond both ends, runs of new rows (more than a cache block holds), odd sizes."""

    def __init__(self, rng: random.Random, tick: str, low: int, high: int) -> None:
        self.rng = rng
        self.decimals = len(tick.partition(".")[2])
        self.tick_units = to_units(tick, self.decimals)
        self.low, self.high = low, high  # the range traded so far, in ticks
        self.time_ms = 1_000

    def price(self, ticks: int) -> str:
        units = ticks * self.tick_units + self.rng.randrange(self.tick_units)  # off-grid: floored
        text = format_units(units, self.decimals)
        extra = self.rng.choice(("", "", "3", "07"))  # digits beyond the row's decimals: truncated
        return text + (extra if "." in text or not extra else "." + extra)

    def size(self) -> str:
        return self.rng.choice(
            ("1", "0.001", "0.5", "2.25", "0.000000000000000001", "123456789.123456789", "40000")
        )

    def ticks(self) -> list[int]:
        rng, kind = self.rng, self.rng.random()
        if kind < 0.6:  # inside the traded range: mostly existing rows, some new ones between them
            return [rng.randint(self.low, self.high)]
        if kind < 0.75:
            self.high += rng.randint(1, 3)
            return [self.high]
        if kind < 0.9:
            self.low -= rng.randint(1, 3)
            return [self.low]
        if kind < 0.97:  # the same row over and over: trade counts above one varint byte
            return [rng.randint(self.low, self.high)] * rng.randint(100, 150)
        run = rng.randint(50, 200)  # a fast move: a run of new rows at one end
        if rng.random() < 0.5:
            self.high += run
            return list(range(self.high - run + 1, self.high + 1))
        self.low -= run
        return list(range(self.low, self.low + run))

    def next_time(self) -> int:
        self.time_ms += self.rng.choice((0, 1, 7))
        return self.time_ms


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tick", ["0.10", "0.5", "1", "0.00001"])
def test_encode_equals_reference_through_random_updates(seed: int, tick: str) -> None:
    rng = random.Random(f"{seed}-{tick}")
    trades = Trades(rng, tick, 100_000, 100_000)
    minute = Bar(0, tick, RES_1M)
    hour = Bar(0, tick, RES_1H)  # as the writer keeps it: add_parsed with the minute bar's units
    for step in range(40):
        batch = [ticks for _ in range(rng.randint(1, 30)) for ticks in trades.ticks()]
        for ticks in batch:
            price, size, is_buy = trades.price(ticks), trades.size(), rng.random() < 0.5
            time_ms = trades.next_time()
            units, volume = minute.add(price, size, is_buy, time_ms)
            hour.add_parsed(price, units, volume, is_buy, time_ms)
        minute.version = hour.version = step + 1
        action = rng.random()
        if action < 0.1:  # the writer lost its cached bar: read the stored bytes back, then extend
            minute = Bar.decode(check(minute))
        elif action < 0.15:  # another minute's rows roll into the hour, some on rows it has, some new
            other = Bar(60_000, tick, RES_1M)
            for _ in range(rng.randint(1, 200)):
                other.add(trades.price(rng.randint(trades.low - 5, trades.high + 5)), "0.3", True, 61_000)
            hour.merge(other, follows=rng.random() < 0.5)
        check(minute)
        check(hour)
        if rng.random() < 0.2:  # an encode with nothing changed in between
            check(hour)


def test_merge_onto_a_coarser_grid_equals_reference() -> None:
    """Rows merged from a finer row size land floored on the coarser rows, new and existing alike."""
    rng = random.Random(7)
    coarse = Bar(0, "1", RES_1H)
    for n in range(6):
        fine = Bar(n * 60_000, "0.01")
        for _ in range(300):
            price = f"{rng.randint(64_900, 65_100)}.{rng.randint(0, 99):02d}"
            fine.add(price, rng.choice(("0.002", "1.5")), rng.random() < 0.5, n * 60_000 + 1)
        check(fine)
        coarse.merge(fine)
        check(coarse)


def test_decoded_bar_is_encoded_canonically_then_extended() -> None:
    """Stored bytes not written by Bar.encode (rows out of order, texts not canonical, counts and
    volumes that need more than one length byte) come out canonical, and keep doing so as the bar
    grows."""
    message = storage_pb2.FootprintBar(
        start_time_ms=0, resolution=storage_pb2.FOOTPRINT_RESOLUTION_1M, row_size="0.10", version=3
    )
    huge = "9" * 120 + ".123456789012345678"  # a text longer than one length byte holds
    for price, buy, sell, buy_n, sell_n in [
        ("65000.3", "1.50", "0", 2, 0),
        ("64999.90", huge, huge, 300_000, 2**40),
        ("65000.1", "0.000", "2", 0, 1),
    ]:
        message.rows.add(price=price, buy_volume=buy, sell_volume=sell, buy_trades=buy_n, sell_trades=sell_n)
    bar = Bar.decode(message.SerializeToString())
    first = check(bar)
    assert [r.price for r in storage_pb2.FootprintBar.FromString(first).rows] == [
        "64999.90",
        "65000.10",
        "65000.30",
    ]
    bar.add("65000.15", "1", True, 5)  # a changed row
    bar.add("65000.20", "1", False, 5)  # a new row between two
    bar.add("10.00", huge, False, 5)  # a new lowest row
    check(bar)


def test_rows_filled_directly_are_encoded() -> None:
    """A backend may fill `rows` itself (MongoDB builds bars from documents) before encoding."""
    bar = Bar(0, "0.10")
    bar.add("65000.10", "1", True, 1)
    check(bar)
    bar.rows[6_500_050] = [10**18, 0, 1, 0]  # not through add: the next encode must still see it
    bar.rows[6_490_000] = [0, 10**18, 0, 1]
    check(bar)


def test_empty_bar_encodes_its_head() -> None:
    bar = Bar(120_000, "0.01")
    assert check(bar) == check(bar)
    bar.add("1.00", "1", True, 120_001)
    check(bar)
