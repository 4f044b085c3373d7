"""Property tests of the profile math against a plain brute-force oracle of DESIGN's definitions."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.core.analytics.profile import (
    Grid,
    Histogram,
    VaMethod,
    VolumeUnit,
    compute_profile,
    is_multiple,
    poc_index,
    share_text,
    value_area,
    volume_nodes,
)

# ---------------------------------------------------------------- the oracle, written plainly


def oracle_rows(trades, row_size: Decimal):
    """{row price: [buy, sell]} over the full grid, Decimal arithmetic, floor(price / size) * size."""
    hist: dict[Decimal, list[Decimal]] = {}
    for price, size, is_buy in trades:
        row = (price / row_size).to_integral_value(rounding="ROUND_FLOOR") * row_size
        entry = hist.setdefault(row, [Decimal(0), Decimal(0)])
        entry[0 if is_buy else 1] += size
    if not hist:
        return []
    out = []
    p = min(hist)
    while p <= max(hist):
        out.append((p, *hist.get(p, [Decimal(0), Decimal(0)])))
        p += row_size
    return out


def oracle_poc(totals):
    best = max(totals)
    candidates = [i for i, v in enumerate(totals) if v == best]
    middle = Fraction(len(totals) - 1, 2)
    nearest = min(abs(i - middle) for i in candidates)
    return min(i for i in candidates if abs(i - middle) == nearest)


def oracle_value_area(totals, poc, pct, rows_per_step):
    total = sum(totals)
    low = high = poc
    va = totals[poc]
    while Fraction(va) < Fraction(pct) / 100 * Fraction(total):
        above = list(range(high + 1, min(high + rows_per_step, len(totals) - 1) + 1))
        below = list(range(max(low - rows_per_step, 0), low))
        if not above and not below:
            break
        vol_above = sum(totals[i] for i in above)
        vol_below = sum(totals[i] for i in below)
        if not below or (above and vol_above >= vol_below):
            high = above[-1]
            va += vol_above
        else:
            low = below[0]
            va += vol_below
    return low, high, va


# ---------------------------------------------------------------- strategies

ROW_SIZES = ["0.01", "0.10", "0.5", "1", "2.5", "0.001", "10"]


@st.composite
def trades_and_row(draw):
    tick = draw(st.sampled_from(["0.01", "0.1", "0.001", "1"]))
    tick_d = Decimal(tick)
    multiple = draw(st.integers(1, 25))
    base = draw(st.integers(1000, 100000))
    n = draw(st.integers(1, 60))
    spread = draw(st.integers(0, 80))
    trades = []
    for _ in range(n):
        ticks = base + draw(st.integers(0, spread))
        size = Decimal(draw(st.sampled_from([1, 2, 3, 5, 10, 25]))) / Decimal(
            draw(st.sampled_from([1, 10, 1000]))
        )
        trades.append((ticks * tick_d, size, draw(st.booleans())))
    return trades, tick_d * multiple


def histogram_of(trades, row_size: Decimal) -> Histogram:
    hist = Histogram(Grid.of(str(row_size)))
    for price, size, is_buy in trades:
        hist.add_trade(str(price), str(size), is_buy)
    return hist


@settings(max_examples=300, deadline=None)
@given(trades_and_row(), st.sampled_from([VaMethod.DUAL_ROW, VaMethod.SINGLE_ROW]), st.integers(1, 100))
def test_profile_matches_oracle(case, method, pct) -> None:
    trades, row_size = case
    profile = compute_profile(histogram_of(trades, row_size), Fraction(pct), method)
    expected = oracle_rows(trades, row_size)
    got = [
        (Decimal(profile.price(i)), Decimal(profile.volume(r.buy)), Decimal(profile.volume(r.sell)))
        for i, r in enumerate(profile.rows)
    ]
    assert got == expected
    # prices print with the row size's decimals, exactly
    row_decimals = len(str(row_size).partition(".")[2])
    assert all(len(profile.price(i).partition(".")[2]) == row_decimals for i in range(len(expected)))
    totals = [b + s for _, b, s in expected]
    poc = oracle_poc(totals)
    assert profile.poc == poc
    low, high, va = oracle_value_area(totals, poc, pct, 2 if method is VaMethod.DUAL_ROW else 1)
    assert (profile.va_low, profile.va_high) == (low, high)
    assert Decimal(profile.volume(profile.va_volume)) == va
    assert profile.value_area_share == Fraction(va) / Fraction(sum(totals))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=14),
    st.integers(1, 100),
    st.sampled_from([VaMethod.DUAL_ROW, VaMethod.SINGLE_ROW]),
)
def test_ties_on_small_integer_grids(totals, pct, method) -> None:
    """Small integer volumes make ties common: POC ties, equal sides, POC at an edge."""
    if sum(totals) == 0:
        totals = [*totals[:-1], 1]
    poc = poc_index(totals)
    assert poc == oracle_poc(totals)
    expected = oracle_value_area(totals, poc, pct, 2 if method is VaMethod.DUAL_ROW else 1)
    assert value_area(totals, poc, Fraction(pct), method) == expected


def test_poc_tie_rules() -> None:
    assert poc_index([5, 1, 1, 1, 5]) == 0  # equally near the middle: the lower price
    assert poc_index([5, 1, 1, 5, 1]) == 3  # nearest the middle of [0, 4]
    assert poc_index([1, 5, 5, 1]) == 1  # middle 1.5: both 0.5 away, lower
    assert poc_index([9, 1, 1]) == 0  # at the edge
    assert poc_index([]) == -1


def test_value_area_dual_row_example() -> None:
    # rows low..high; POC index 3 (volume 10); total 40, 70% = 28
    totals = [2, 4, 6, 10, 5, 5, 8]
    # step 1: above 5+5=10, below 6+4=10 -> tie: above -> va 20, high 5
    # step 2: above [8] = 8, below 6+4 = 10 -> below -> va 30 >= 28
    assert value_area(totals, 3, Fraction(70), VaMethod.DUAL_ROW) == (1, 5, 30)
    # single_row: above 5 vs below 6 -> below (16); 5 vs 4 -> above (21); 5 vs 4 -> above (26);
    # 8 vs 4 -> above (34)
    assert value_area(totals, 3, Fraction(70), VaMethod.SINGLE_ROW) == (2, 6, 34)
    assert value_area(totals, 3, Fraction(100), VaMethod.DUAL_ROW) == (0, 6, 40)


def test_row_flooring_is_exact() -> None:
    hist = Histogram(Grid.of("0.10"))
    hist.add_trade("65000.10", "1", True)
    hist.add_trade("65000.19", "2", False)
    hist.add_trade("65000.3", "0.5", True)
    profile = compute_profile(hist)
    assert [profile.price(i) for i in range(len(profile.rows))] == ["65000.10", "65000.20", "65000.30"]
    assert [(r.buy, r.sell) for r in profile.rows][1] == (0, 0)  # empty row in the grid
    assert profile.price(profile.poc) == "65000.10"


def test_quote_volume_is_price_times_size() -> None:
    hist = Histogram(Grid.of("1"), volume_scale=18 + 2)
    hist.add_trade("100.25", "2", True, VolumeUnit.QUOTE)
    hist.add_trade("100.50", "0.1", False, VolumeUnit.QUOTE)
    profile = compute_profile(hist)
    assert profile.volume(profile.rows[0].buy) == "200.5"
    assert profile.volume(profile.rows[0].sell) == "10.05"


def test_footprint_rows_merge_and_regrid() -> None:
    hist = Histogram(Grid.of("0.5", 2))
    hist.add_footprint_rows("0.01", [("100.01", "1", "0"), ("100.49", "0", "2"), ("100.50", "3", "0")])
    hist.add_footprint_rows("0.01", [("100.00", "1", "1")])
    profile = compute_profile(hist)
    assert [(profile.price(i), r.buy, r.sell) for i, r in enumerate(profile.rows)] == [
        ("100.00", 2 * 10**18, 3 * 10**18),
        ("100.50", 3 * 10**18, 0),
    ]
    with pytest.raises(ValueError):
        Histogram(Grid.of("0.015")).add_footprint_rows("0.01", [])


def test_is_multiple() -> None:
    assert is_multiple("0.10", "0.01") and is_multiple("5", "0.5") and not is_multiple("0.015", "0.01")


def test_volume_nodes() -> None:
    totals = [1, 1, 9, 1, 1, 1, 0, 1, 1, 1, 8, 1, 1]
    hvn, lvn = volume_nodes(totals, window=1)
    assert hvn == [2, 10] and lvn == [6]
    hvn3, lvn3 = volume_nodes(totals, window=3)
    assert hvn3 == [2, 10] and lvn3 == [6]
    assert volume_nodes([5, 5, 5], 3) == ([], [])  # a plateau to both edges is no node
    assert volume_nodes([1, 3, 3, 1], 1) == ([1], [])  # plateau: its lower middle row


@given(st.lists(st.integers(0, 20), min_size=0, max_size=30), st.sampled_from([1, 3, 5, 7]))
def test_volume_nodes_oracle(totals, window) -> None:
    half = window // 2
    smooth = []
    for i in range(len(totals)):
        part = totals[max(0, i - half) : i + half + 1]
        smooth.append(Fraction(sum(part), len(part)))
    hvn, lvn = volume_nodes(totals, window)
    for i in hvn + lvn:
        assert 0 < i < len(totals) - 1
    for i in hvn:
        lo = i
        while lo > 0 and smooth[lo - 1] == smooth[i]:
            lo -= 1
        hi = i
        while hi < len(totals) - 1 and smooth[hi + 1] == smooth[i]:
            hi += 1
        assert lo > 0 and hi < len(totals) - 1
        assert smooth[lo - 1] < smooth[i] > smooth[hi + 1]
    # every strict (non-plateau) interior local maximum is reported
    for i in range(1, len(totals) - 1):
        if smooth[i - 1] < smooth[i] > smooth[i + 1]:
            assert i in hvn
        if smooth[i - 1] > smooth[i] < smooth[i + 1]:
            assert i in lvn


def test_share_text() -> None:
    assert share_text(Fraction(2, 3)) == "0.666666"
    assert share_text(Fraction(1)) == "1"
