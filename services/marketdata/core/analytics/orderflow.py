"""Order-flow math (DESIGN, "Analytics definitions"), exact: integers only, never binary floats.

Prices are integer units at a grid's decimals, volumes integers at VOLUME_SCALE. The building block is
a `Minute`: one instrument's footprint over one stored bar (1m, or 1h once retention rolled it up) or
one live minute of trades. A `Bar` of any timeframe merges minutes:

- rows: row -> [buy, sell] (row = floor(price / row_size) * row_size), added exactly;
- open/close: the earliest first trade / latest last trade; high/low: the extremes;
- delta = buy - sell; intrabar max/min delta: the running delta after each trade (exact for one
  instrument; with several, combined per minute: an outer bound);
- CVD: see `cvd_at`;
- diagonal imbalances and stacked zones: see `diagonal_imbalances` and `stacked_zones`.

Zones spanning bars (volume imbalance, absorption, divergence) live in orderflow_zones.py.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from functools import partial
from typing import Any, NamedTuple, TypeVar, cast

from marketdata.core.analytics.exact import format_scaled, to_units, volume_units
from marketdata.core.analytics.profile import Grid

MINUTE_MS = 60_000
RATIO_DIGITS = 6
T = TypeVar("T")


class Side(Enum):
    BUY = "buy"
    SELL = "sell"


def _min(a: int | None, b: int) -> int:
    return b if a is None or b < a else a


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a


class TextUnits(dict[str, int]):
    """Text -> integer, each text parsed once, on its first lookup: the texts already seen are dict's
    own lookup (C speed under map())."""

    __slots__ = ("_parse",)

    def __init__(self, parse: Callable[[str], int]) -> None:
        super().__init__()
        self._parse = parse

    def __missing__(self, text: str) -> int:
        value = self[text] = self._parse(text)
        return value


class ParsedText:
    """Footprint text parsed to units on one grid, kept across the bars of one read: prices and sizes
    repeat from one bar to the next (a sliding price range, common trade sizes), and parsing them was
    most of the cost of turning stored footprints into minutes."""

    __slots__ = ("grid", "prices", "rows", "volumes")

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        decimals, step = grid.decimals, grid.row_units

        def row_of(text: str) -> int:
            units = to_units(text, decimals)
            return units - units % step

        self.prices = TextUnits(partial(to_units, decimals=decimals))  # price text -> units
        self.rows = TextUnits(row_of)  # price text -> its row (units, floored to the grid)
        self.volumes = TextUnits(volume_units)


@dataclass
class Minute:
    """One instrument's trades over one stored bar or live minute, on a grid."""

    start_ms: int
    rows: dict[int, list[int]] = field(default_factory=dict)
    buy: int = 0
    sell: int = 0
    trades: int = 0
    max_delta: int | None = None
    min_delta: int | None = None
    open: int | None = None
    high: int | None = None
    low: int | None = None
    close: int | None = None
    first_ms: int = 0
    last_ms: int = 0
    # starts of the minutes holding trades when this is a 1h bar (empty: just start_ms)
    traded_minutes: Sequence[int] = field(default_factory=list)
    # bars merged with this minute first among their members (order_flow/compute.build_bars), kept
    # here so they live exactly as long as the minute (a cached closed minute: the cache's TTL)
    derived: dict[Any, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def delta(self) -> int:
        return self.buy - self.sell

    def add_trade(self, grid: Grid, price: str, size: str, is_buy: bool, time_ms: int = 0) -> None:
        """Fold one trade in (trades arrive in exchange order)."""
        units = to_units(price, grid.decimals)
        volume = volume_units(size)
        key = units - units % grid.row_units
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0]
        if is_buy:
            row[0] += volume
            self.buy += volume
        else:
            row[1] += volume
            self.sell += volume
        running = self.buy - self.sell
        self.max_delta = _max(self.max_delta, running)
        self.min_delta = _min(self.min_delta, running)
        if self.open is None:
            self.open = units
            self.first_ms = time_ms or self.start_ms
        self.close = units
        self.last_ms = time_ms or self.start_ms
        self.high = _max(self.high, units)
        self.low = _min(self.low, units)
        self.trades += 1

    @classmethod
    def from_trades(cls, start_ms: int, grid: Grid, trades: Iterable[tuple[str, str, bool]]) -> Minute:
        minute = cls(start_ms)
        for price, size, is_buy in trades:
            minute.add_trade(grid, price, size, is_buy)
        return minute

    @classmethod
    def from_footprint(
        cls,
        start_ms: int,
        grid: Grid,
        rows: Iterable[tuple[str, str, str]],
        *,
        trades: int = 0,
        open_: str = "",
        high: str = "",
        low: str = "",
        close: str = "",
        max_delta: str = "",
        min_delta: str = "",
        first_ms: int = 0,
        last_ms: int = 0,
        parsed: ParsedText | None = None,
        summed: bool = False,
    ) -> Minute:
        """A stored footprint bar (rows at the tick, a grid that `grid` is a multiple of). Bars stored
        before OHLC and intrabar extremes existed fall back to the rows' extremes and the bar's delta.
        `parsed` keeps parsed text across the bars of one read (at `grid`'s decimals). `summed`: the
        volumes are sums over many trades (a 1h bar's), which seldom repeat, so they are parsed
        without the memo: looking a text up in a memo grown large costs more than parsing it."""
        minute = cls(start_ms, trades=trades, first_ms=first_ms or start_ms, last_ms=last_ms or start_ms)
        memo = parsed if parsed is not None and parsed.grid == grid else ParsedText(grid)
        columns = list(zip(*rows, strict=True))  # [(price, ...), (buy, ...), (sell, ...)] or []
        if columns:
            # column at a time through the memos (map over dict lookups, no per-row bytecode)
            price_texts, buy_texts, sell_texts = columns
            keys = list(map(memo.rows.__getitem__, price_texts))
            volume = volume_units if summed else memo.volumes.__getitem__
            buys = list(map(volume, buy_texts))
            sells = list(map(volume, sell_texts))
            out = dict(zip(keys, map(list, zip(buys, sells, strict=True)), strict=True))
            if len(out) < len(keys):  # several stored rows inside one grid row: add them up
                out = _merged_rows(keys, buys, sells)
            minute.rows = out
            minute.buy, minute.sell = sum(buys), sum(sells)
            if not (high and low):  # a bar stored before it kept its extremes: the rows' extremes
                prices = list(map(memo.prices.__getitem__, price_texts))
                minute.low, minute.high = min(prices), max(prices)
        decimals = grid.decimals
        if high:
            minute.high = to_units(high, decimals)
        if low:
            minute.low = to_units(low, decimals)
        if open_:
            minute.open = to_units(open_, decimals)
        if close:
            minute.close = to_units(close, decimals)
        delta = minute.buy - minute.sell
        minute.max_delta = _signed_volume(max_delta) if max_delta else delta
        minute.min_delta = _signed_volume(min_delta) if min_delta else delta
        return minute


