"""Volume profile math (DESIGN, "Analytics definitions"), exact: integers only, never binary floats.

A histogram maps a row's price (integer units at a fixed number of decimals) to [buy, sell] volume
(integers at a volume scale). From it:

- rows: the full grid from the lowest to the highest traded row, empty rows included (volume 0);
- POC: the row with most volume; tie: nearest the middle of [lowest row, highest row]; still tied: the
  lower price;
- value area (`dual_row` default, or `single_row`): from the POC, while its volume is below pct x total,
  look at the next two (one) rows above and below (fewer at an edge), add the side holding more volume
  (tie: above); when one side is exhausted take the other. VAH/VAL are its top and bottom rows;
- HVN/LVN: local maxima/minima of the totals smoothed by a centred moving average over
  `window` rows (odd; the window is clipped at the grid's edges and averaged over the rows it covers).
  A node is a row (or the middle row of a plateau of equal smoothed values, the lower one for an even
  plateau) whose smoothed value is strictly above (HVN) or below (LVN) both of its neighbours' (the
  plateau's outer neighbours). Edge rows are never nodes: a node needs a neighbour on each side.

The order-flow service reuses these functions with its own histograms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction

from marketdata.core.analytics.exact import (
    VOLUME_SCALE,
    decimals_of,
    format_scaled,
    format_units,
    parse_tick,
    rescale,
    to_units,
    volume_units,
)

DEFAULT_VALUE_AREA_PCT = Fraction(70)
DEFAULT_NODE_WINDOW = 5


class VaMethod(StrEnum):
    DUAL_ROW = "dual_row"
    SINGLE_ROW = "single_row"


class VolumeUnit(StrEnum):
    BASE = "base"
    QUOTE = "quote"


@dataclass(frozen=True)
class Grid:
    """A row size as integer units at `decimals` decimals (row prices print with those decimals)."""

    row_units: int
    decimals: int

    @classmethod
    def of(cls, row_size: str, decimals: int | None = None) -> Grid:
        units, own = parse_tick(row_size)
        target = own if decimals is None else max(decimals, own)
        return cls(rescale(units, own, target), target)

    @property
    def row_size(self) -> str:
        return format_units(self.row_units, self.decimals)

    def floor(self, price_units: int) -> int:
        """floor(price / row_size) * row_size, price in this grid's units."""
        return price_units - price_units % self.row_units

    def row_of(self, price: str) -> int:
        return self.floor(to_units(price, self.decimals))

    def price(self, units: int) -> str:
        return format_units(units, self.decimals)


def is_multiple(size: str, tick: str) -> bool:
    """Whether the decimal `size` is a whole multiple of the decimal `tick` (both > 0)."""
    decimals = max(decimals_of(size), decimals_of(tick))
    tick_units = to_units(tick, decimals)
    return tick_units > 0 and to_units(size, decimals) % tick_units == 0


