"""Order-flow math against an independent Decimal oracle written from DESIGN's definitions."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.core.analytics.exact import format_scaled, format_units, to_units, volume_units
from marketdata.core.analytics.orderflow import (
    Bar,
    BarBuilder,
    Imbalance,
    Minute,
    MinuteDeltas,
    ParsedText,
    Side,
    bucket_minutes,
    cvd_at,
    diagonal_imbalances,
    merge_bar,
    stacked_zones,
)
from marketdata.core.analytics.profile import Grid
from marketdata.core.analytics.timeframes import session_range, utc_day
from tests.order_flow.oracle import Tick, oracle_bar, oracle_imbalances, oracle_stacks

MINUTE = 60_000
DAY = 86_400_000

# the oracle (tests/order_flow/oracle.py) is written plainly from DESIGN's definitions


def random_trades(rng: random.Random, start: int, minutes: int, count: int) -> list[Tick]:
    price = Decimal("100.0")
    out = []
    for _ in range(count):
        price = max(Decimal("90"), price + Decimal(rng.randint(-3, 3)) / 10)
        size = Decimal(rng.choice(["0.001", "0.5", "1", "2.25", "3", "0.1", "7"]))
        out.append((start + rng.randrange(minutes * MINUTE), price, size, rng.random() < 0.5))
    out.sort(key=lambda t: t[0])
    return out


# ---------------------------------------------------------------- the code under test


def minutes_of(trades: list[Tick], grid: Grid, as_footprint: bool) -> list[Minute]:
    by_minute: dict[int, list[Tick]] = {}
    for t in trades:
        by_minute.setdefault(t[0] - t[0] % MINUTE, []).append(t)
    out = []
    for start, group in sorted(by_minute.items()):
        if not as_footprint:
            m = Minute(start)
            for at, price, size, is_buy in group:
                m.add_trade(grid, str(price), str(size), is_buy, at)
            out.append(m)
            continue
        # what storage writes: tick rows, totals, OHLC and intrabar extremes as strings
        bar = oracle_bar(start, group, Decimal("0.1"))
        assert bar.ohlc is not None
        o, h, low, c = bar.ohlc
        out.append(
            Minute.from_footprint(
                start,
                grid,
                [(str(p), str(b), str(s)) for p, (b, s) in sorted(bar.rows.items())],
                trades=len(group),
                open_=str(o),
                high=str(h),
                low=str(low),
                close=str(c),
                max_delta=str(bar.max_delta),
                min_delta=str(bar.min_delta),
                first_ms=group[0][0],
                last_ms=group[-1][0],
            )
        )
    return out


def units(value: Decimal) -> int:
    text = str(value)
    return -volume_units(text[1:]) if text.startswith("-") else volume_units(text)


@pytest.mark.parametrize("as_footprint", [False, True])
@pytest.mark.parametrize(
    "row_size,timeframe", [("0.1", 5 * MINUTE), ("0.5", 15 * MINUTE), ("1", 60 * MINUTE)]
)
def test_bars_match_the_oracle(as_footprint: bool, row_size: str, timeframe: int) -> None:
    rng = random.Random(hash((as_footprint, row_size, timeframe)) & 0xFFFF)
    start = 1_700_000_000_000 - 1_700_000_000_000 % DAY
    trades = random_trades(rng, start, 180, 3000)
    grid = Grid.of(row_size, 1)
    row = Decimal(row_size)
    minutes = minutes_of(trades, grid, as_footprint)
    buckets = bucket_minutes(minutes, start, start + 180 * MINUTE, timeframe)
    for index, members in enumerate(buckets):
        bar_start = start + index * timeframe
        bar = merge_bar(bar_start, bar_start + timeframe, members)
        expected = [t for t in trades if bar_start <= t[0] < bar_start + timeframe]
        want = oracle_bar(bar_start, expected, row)
        rows, buy, sell, hi, lo, ohlc = (
            want.rows,
            want.buy,
            want.sell,
            want.max_delta,
            want.min_delta,
            want.ohlc,
        )
        assert {
            format_units(k, 1): [format_scaled(b, 18), format_scaled(s, 18)] for k, (b, s) in bar.rows.items()
        } == {
            str(p.quantize(Decimal("0.1"))): [format_scaled(units(b), 18), format_scaled(units(s), 18)]
            for p, (b, s) in rows.items()
        }
        assert (bar.buy, bar.sell, bar.delta) == (units(buy), units(sell), units(buy - sell))
        assert (bar.max_delta, bar.min_delta) == (units(Decimal(hi)), units(Decimal(lo)))
        assert bar.trades == len(expected)
        if ohlc:
            assert [bar.open, bar.high, bar.low, bar.close] == [to_units(str(p), 1) for p in ohlc]


def test_cvd_with_each_anchor() -> None:
    rng = random.Random(7)
    start = 1_700_000_000_000 - 1_700_000_000_000 % DAY
    trades = random_trades(rng, start - DAY, 3 * 1440, 4000)
    grid = Grid.of("0.1", 1)
    minutes = minutes_of(trades, grid, False)
    per_minute: dict[int, int] = {}
    for m in minutes:
        per_minute[m.start_ms] = per_minute.get(m.start_ms, 0) + m.delta
    deltas = MinuteDeltas(per_minute)
    anchors: dict[str, Callable[[int], int]] = {
        "utc_day": lambda t: utc_day(t)[0],
        "session": lambda t: session_range(t, "America/New_York", "09:30", "16:00")[0],
        "timestamp": lambda t: start - 7 * 3_600_000,
    }
    for name, anchor in anchors.items():
        for bar_end in range(start + 4 * 3_600_000, start + 2 * DAY, 3_600_000):
            a = anchor(bar_end - MINUTE)
            expected = sum(((s if b else -s) for t, _, s, b in trades if a <= t < bar_end), Decimal(0))
            assert cvd_at(deltas, bar_end, anchor) == units(expected), name


def test_imbalance_edges() -> None:
    grid = Grid.of("1", 0)
    v = volume_units
    # row 100: buy 3 vs sell(99) 1 -> exactly 3x (a tie counts); row 101: buy 1, nothing below -> 0
    rows = {99: [0, v("1")], 100: [v("3"), 0], 101: [v("1"), 0], 102: [v("1"), 0], 104: [0, v("2")]}
    found = diagonal_imbalances(rows, grid.row_units, Fraction(3), 0)
    # 99: sell 1 < 3 x buy(100); 100: buy 3 >= 3 x sell(99) = 3 (the tie counts); 101, 102: buys over
    # empty rows below; 104: sell over a missing row above
    assert [(i.price, i.side) for i in found] == [
        (100, Side.BUY),
        (101, Side.BUY),
        (102, Side.BUY),
        (104, Side.SELL),
    ]
    expected = oracle_imbalances(
        {Decimal(k): [Decimal(b) / 10**18, Decimal(s) / 10**18] for k, (b, s) in rows.items()},
        Decimal(1),
        Decimal(3),
        Decimal(0),
    )
    assert [(Decimal(i.price), i.side.value) for i in found] == expected
    zones = stacked_zones(found, grid.row_units, 3)
    assert [(z.side, z.low, z.high, z.rows) for z in zones] == [(Side.BUY, 100, 102, 3)]
    # min_volume is strict: volume equal to it is no imbalance
    assert not [i for i in diagonal_imbalances(rows, 1, Fraction(3), v("3")) if i.price == 100]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 30),
        st.tuples(st.integers(0, 12), st.integers(0, 12)),
        min_size=1,
    ),
    st.sampled_from(["1.5", "2", "3", "3.5", "10"]),
    st.integers(0, 4),
    st.integers(2, 4),
)
def test_imbalances_and_stacks_match_the_oracle(
    raw: dict[int, tuple[int, int]], ratio: str, min_volume: int, stack: int
) -> None:
    rows = {p: [b, s] for p, (b, s) in raw.items()}
    found = diagonal_imbalances(rows, 1, Fraction(ratio), min_volume)
    dec_rows = {Decimal(p): [Decimal(b), Decimal(s)] for p, (b, s) in raw.items()}
    expected = oracle_imbalances(dec_rows, Decimal(1), Decimal(ratio), Decimal(min_volume))
    assert [(Decimal(i.price), i.side.value) for i in found] == expected
    zones = stacked_zones(found, 1, stack)
    assert [(z.side.value, Decimal(z.low), Decimal(z.high)) for z in zones] == oracle_stacks(
        expected, Decimal(1), stack
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 15), st.sampled_from(["0.5", "1", "2", "3", "4.5"]), st.booleans()),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 10),
)
def test_bar_builder_keeps_imbalances_current(trades: list[tuple[int, str, bool]], every: int) -> None:
    """Folding trades one at a time (refreshing every few) gives the same bar and imbalances as a
    full recompute, and each imbalance that appeared was reported once as it appeared."""
    grid = Grid.of("1", 0)
    builder = BarBuilder(Bar(0, MINUTE), grid, Fraction(3), volume_units("1"))
    reported: set[tuple[int, Side]] = set()
    minute = Minute(0)
    for n, (price, size, is_buy) in enumerate(trades):
        builder.add_trade(str(100 + price), size, is_buy, n)
        minute.add_trade(grid, str(100 + price), size, is_buy, n)
        if n % every == 0 or n == len(trades) - 1:
            appeared, _ = builder.refresh()
            reported |= {(i.price, i.side) for i in appeared}
            expected = diagonal_imbalances(builder.bar.rows, 1, Fraction(3), volume_units("1"))
            assert builder.sorted_imbalances() == expected
            assert {(i.price, i.side) for i in expected} <= reported
    whole = merge_bar(0, MINUTE, [minute])
    bar = builder.bar
    assert (bar.rows, bar.buy, bar.sell, bar.trades) == (whole.rows, whole.buy, whole.sell, whole.trades)
    assert (bar.open, bar.high, bar.low, bar.close) == (whole.open, whole.high, whole.low, whole.close)
    assert (bar.max_delta, bar.min_delta) == (whole.max_delta, whole.min_delta)


# ---------------------------------------------------------------- fast paths against plain loops


def plain_footprint(grid: Grid, rows: list[tuple[str, str, str]]) -> dict[int, list[int]]:
    """A footprint's rows on `grid`, one stored row at a time (what Minute.from_footprint computes)."""
    out: dict[int, list[int]] = {}
    for price, buy, sell in rows:
        units = to_units(price, grid.decimals)
        row = out.setdefault(units - units % grid.row_units, [0, 0])
        row[0] += volume_units(buy)
        row[1] += volume_units(sell)
    return out


