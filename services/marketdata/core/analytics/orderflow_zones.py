"""Order-flow zones spanning bars: volume imbalance, absorption (volume rule) and CVD divergence.

Each detector takes the bars oldest first (orderflow.Bar) and returns zones with their evidence; the
rules are stated on each function and in docs/order-flow.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial

from marketdata.core.analytics.orderflow import Bar, Side, derived, ratio_text


@dataclass(frozen=True)
class VolumeImbalanceZone:
    """A gap between the bodies (open..close) of consecutive bars `index - 1` and `index`."""

    index: int
    side: Side
    low: int
    high: int


def volume_imbalances(bars: Sequence[Bar]) -> list[VolumeImbalanceZone]:
    """Gap up: the later body's bottom is above the earlier body's top (SIDE_BUY, [top, bottom)); gap
    down likewise (SIDE_SELL). Both bars need trades."""
    out: list[VolumeImbalanceZone] = []
    for i in range(1, len(bars)):
        a, b = bars[i - 1], bars[i]
        if a.open is None or a.close is None or b.open is None or b.close is None:
            continue
        a_low, a_high = min(a.open, a.close), max(a.open, a.close)
        b_low, b_high = min(b.open, b.close), max(b.open, b.close)
        if b_low > a_high:
            out.append(VolumeImbalanceZone(i, Side.BUY, a_high, b_low))
        elif b_high < a_low:
            out.append(VolumeImbalanceZone(i, Side.SELL, b_high, a_low))
    return out


@dataclass(frozen=True)
class AbsorptionZone:
    """Heavy aggressor volume at row `price` of bar `index` that price failed to move through."""

    index: int
    side: Side  # the absorbed aggressor side
    price: int
    volume: int
    mean_num: int  # mean row volume = mean_num / mean_den
    mean_den: int
    window_bars: int
    window_extreme: int | None

    def multiple_text(self) -> str:
        return ratio_text(self.volume * self.mean_den, self.mean_num)


def mean_row_volume(bar: Bar, row_units: int) -> tuple[int, int]:
    """(total volume, rows of the bar's full grid): the mean row volume as a fraction."""
    if not bar.rows:
        return 0, 1
    rows = (max(bar.rows) - min(bar.rows)) // row_units + 1
    return bar.volume, rows


def heavy_rows(bar: Bar, row_units: int, multiple: Fraction, min_volume: int) -> list[tuple[int, Side, int]]:
    """(row, side, volume) whose aggressor volume is >= multiple x the bar's mean row volume and >
    min_volume; lowest first, buys first."""
    total, rows = mean_row_volume(bar, row_units)
    if not total:
        return []
    num, den = multiple.numerator, multiple.denominator
    # the least heavy volume: volume * rows * den >= num * total  <=>  volume >= ceil(num * total /
    # (rows * den)) for whole units; few bars hold one, so the rows are scanned only when the largest
    # volume reaches it (a scan of every row was 7 % of a cold 30-day request)
    least = max(-(-num * total // (rows * den)), min_volume + 1)
    if max(itertools.chain.from_iterable(bar.rows.values())) < least:
        return []
    out: list[tuple[int, Side, int]] = []
    for price in sorted(bar.rows):
        buy, sell = bar.rows[price]
        # volume >= multiple * total / rows  <=>  volume * rows * den >= num * total
        if buy > min_volume and buy * rows * den >= num * total:
            out.append((price, Side.BUY, buy))
        if sell > min_volume and sell * rows * den >= num * total:
            out.append((price, Side.SELL, sell))
    return out


def absorption_zones(
    bars: Sequence[Bar], row_units: int, multiple: Fraction, window: int, min_volume: int
) -> list[AbsorptionZone]:
    """Volume rule: a heavy row (heavy_rows) whose next `window` bars exist and never trade through
    it: for heavy buying at p no later high >= p + row; for heavy selling no later low < p."""
    out: list[AbsorptionZone] = []
    for i, bar in enumerate(bars):
        if i + window >= len(bars):
            break
        key = ("heavy", row_units, multiple.numerator, multiple.denominator, min_volume)
        heavy = derived(bar, key, partial(heavy_rows, bar, row_units, multiple, min_volume))
        if not heavy:
            continue
        later = bars[i + 1 : i + 1 + window]
        highs = [b.high for b in later if b.high is not None]
        lows = [b.low for b in later if b.low is not None]
        top = max(highs) if highs else None
        bottom = min(lows) if lows else None
        total, rows = mean_row_volume(bar, row_units)
        for price, side, volume in heavy:
            if side is Side.BUY and (top is None or top < price + row_units):
                out.append(AbsorptionZone(i, side, price, volume, total, rows, window, top))
            elif side is Side.SELL and (bottom is None or bottom >= price):
                out.append(AbsorptionZone(i, side, price, volume, total, rows, window, bottom))
    return out


@dataclass(frozen=True)
class Divergence:
    first: int  # bar indexes of the two pivots
    second: int
    side: Side  # BUY: bullish (pivot lows), SELL: bearish (pivot highs)
    hidden: bool
    first_price: int
    second_price: int


def pivots(values: Sequence[int | None], left: int, right: int, highs: bool) -> list[int]:
    """Indexes whose value is strictly above (highs) or below (lows) the `left` values before and the
    `right` after it; bars without a value (no trades) are skipped, not counted."""
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    out: list[int] = []
    for j in range(left, len(present) - right):
        index, value = present[j]
        others = [v for _, v in present[j - left : j]] + [v for _, v in present[j + 1 : j + 1 + right]]
        if all((value > o) if highs else (value < o) for o in others):
            out.append(index)
    return out


def divergences(bars: Sequence[Bar], left: int, right: int, include_hidden: bool) -> list[Divergence]:
    """Consecutive swing highs a, b: regular bearish when high(b) > high(a) and cvd(b) < cvd(a), hidden
    bearish when high(b) < high(a) and cvd(b) > cvd(a). Consecutive swing lows: regular bullish when
    low(b) < low(a) and cvd(b) > cvd(a), hidden bullish when low(b) > low(a) and cvd(b) < cvd(a).
    Ordered by the second pivot."""
    out: list[Divergence] = []
    highs = [b.high for b in bars]
    lows = [b.low for b in bars]
    top = pivots(highs, left, right, highs=True)
    for a, b in itertools.pairwise(top):
        ha, hb = highs[a], highs[b]
        assert ha is not None and hb is not None
        ca, cb = bars[a].cvd, bars[b].cvd
        if hb > ha and cb < ca:
            out.append(Divergence(a, b, Side.SELL, False, ha, hb))
        elif include_hidden and hb < ha and cb > ca:
            out.append(Divergence(a, b, Side.SELL, True, ha, hb))
    bottom = pivots(lows, left, right, highs=False)
    for a, b in itertools.pairwise(bottom):
        la, lb = lows[a], lows[b]
        assert la is not None and lb is not None
        ca, cb = bars[a].cvd, bars[b].cvd
        if lb < la and cb > ca:
            out.append(Divergence(a, b, Side.BUY, False, la, lb))
        elif include_hidden and lb > la and cb < ca:
            out.append(Divergence(a, b, Side.BUY, True, la, lb))
    out.sort(key=lambda d: (d.second, d.side is Side.BUY))
    return out