class Histogram:
    """Row price units -> [buy, sell] at one grid and one volume scale; rows are added exactly."""

    __slots__ = ("grid", "rows", "volume_scale")

    def __init__(self, grid: Grid, volume_scale: int = VOLUME_SCALE) -> None:
        self.grid = grid
        self.volume_scale = volume_scale
        self.rows: dict[int, list[int]] = {}

    def add(self, row_units: int, buy: int, sell: int) -> None:
        """Add volume to the row holding `row_units` (already at this grid's decimals; floored here)."""
        key = row_units - row_units % self.grid.row_units
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [buy, sell]
        else:
            row[0] += buy
            row[1] += sell

    def add_trade(self, price: str, size: str, is_buy: bool, unit: VolumeUnit = VolumeUnit.BASE) -> None:
        units = to_units(price, self.grid.decimals)
        volume = self._volume(price, volume_units(size), unit)
        self.add(units, volume if is_buy else 0, 0 if is_buy else volume)

    def add_footprint_rows(
        self,
        row_size: str,
        rows: Iterable[tuple[str, str, str]],
        unit: VolumeUnit = VolumeUnit.BASE,
    ) -> None:
        """Merge a footprint bar's rows (price, buy, sell as decimal strings) onto this grid.

        The bar's rows must sit on a grid this one is a multiple of (checked): each bar row lies wholly
        inside one of our rows. Quote volume is row price x base volume: exact when the bar's row size
        is the instrument's tick (trade prices are tick multiples), which is how storage writes them.
        """
        own_units, own_decimals = parse_tick(row_size)
        grid = self.grid
        if own_decimals > grid.decimals or grid.row_units % rescale(own_units, own_decimals, grid.decimals):
            raise ValueError(f"row size {grid.row_size} is not a multiple of footprint rows of {row_size}")
        quote = unit is VolumeUnit.QUOTE
        decimals, step, hist = grid.decimals, grid.row_units, self.rows
        for price, buy_text, sell_text in rows:
            units = to_units(price, decimals)
            buy = volume_units(buy_text) if buy_text != "0" else 0
            sell = volume_units(sell_text) if sell_text != "0" else 0
            if quote:
                buy = self._volume(price, buy, unit)
                sell = self._volume(price, sell, unit)
            key = units - units % step
            row = hist.get(key)
            if row is None:
                hist[key] = [buy, sell]
            else:
                row[0] += buy
                row[1] += sell

    def merge(self, other: Histogram) -> None:
        if other.volume_scale != self.volume_scale:
            raise ValueError("histograms at different volume scales")
        rows = self.rows
        if other.grid == self.grid:  # the common case: no re-flooring needed
            for key, (buy, sell) in other.rows.items():
                row = rows.get(key)
                if row is None:
                    rows[key] = [buy, sell]
                else:
                    row[0] += buy
                    row[1] += sell
            return
        for key, (buy, sell) in other.rows.items():
            self.add(rescale(key, other.grid.decimals, self.grid.decimals), buy, sell)

    def _volume(self, price: str, base: int, unit: VolumeUnit) -> int:
        if unit is VolumeUnit.BASE:
            return base
        # quote = price x base; held at volume_scale = VOLUME_SCALE + price decimals of the grid
        shift = self.volume_scale - VOLUME_SCALE
        return to_units(price, shift) * base

    def copy(self) -> Histogram:
        out = Histogram(self.grid, self.volume_scale)
        out.rows = {k: [b, s] for k, (b, s) in self.rows.items()}
        return out


@dataclass(frozen=True)
class Row:
    price_units: int
    buy: int
    sell: int

    @property
    def total(self) -> int:
        return self.buy + self.sell

    @property
    def delta(self) -> int:
        return self.buy - self.sell


def grid_rows(rows: Mapping[int, Sequence[int]], row_units: int) -> list[Row]:
    """The full grid from the lowest to the highest row, lowest first, empty rows as zeros."""
    if not rows:
        return []
    low, high = min(rows), max(rows)
    out = []
    for price in range(low, high + row_units, row_units):
        values = rows.get(price)
        out.append(Row(price, values[0], values[1]) if values else Row(price, 0, 0))
    return out


def row_count(rows: Mapping[int, Sequence[int]], row_units: int) -> int:
    return 0 if not rows else (max(rows) - min(rows)) // row_units + 1


def poc_index(totals: Sequence[int]) -> int:
    """Index of the POC in a full grid (lowest first); -1 for an empty grid."""
    if not totals:
        return -1
    best = max(totals)
    last = len(totals) - 1
    # nearest the middle: minimise |2i - last|; then the lower price (smaller index)
    return min((i for i, v in enumerate(totals) if v == best), key=lambda i: (abs(2 * i - last), i))


def value_area(
    totals: Sequence[int],
    poc: int,
    pct: Fraction = DEFAULT_VALUE_AREA_PCT,
    method: VaMethod = VaMethod.DUAL_ROW,
) -> tuple[int, int, int]:
    """(low index, high index, volume) of the value area grown from `poc` until >= pct% of the total."""
    if poc < 0:
        return -1, -1, 0
    total = sum(totals)
    target_num, target_den = pct.numerator * total, pct.denominator * 100  # va >= pct/100 * total
    step = 2 if method is VaMethod.DUAL_ROW else 1
    low = high = poc
    volume = totals[poc]
    last = len(totals) - 1
    while volume * target_den < target_num and (low > 0 or high < last):
        above = totals[high + 1 : min(high + step, last) + 1]
        below = totals[max(low - step, 0) : low]
        if above and (not below or sum(above) >= sum(below)):
            high += len(above)
            volume += sum(above)
        else:
            low -= len(below)
            volume += sum(below)
    return low, high, volume