footprint_rows = st.lists(
    st.tuples(
        st.integers(900, 960),  # price in ticks of 0.1 (duplicates and any order allowed)
        st.sampled_from(["0", "0.001", "1", "2.5", "10", "0.333", "7.25", "123.456789"]),
        st.sampled_from(["0", "0.002", "1", "3", "0.5", "42.1", "9.999999999999999999"]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(footprint_rows, min_size=1, max_size=4),
    st.sampled_from(["0.1", "0.5", "1", "2.5"]),
    st.booleans(),
)
def test_footprint_columns_match_a_plain_loop(
    bars: list[list[tuple[int, str, str]]], row_size: str, summed: bool
) -> None:
    """Minute.from_footprint (columns through memos shared across the bars of a read, rows of one grid
    row added up, sums parsed without the memo) gives the rows, totals and extremes of a plain loop."""
    grid = Grid.of(row_size, 1)
    parsed = ParsedText(grid)
    for raw in bars:
        rows = [(str(Decimal(p) / 10), b, s) for p, b, s in raw]
        minute = Minute.from_footprint(0, grid, rows, parsed=parsed, summed=summed)
        expected = plain_footprint(grid, rows)
        assert minute.rows == expected
        assert list(minute.rows) == list(
            dict.fromkeys(k - k % grid.row_units for k, _, _ in _units(grid, rows))
        )
        assert (minute.buy, minute.sell) == (
            sum(b for b, _ in expected.values()),
            sum(s for _, s in expected.values()),
        )
        prices = [units for units, _, _ in _units(grid, rows)]
        assert (minute.low, minute.high) == ((min(prices), max(prices)) if prices else (None, None))
        assert minute.max_delta == minute.min_delta == minute.buy - minute.sell


def _units(grid: Grid, rows: list[tuple[str, str, str]]) -> list[tuple[int, str, str]]:
    return [(to_units(p, grid.decimals), b, s) for p, b, s in rows]


def plain_imbalances(
    rows: dict[int, list[int]], row_units: int, ratio: Fraction, min_volume: int
) -> list[Imbalance]:
    """DESIGN's diagonal rule, one row and one dictionary lookup at a time."""
    out = []
    for price in sorted(rows):
        buy, sell = rows[price]
        below = rows.get(price - row_units, [0, 0])[1]
        above = rows.get(price + row_units, [0, 0])[0]
        if buy > min_volume and buy >= ratio * below:
            out.append(Imbalance(price, Side.BUY, buy, below))
        if sell > min_volume and sell >= ratio * above:
            out.append(Imbalance(price, Side.SELL, sell, above))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.integers(0, 40), st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=30),
    st.sampled_from([1, 2, 5]),
    st.sampled_from(["1.5", "3", "3.25", "10"]),
    st.integers(0, 6),
)
def test_imbalances_match_a_plain_loop(
    raw: dict[int, tuple[int, int]], row_units: int, ratio: str, min_volume: int
) -> None:
    """diagonal_imbalances (one pass with each row's neighbours in price order) over rows with gaps,
    on grids of any step, as the plain lookup of the rows one step away."""
    rows = {p * row_units: [b, s] for p, (b, s) in raw.items()}
    assert diagonal_imbalances(rows, row_units, Fraction(ratio), min_volume) == plain_imbalances(
        rows, row_units, Fraction(ratio), min_volume
    )
