"""An independent oracle of DESIGN's order-flow definitions, written plainly with Decimal."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

MINUTE = 60_000
# (time_ms, price, size, is_buy), in exchange order
Tick = tuple[int, Decimal, Decimal, bool]


def row_of(price: Decimal, row: Decimal) -> Decimal:
    return (price / row).to_integral_value(rounding=ROUND_FLOOR) * row


@dataclass
class OracleBar:
    start: int
    rows: dict[Decimal, list[Decimal]] = field(default_factory=dict)
    buy: Decimal = Decimal(0)
    sell: Decimal = Decimal(0)
    max_delta: Decimal = Decimal(0)
    min_delta: Decimal = Decimal(0)
    ohlc: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
    trades: int = 0
    cvd: Decimal = Decimal(0)

    @property
    def delta(self) -> Decimal:
        return self.buy - self.sell


def oracle_bar(start: int, trades: Sequence[Tick], row: Decimal) -> OracleBar:
    bar = OracleBar(start)
    running = Decimal(0)
    extremes: list[Decimal] = []
    for _, price, size, is_buy in trades:
        entry = bar.rows.setdefault(row_of(price, row), [Decimal(0), Decimal(0)])
        if is_buy:
            entry[0] += size
            bar.buy += size
            running += size
        else:
            entry[1] += size
            bar.sell += size
            running -= size
        extremes.append(running)
    if trades:
        prices = [t[1] for t in trades]
        bar.ohlc = (prices[0], max(prices), min(prices), prices[-1])
        bar.max_delta, bar.min_delta = max(extremes), min(extremes)
    bar.trades = len(trades)
    return bar


def oracle_bars(
    trades: Iterable[Tick],
    start: int,
    end: int,
    timeframe: int,
    row: Decimal,
    anchor: Callable[[int], int],
    now: int,
) -> list[OracleBar]:
    """Bars of [start, end) begun by `now`; CVD: signed sizes from the anchor period holding the bar's
    last minute (the open minute for the open bar) to the bar's end."""
    every = sorted(trades, key=lambda t: t[0])
    open_end = now - now % MINUTE + MINUTE
    out = []
    bar_start = start
    while bar_start < end and bar_start <= now:
        bar_end = bar_start + timeframe
        bar = oracle_bar(bar_start, [t for t in every if bar_start <= t[0] < bar_end], row)
        first = anchor(min(bar_end, open_end) - MINUTE)
        bar.cvd = sum(((s if b else -s) for t, _, s, b in every if first <= t < bar_end), Decimal(0))
        out.append(bar)
        bar_start = bar_end
    return out


def oracle_imbalances(
    rows: dict[Decimal, list[Decimal]], row: Decimal, ratio: Decimal, min_volume: Decimal
) -> list[tuple[Decimal, str]]:
    """Buy at p: buy(p) >= ratio * sell(p - row) and buy(p) > min_volume; sell at p: sell(p) >= ratio *
    buy(p + row) and sell(p) > min_volume; a missing row counts as 0."""
    zero = [Decimal(0), Decimal(0)]
    out = []
    for p in sorted(rows):
        b, s = rows[p]
        if b >= ratio * rows.get(p - row, zero)[1] and b > min_volume:
            out.append((p, "buy"))
        if s >= ratio * rows.get(p + row, zero)[0] and s > min_volume:
            out.append((p, "sell"))
    return out


def oracle_stacks(
    imbalances: Iterable[tuple[Decimal, str]], row: Decimal, n: int
) -> list[tuple[str, Decimal, Decimal]]:
    """(side, lowest row, highest row) of runs of >= n same-side imbalances on adjacent rows."""
    out = []
    listed = list(imbalances)
    for side in ("buy", "sell"):
        prices = sorted(p for p, s in listed if s == side)
        run: list[Decimal] = []
        for p in [*prices, None]:
            if p is not None and run and p == run[-1] + row:
                run.append(p)
                continue
            if len(run) >= n:
                out.append((side, run[0], run[-1]))
            run = [p] if p is not None else []
    return sorted(out, key=lambda z: (z[1], z[0] == "sell"))
