"""Cross-bar zones: volume imbalance, absorption (volume rule) and CVD divergence, on bars built by hand."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.core.analytics.orderflow import Bar, Side
from marketdata.core.analytics.orderflow_zones import (
    absorption_zones,
    divergences,
    heavy_rows,
    pivots,
    volume_imbalances,
)


def bar(
    i: int, o: int, h: int, low: int, c: int, rows: dict[int, list[int]] | None = None, cvd: int = 0
) -> Bar:
    out = Bar(i * 60, (i + 1) * 60, rows=rows or {low: [1, 1]}, open=o, high=h, low=low, close=c, trades=1)
    out.buy = sum(r[0] for r in out.rows.values())
    out.sell = sum(r[1] for r in out.rows.values())
    out.cvd = cvd
    return out


def test_volume_imbalance_is_a_gap_between_bodies() -> None:
    bars = [
        bar(0, 100, 105, 99, 102),
        bar(1, 104, 106, 101, 105),
        bar(2, 103, 104, 98, 99),
        bar(3, 99, 99, 90, 95),
    ]
    found = volume_imbalances(bars)
    # 1: body 104..105 above 100..102 (wicks overlap): a gap up [102, 104); 2: body 99..103 overlaps
    # 104..105? no: 103 < 104 -> gap down [103, 104); 3: body 95..99 touches 99 -> no gap
    assert [(z.index, z.side, z.low, z.high) for z in found] == [
        (1, Side.BUY, 102, 104),
        (2, Side.SELL, 103, 104),
    ]


def test_absorption_needs_heavy_volume_and_no_follow_through() -> None:
    heavy = {100: [1, 1], 101: [1, 1], 102: [30, 0], 103: [1, 1]}  # mean 36 / 4 = 9; 30 >= 3 x 9
    held = [bar(0, 100, 103, 100, 102, heavy), bar(1, 102, 102, 100, 101), bar(2, 101, 102, 99, 100)]
    (zone,) = absorption_zones(held, 1, Fraction(3), 2, 0)
    assert (zone.index, zone.side, zone.price, zone.window_extreme) == (0, Side.BUY, 102, 102)
    assert zone.multiple_text() == "3.333333"
    # price trades through the row's top (103 >= 102 + 1) within the window: not absorbed
    broken = [held[0], held[1], bar(2, 101, 103, 99, 103)]
    assert absorption_zones(broken, 1, Fraction(3), 2, 0) == []
    # the window is not complete yet: nothing reported
    assert absorption_zones(held[:2], 1, Fraction(3), 2, 0) == []
    # heavy must be >= multiple x mean (exactly 3x counts) and > min_volume
    exact = {100: [0, 0], 101: [9, 0], 102: [0, 0]}  # mean 3; 9 >= 3 x 3
    tie = [bar(0, 101, 101, 100, 101, exact), bar(1, 101, 101, 100, 100), bar(2, 100, 101, 100, 100)]
    assert [(z.price, z.side) for z in absorption_zones(tie, 1, Fraction(3), 2, 0)] == [(101, Side.BUY)]
    assert absorption_zones(tie, 1, Fraction(3), 2, 9) == []


def test_pivots_and_divergence() -> None:
    highs = [1, 3, 2, 5, 4, 4, 6, 1]
    assert pivots(highs, 1, 1, highs=True) == [1, 3, 6]
    assert pivots([3, None, 1, None, 2], 1, 1, highs=False) == [2]  # bars without trades are skipped
    # higher high with lower CVD: regular bearish; lower low with higher CVD: regular bullish
    bars = [
        bar(0, 10, 10, 8, 9, cvd=0),
        bar(1, 9, 15, 9, 14, cvd=50),
        bar(2, 14, 14, 5, 6, cvd=10),
        bar(3, 6, 17, 6, 16, cvd=30),
        bar(4, 16, 16, 3, 4, cvd=20),
        bar(5, 4, 12, 4, 11, cvd=25),
    ]
    found = divergences(bars, 1, 1, include_hidden=False)
    assert [(d.first, d.second, d.side, d.hidden) for d in found] == [
        (1, 3, Side.SELL, False),
        (2, 4, Side.BUY, False),
    ]
    hidden = [
        bar(0, 5, 5, 4, 5, cvd=0),
        bar(1, 5, 20, 5, 19, cvd=10),
        bar(2, 11, 12, 9, 10, cvd=0),
        bar(3, 10, 15, 10, 14, cvd=30),
        bar(4, 14, 14, 8, 9, cvd=0),
    ]
    found = divergences(hidden, 1, 1, include_hidden=True)
    assert [(d.first, d.second, d.side, d.hidden) for d in found] == [(1, 3, Side.SELL, True)]
    assert divergences(hidden, 1, 1, include_hidden=False) == []


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.integers(0, 30), st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=25),
    st.sampled_from(["1", "1.5", "3", "4.25"]),
    st.integers(0, 30),
)
def test_heavy_rows_match_a_plain_loop(
    raw: dict[int, tuple[int, int]], multiple: str, min_volume: int
) -> None:
    """heavy_rows (which skips the scan when no volume reaches the least heavy one) as the rule stated
    row by row: volume >= multiple x mean row volume and > min_volume."""
    rows = {p: [b, s] for p, (b, s) in raw.items()}
    subject = Bar(0, 60, rows=rows, buy=sum(b for b, _ in raw.values()), sell=sum(s for _, s in raw.values()))
    expected = []
    if rows and subject.volume:
        mean = Fraction(subject.volume, max(rows) - min(rows) + 1)
        for price in sorted(rows):
            for side, volume in zip((Side.BUY, Side.SELL), rows[price], strict=True):
                if volume > min_volume and volume >= Fraction(multiple) * mean:
                    expected.append((price, side, volume))
    assert heavy_rows(subject, 1, Fraction(multiple), min_volume) == expected