def _merged_rows(keys: Sequence[int], buys: Sequence[int], sells: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for key, buy, sell in zip(keys, buys, sells, strict=True):
        row = out.get(key)
        if row is None:
            out[key] = [buy, sell]
        else:
            row[0] += buy
            row[1] += sell
    return out


def _signed_volume(text: str) -> int:
    return -volume_units(text[1:]) if text.startswith("-") else volume_units(text)


@dataclass
class Bar:
    """A bar of the requested timeframe: merged minutes of one or more instruments."""

    start_ms: int
    end_ms: int
    rows: dict[int, list[int]] = field(default_factory=dict)
    buy: int = 0
    sell: int = 0
    trades: int = 0
    max_delta: int = 0
    min_delta: int = 0
    open: int | None = None
    high: int | None = None
    low: int | None = None
    close: int | None = None
    cvd: int = 0
    closed: bool = True
    large_trades: int = 0
    large_volume: int = 0
    first_ms: int = 0
    last_ms: int = 0
    # results derived from the bar's rows and prices (imbalances, heavy rows, its protobuf), memoized
    # for bars build_bars merged once and hands out as copies (see `derived`); None: not memoized
    derived: dict[Any, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def delta(self) -> int:
        return self.buy - self.sell

    @property
    def volume(self) -> int:
        return self.buy + self.sell

    @property
    def has_trades(self) -> bool:
        return self.trades > 0 or bool(self.rows)

    def copy(self) -> Bar:
        """A shallow copy: its own scalar fields (CVD, large trades, closed), the same rows and memo."""
        clone = Bar.__new__(Bar)
        clone.__dict__.update(self.__dict__)
        return clone


def derived(bar: Bar, key: Hashable, make: Callable[[], T]) -> T:
    """make(), memoized in the bar's memo under `key` (which must name every input of make() besides
    the bar's rows and prices); computed afresh for a bar without a memo."""
    memo = bar.derived
    if memo is None:
        return make()
    value = memo.get(key, _ABSENT)  # a cold request misses every key: no exception raised per miss
    if value is _ABSENT:
        value = memo[key] = make()
    return cast(T, value)


_ABSENT = object()


def merge_bar(start_ms: int, end_ms: int, minutes: Iterable[Minute], base: Bar | None = None) -> Bar:
    """Merge the minutes (any instruments) lying in [start_ms, end_ms) into one bar; with `base`, a
    copy of base continued by minutes that all start after base's."""
    bar = Bar(start_ms, end_ms)
    running = 0
    max_d: int | None = None
    min_d: int | None = None
    first: tuple[int, int] | None = None  # (time, open)
    last: tuple[int, int] | None = None  # (time, close)
    rows = bar.rows
    if base is not None:
        bar.rows = rows = {k: [b, s] for k, (b, s) in base.rows.items()}
        bar.buy, bar.sell, bar.trades = base.buy, base.sell, base.trades
        bar.high, bar.low = base.high, base.low
        running = base.buy - base.sell
        if base.has_trades:
            max_d, min_d = base.max_delta, base.min_delta
        if base.open is not None:
            first = (base.first_ms, base.open)
        if base.close is not None:
            last = (base.last_ms, base.close)
    by_start: dict[int, list[Minute]] = {}
    for minute in minutes:
        by_start.setdefault(minute.start_ms, []).append(minute)
    for start in sorted(by_start):
        group = by_start[start]
        high_here = running + sum(m.max_delta if m.max_delta is not None else m.delta for m in group)
        low_here = running + sum(m.min_delta if m.min_delta is not None else m.delta for m in group)
        max_d, min_d = _max(max_d, high_here), _min(min_d, low_here)
        for m in group:
            running += m.buy - m.sell
            bar.buy += m.buy
            bar.sell += m.sell
            bar.trades += m.trades
            for key, (buy, sell) in m.rows.items():
                row = rows.get(key)
                if row is None:
                    rows[key] = [buy, sell]
                else:
                    row[0] += buy
                    row[1] += sell
            if m.high is not None:
                bar.high = _max(bar.high, m.high)
            if m.low is not None:
                bar.low = _min(bar.low, m.low)
            if m.open is not None and (first is None or m.first_ms < first[0]):
                first = (m.first_ms, m.open)
            if m.close is not None and (last is None or m.last_ms >= last[0]):
                last = (m.last_ms, m.close)
    bar.max_delta = max_d if max_d is not None else 0
    bar.min_delta = min_d if min_d is not None else 0
    if first is not None:
        bar.first_ms, bar.open = first
    if last is not None:
        bar.last_ms, bar.close = last
    return bar


def bucket_minutes(minutes: Iterable[Minute], start_ms: int, end_ms: int, size_ms: int) -> list[list[Minute]]:
    """Minutes grouped by the bar of `size_ms` (UTC-aligned) they start in, for [start_ms, end_ms)."""
    count = max(0, (end_ms - start_ms) // size_ms)
    out: list[list[Minute]] = [[] for _ in range(count)]
    for minute in minutes:
        index = (minute.start_ms - start_ms) // size_ms
        if 0 <= index < count:
            out[index].append(minute)
    return out


# --- CVD ---------------------------------------------------------------------------------------------


class MinuteDeltas:
    """Deltas by minute start (any instruments, added up) for cumulative sums over ranges."""

    def __init__(self, deltas: Mapping[int, int]) -> None:
        self.starts = sorted(deltas)
        self.prefix = [0]
        for start in self.starts:
            self.prefix.append(self.prefix[-1] + deltas[start])

    def sum(self, start_ms: int, end_ms: int) -> int:
        """Sum of the deltas of minutes starting in [start_ms, end_ms)."""
        lo = bisect.bisect_left(self.starts, start_ms)
        hi = bisect.bisect_left(self.starts, end_ms)
        return self.prefix[hi] - self.prefix[lo] if hi > lo else 0


def cvd_at(deltas: MinuteDeltas, bar_end_ms: int, anchor_start: Callable[[int], int]) -> int:
    """CVD at a bar's end: every delta from the start of the anchor period that holds the bar's last
    minute up to the bar's end."""
    return deltas.sum(anchor_start(bar_end_ms - MINUTE_MS), bar_end_ms)


# --- imbalances --------------------------------------------------------------------------------------


class Imbalance(NamedTuple):
    """One diagonal imbalance (a named tuple: a bar can hold hundreds, and a frozen dataclass costs
    several times more to create)."""

    price: int  # the imbalanced row
    side: Side
    volume: int  # buy(p) for buys, sell(p) for sells
    opposite: int  # sell(p - row) for buys, buy(p + row) for sells; 0 when missing

    def ratio_text(self) -> str:
        """volume / opposite truncated to 6 decimals; "" when the opposite is empty."""
        return ratio_text(self.volume, self.opposite)


def ratio_text(numerator: int, denominator: int) -> str:
    if denominator == 0:
        return ""
    return format_scaled(numerator * 10**RATIO_DIGITS // denominator, RATIO_DIGITS)


def diagonal_imbalances(
    rows: Mapping[int, Sequence[int]], row_units: int, ratio: Fraction, min_volume: int
) -> list[Imbalance]:
    """DESIGN's diagonal rule: buy at p when buy(p) >= ratio * sell(p - row) and buy(p) > min_volume;
    sell at p when sell(p) >= ratio * buy(p + row) and sell(p) > min_volume; a missing or empty
    opposite row counts as 0. Lowest price first, the buy before the sell at one price."""
    if not rows:
        return []
    num, den = ratio.numerator, ratio.denominator
    out: list[Imbalance] = []
    append, buy_side, sell_side = out.append, Side.BUY, Side.SELL
    prices = sorted(rows)
    cells = list(map(rows.__getitem__, prices))
    # one pass with each row's neighbours in price order at hand (the diagonal rows, when adjacent)
    above_prices: list[int | None] = [*prices[1:], None]
    above_cells: list[Sequence[int]] = [*cells[1:], _EMPTY_ROW]
    below_price, below_sell = None, 0
    for price, (buy, sell), above_price, above in zip(prices, cells, above_prices, above_cells, strict=True):
        if buy > min_volume:
            opposite = below_sell if below_price == price - row_units else 0
            if buy * den >= num * opposite:
                append(Imbalance(price, buy_side, buy, opposite))
        if sell > min_volume:
            opposite = above[0] if above_price == price + row_units else 0
            if sell * den >= num * opposite:
                append(Imbalance(price, sell_side, sell, opposite))
        below_price, below_sell = price, sell
    return out


_EMPTY_ROW = (0, 0)


def _price_then_side(imbalance: Imbalance) -> tuple[int, bool]:
    return imbalance.price, imbalance.side is Side.SELL


@dataclass(frozen=True)
class StackedZone:
    side: Side
    low: int  # lowest row
    high: int  # highest row (the zone spans [low, high + row))
    rows: int
    volume: int
    opposite: int
    min_ratio: str


def stacked_zones(imbalances: Sequence[Imbalance], row_units: int, min_rows: int) -> list[StackedZone]:
    """Runs of at least `min_rows` same-side imbalances on adjacent rows; lowest first, buys first at a
    price tie."""
    out: list[StackedZone] = []
    for side in (Side.BUY, Side.SELL):
        run: list[Imbalance] = []
        for imbalance in [i for i in imbalances if i.side is side] + [None]:
            if imbalance is not None and run and imbalance.price == run[-1].price + row_units:
                run.append(imbalance)
                continue
            if len(run) >= min_rows:
                out.append(_zone(side, run))
            run = [imbalance] if imbalance is not None else []
    out.sort(key=lambda z: (z.low, z.side is Side.SELL))
    return out


def _zone(side: Side, run: Sequence[Imbalance]) -> StackedZone:
    finite = [i for i in run if i.opposite]
    smallest = min(finite, key=lambda i: Fraction(i.volume, i.opposite), default=None)
    return StackedZone(
        side,
        run[0].price,
        run[-1].price,
        len(run),
        sum(i.volume for i in run),
        sum(i.opposite for i in run),
        smallest.ratio_text() if smallest is not None else "",
    )


class BarBuilder:
    """A bar continued one trade at a time (the live stream), its diagonal imbalances kept current
    incrementally: a trade at row p can change the imbalances at p - row, p and p + row only."""

    __slots__ = ("_den", "_num", "_touched", "bar", "grid", "imbalances", "min_volume")

    def __init__(self, bar: Bar, grid: Grid, ratio: Fraction, min_volume: int) -> None:
        self.bar = bar
        self.grid = grid
        self._num, self._den = ratio.numerator, ratio.denominator
        self.min_volume = min_volume
        self.imbalances: dict[tuple[int, Side], Imbalance] = {
            (i.price, i.side): i for i in diagonal_imbalances(bar.rows, grid.row_units, ratio, min_volume)
        }
        self._touched: set[int] = set()

    def add_trade(self, price: str, size: str, is_buy: bool, time_ms: int) -> int:
        """Fold one trade in; returns its signed volume (the bar's delta change)."""
        bar, grid = self.bar, self.grid
        empty = not bar.has_trades
        units = to_units(price, grid.decimals)
        volume = volume_units(size)
        key = units - units % grid.row_units
        row = bar.rows.get(key)
        if row is None:
            row = bar.rows[key] = [0, 0]
        if is_buy:
            row[0] += volume
            bar.buy += volume
        else:
            row[1] += volume
            bar.sell += volume
        running = bar.buy - bar.sell
        if empty:
            bar.max_delta = bar.min_delta = running
        else:
            bar.max_delta = max(bar.max_delta, running)
            bar.min_delta = min(bar.min_delta, running)
        if bar.open is None or time_ms < bar.first_ms:
            bar.open, bar.first_ms = units, time_ms
        if bar.close is None or time_ms >= bar.last_ms:
            bar.close, bar.last_ms = units, time_ms
        bar.high = _max(bar.high, units)
        bar.low = _min(bar.low, units)
        bar.trades += 1
        self._touched.add(key)
        return volume if is_buy else -volume

    def refresh(self) -> tuple[list[Imbalance], bool]:
        """Recheck the rows the trades since the last call can affect: (imbalances that appeared,
        whether the set of imbalances changed at all)."""
        step = self.grid.row_units
        rows = self.bar.rows
        appeared: list[Imbalance] = []
        changed = False
        for price in sorted({p + d for p in self._touched for d in (-step, 0, step)}):
            here = rows.get(price)
            for side in (Side.BUY, Side.SELL):
                found: Imbalance | None = None
                if here is not None:
                    if side is Side.BUY:
                        volume = here[0]
                        other = rows.get(price - step)
                        opposite = other[1] if other is not None else 0
                    else:
                        volume = here[1]
                        other = rows.get(price + step)
                        opposite = other[0] if other is not None else 0
                    if volume > self.min_volume and volume * self._den >= self._num * opposite:
                        found = Imbalance(price, side, volume, opposite)
                key = (price, side)
                before = self.imbalances.get(key)
                if found is None:
                    if before is not None:
                        del self.imbalances[key]
                        changed = True
                elif before != found:
                    self.imbalances[key] = found
                    changed = True
                    if before is None:
                        appeared.append(found)
        self._touched.clear()
        return appeared, changed

    def sorted_imbalances(self) -> list[Imbalance]:
        """As diagonal_imbalances lists them: lowest price first, the buy before the sell."""
        return sorted(self.imbalances.values(), key=_price_then_side)