def smooth(totals: Sequence[int], window: int) -> list[Fraction]:
    """Centred moving average over `window` rows (odd), clipped at the edges."""
    return [Fraction(total, count) for total, count in _window_sums(totals, window)]


def _window_sums(totals: Sequence[int], window: int) -> list[tuple[int, int]]:
    half = window // 2
    prefix = [0]
    for v in totals:
        prefix.append(prefix[-1] + v)
    n = len(totals)
    out = []
    for i in range(n):
        lo, hi = max(0, i - half), min(n, i + half + 1)
        out.append((prefix[hi] - prefix[lo], hi - lo))
    return out


def volume_nodes(totals: Sequence[int], window: int = DEFAULT_NODE_WINDOW) -> tuple[list[int], list[int]]:
    """(HVN indices, LVN indices), lowest first: strict local extrema of the smoothed totals."""
    # averages compared exactly by cross-multiplying (sum_a / n_a vs sum_b / n_b)
    sums = _window_sums(totals, window)
    n = len(sums)

    def cmp(a: int, b: int) -> int:
        left = sums[a][0] * sums[b][1]
        right = sums[b][0] * sums[a][1]
        return (left > right) - (left < right)

    hvn: list[int] = []
    lvn: list[int] = []
    i = 1
    while i < n - 1:
        j = i
        while j + 1 < n and cmp(j + 1, i) == 0:
            j += 1
        if j >= n - 1:
            break
        left, right = cmp(i, i - 1), cmp(i, j + 1)
        middle = i + (j - i) // 2
        if left > 0 and right > 0:
            hvn.append(middle)
        elif left < 0 and right < 0:
            lvn.append(middle)
        i = j + 1
    return hvn, lvn


@dataclass
class Profile:
    """A computed profile: grid rows and the key levels (indices into rows)."""

    grid: Grid
    volume_scale: int
    rows: list[Row]
    poc: int
    va_low: int
    va_high: int
    va_volume: int
    total: int
    pct: Fraction
    method: VaMethod
    node_window: int
    hvn: list[int] = field(default_factory=list)
    lvn: list[int] = field(default_factory=list)

    @property
    def buy(self) -> int:
        return sum(r.buy for r in self.rows)

    @property
    def sell(self) -> int:
        return sum(r.sell for r in self.rows)

    @property
    def value_area_share(self) -> Fraction:
        return Fraction(self.va_volume, self.total) if self.total else Fraction(0)

    def price(self, index: int) -> str:
        return self.grid.price(self.rows[index].price_units) if 0 <= index < len(self.rows) else ""

    def volume(self, units: int) -> str:
        return format_scaled(units, self.volume_scale)


def compute_profile(
    histogram: Histogram,
    pct: Fraction = DEFAULT_VALUE_AREA_PCT,
    method: VaMethod = VaMethod.DUAL_ROW,
    node_window: int = DEFAULT_NODE_WINDOW,
) -> Profile:
    rows = grid_rows(histogram.rows, histogram.grid.row_units)
    totals = [r.total for r in rows]
    poc = poc_index(totals)
    low, high, volume = value_area(totals, poc, pct, method)
    hvn, lvn = volume_nodes(totals, node_window)
    return Profile(
        histogram.grid,
        histogram.volume_scale,
        rows,
        poc,
        low,
        high,
        volume,
        sum(totals),
        pct,
        method,
        node_window,
        hvn,
        lvn,
    )


def share_text(share: Fraction, digits: int = 6) -> str:
    """A share in [0, 1] as a decimal string, truncated to `digits` decimals."""
    return format_scaled(share.numerator * 10**digits // share.denominator, digits)


def parse_pct(value: float | str) -> Fraction:
    """value_area_pct from a request (a double prints exactly as its shortest repr: 70.0 -> 70)."""
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)
