"""From minutes to order-flow bars, imbalances and zones, and their protobuf form.

Closed minutes come from data.MinuteCache as the same objects on every request that reads them
within its TTL, and everything per bar here is a pure function of its minutes (and the request's
parameters): so build_bars memoizes each merged bar on its first minute, keyed by the exact member
objects, and what is derived from a bar's rows (imbalances, stacked zones, heavy rows, the protobuf
of its fields) is memoized on that bar (orderflow.derived). A warm request over cached hours then
merges nothing and formats nothing it formatted before; new objects (re-read or live minutes) miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial

from marketdata.core.analytics.exact import VOLUME_SCALE, format_scaled, format_units
from marketdata.core.analytics.orderflow import (
    MINUTE_MS,
    Bar,
    Imbalance,
    Minute,
    MinuteDeltas,
    Side,
    StackedZone,
    bucket_minutes,
    cvd_at,
    derived,
    diagonal_imbalances,
    merge_bar,
    ratio_text,
    stacked_zones,
)
from marketdata.core.analytics.orderflow_zones import (
    AbsorptionZone,
    Divergence,
    VolumeImbalanceZone,
    absorption_zones,
    divergences,
    volume_imbalances,
)
from marketdata.core.analytics.profile import grid_rows
from marketdata.order_flow.book import Refill
from marketdata.order_flow.data import LargeTradeRecord
from marketdata.order_flow.query import FlowQuery
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb

_SIDE = {Side.BUY: common_pb2.SIDE_BUY, Side.SELL: common_pb2.SIDE_SELL}


def vol(units: int) -> str:
    return format_scaled(units, VOLUME_SCALE)


@dataclass
class FlowResult:
    bars: list[Bar]
    imbalances: list[list[Imbalance]] = field(default_factory=list)
    zones: list[list[pb.Zone]] = field(default_factory=list)


def build_bars(q: FlowQuery, minutes: Iterable[Minute], now: int) -> list[Bar]:
    """Bars of [q.start, q.end) that have begun by `now`, with CVD from q's anchor (the minutes may
    reach back to q.data_start)."""
    all_minutes = list(minutes)
    per_minute: dict[int, int] = {}
    for m in all_minutes:
        per_minute[m.start_ms] = per_minute.get(m.start_ms, 0) + m.buy - m.sell
    deltas = MinuteDeltas(per_minute)
    open_end = now - now % MINUTE_MS + MINUTE_MS
    end = min(q.end, now - now % q.size_ms + q.size_ms)
    bars: list[Bar] = []
    for index, members in enumerate(bucket_minutes(all_minutes, q.start, end, q.size_ms)):
        start = q.start + index * q.size_ms
        bar = merged(start, start + q.size_ms, members)
        bar.closed = bar.end_ms <= now
        bar.cvd = cvd_at(deltas, min(bar.end_ms, open_end), q.anchor_start)
        bars.append(bar)
    return bars


def merged(start: int, end: int, members: Sequence[Minute]) -> Bar:
    """merge_bar(start, end, members), memoized on the first member for the same member objects in
    the same order; the caller gets its own copy (rows and memo shared: never changed after this)."""
    if not members:
        return Bar(start, end)
    first, rest = members[0], tuple(members[1:])
    memo = first.derived
    if memo is None:
        memo = first.derived = {}
    hit = memo.get((start, end))
    if (
        hit is not None
        and len(hit[0]) == len(rest)
        and all(a is b for a, b in zip(hit[0], rest, strict=True))
    ):
        return hit[1].copy()  # type: ignore[no-any-return]
    bar = merge_bar(start, end, members) if rest else _of_one(start, end, first)
    bar.derived = {}
    memo[(start, end)] = (rest, bar)  # the first member holds the memo: no reference back to it
    return bar.copy()


def _of_one(start: int, end: int, minute: Minute) -> Bar:
    """merge_bar of one minute (a 1h bar read for a 1h-or-longer bar), sharing its rows: neither
    changes them after this."""
    bar = Bar(start, end, minute.rows, minute.buy, minute.sell, minute.trades)
    bar.max_delta = minute.max_delta if minute.max_delta is not None else minute.delta
    bar.min_delta = minute.min_delta if minute.min_delta is not None else minute.delta
    bar.high, bar.low = minute.high, minute.low
    if minute.open is not None:
        bar.first_ms, bar.open = minute.first_ms, minute.open
    if minute.close is not None:
        bar.last_ms, bar.close = minute.last_ms, minute.close
    return bar


def count_large(bars: Sequence[Bar], trades: Iterable[LargeTradeRecord], start: int, size_ms: int) -> None:
    for trade in trades:
        index = (trade.time_ms - start) // size_ms
        if 0 <= index < len(bars):
            bars[index].large_trades += 1
            bars[index].large_volume += trade.volume


def analyse(q: FlowQuery, bars: list[Bar]) -> FlowResult:
    """Imbalances per bar and every zone, each zone attached to the bar it ends in."""
    row = q.grid.row_units
    result = FlowResult(bars, [], [[] for _ in bars])
    rule = (row, q.ratio_text, q.imbalance_min)  # memo keys: text and integers hash fast
    for index, bar in enumerate(bars):
        found = derived(
            bar, ("imbalances", rule), partial(diagonal_imbalances, bar.rows, row, q.ratio, q.imbalance_min)
        )
        result.imbalances.append(found)
        # shared protobufs: consumers copy them into their messages, none changes a stacked zone
        stacked = derived(
            bar, ("stacked", rule, q.stacked_rows, q.grid.decimals), partial(_stacked_protos, q, bar, found)
        )
        result.zones[index] += stacked
    for vi in volume_imbalances(bars):
        result.zones[vi.index].append(volume_imbalance_proto(q, bars, vi))
    for ab in absorption_zones(bars, row, q.absorption_multiple, q.absorption_window, q.absorption_min):
        result.zones[ab.index + ab.window_bars].append(absorption_proto(q, bars, ab))
    for dv in divergences(bars, q.pivot_left, q.pivot_right, q.include_hidden):
        result.zones[dv.second].append(divergence_proto(q, bars, dv))
    return result


def _stacked_protos(q: FlowQuery, bar: Bar, found: list[Imbalance]) -> list[pb.Zone]:
    return [stacked_proto(q, bar, zone) for zone in stacked_zones(found, q.grid.row_units, q.stacked_rows)]


# --- protobuf ------------------------------------------------------------------------------------


# prices repeat from bar to bar (a 30-day response of 1h bars prints ~33k prices, ~1.6k distinct)
_price_text = lru_cache(maxsize=1 << 14)(format_units)


def _price(q: FlowQuery, units: int | None) -> str:
    return _price_text(units, q.grid.decimals) if units is not None else ""


def imbalance_proto(q: FlowQuery, i: Imbalance) -> pb.DiagonalImbalance:
    message = pb.DiagonalImbalance()
    _fill_imbalance(message, q, i)
    return message


def _fill_imbalance(message: pb.DiagonalImbalance, q: FlowQuery, i: Imbalance) -> None:
    """Set one by one: cheaper than keyword arguments, for the ~14k imbalances of 30 days of 1h bars."""
    row = q.grid.row_units
    message.price = _price(q, i.price)
    message.side = _SIDE[i.side]
    message.ratio = i.ratio_text()
    message.volume = vol(i.volume)
    message.opposite_volume = vol(i.opposite)
    message.opposite_price = _price(q, i.price - row if i.side is Side.BUY else i.price + row)


def stacked_proto(q: FlowQuery, bar: Bar, z: StackedZone) -> pb.Zone:
    return pb.Zone(
        kind=pb.ZONE_KIND_STACKED_IMBALANCE,
        side=_SIDE[z.side],
        price_low=_price(q, z.low),
        price_high=_price(q, z.high + q.grid.row_units),
        start_time_ms=bar.start_ms,
        end_time_ms=bar.end_ms,
        stacked_imbalance=pb.StackedImbalanceEvidence(
            rows=z.rows, volume=vol(z.volume), opposite_volume=vol(z.opposite), min_ratio=z.min_ratio
        ),
    )


def volume_imbalance_proto(q: FlowQuery, bars: Sequence[Bar], z: VolumeImbalanceZone) -> pb.Zone:
    a, b = bars[z.index - 1], bars[z.index]
    return pb.Zone(
        kind=pb.ZONE_KIND_VOLUME_IMBALANCE,
        side=_SIDE[z.side],
        price_low=_price(q, z.low),
        price_high=_price(q, z.high),
        start_time_ms=a.start_ms,
        end_time_ms=b.end_ms,
        volume_imbalance=pb.VolumeImbalanceEvidence(
            previous_close=_price(q, a.close),
            next_open=_price(q, b.open),
            previous_delta=vol(a.delta),
            next_delta=vol(b.delta),
        ),
    )


def absorption_proto(q: FlowQuery, bars: Sequence[Bar], z: AbsorptionZone) -> pb.Zone:
    bar = bars[z.index]
    return pb.Zone(
        kind=pb.ZONE_KIND_ABSORPTION,
        side=_SIDE[z.side],
        price_low=_price(q, z.price),
        price_high=_price(q, z.price + q.grid.row_units),
        start_time_ms=bar.start_ms,
        end_time_ms=bars[z.index + z.window_bars].end_ms,
        absorption=pb.AbsorptionEvidence(
            rule=pb.ABSORPTION_RULE_VOLUME,
            order_book_used=False,
            volume=vol(z.volume),
            mean_row_volume=vol(z.mean_num // z.mean_den),  # truncated to the volume scale
            multiple=z.multiple_text(),
            window_bars=z.window_bars,
            window_extreme=_price(q, z.window_extreme),
        ),
    )


def refill_proto(q: FlowQuery, bar: Bar, r: Refill) -> pb.Zone:
    return pb.Zone(
        kind=pb.ZONE_KIND_ABSORPTION,
        side=_SIDE[r.side],
        price_low=_price(q, r.price),
        price_high=_price(q, r.price + q.grid.row_units),
        start_time_ms=bar.start_ms,
        end_time_ms=bar.end_ms,
        absorption=pb.AbsorptionEvidence(
            rule=pb.ABSORPTION_RULE_BOOK_REFILL,
            order_book_used=True,
            volume=vol(r.volume),
            mean_row_volume=vol(r.mean_num // r.mean_den),
            multiple=ratio_text(r.volume * r.mean_den, r.mean_num),
            displayed_size=vol(r.displayed),
            resting_size=vol(r.resting),
        ),
    )


def divergence_proto(q: FlowQuery, bars: Sequence[Bar], d: Divergence) -> pb.Zone:
    a, b = bars[d.first], bars[d.second]
    return pb.Zone(
        kind=pb.ZONE_KIND_CVD_DIVERGENCE,
        side=_SIDE[d.side],
        price_low=_price(q, min(d.first_price, d.second_price)),
        price_high=_price(q, max(d.first_price, d.second_price)),
        start_time_ms=a.start_ms,
        end_time_ms=b.end_ms,
        divergence=pb.DivergenceEvidence(
            hidden=d.hidden,
            first_pivot_time_ms=a.start_ms,
            first_price=_price(q, d.first_price),
            first_cvd=vol(a.cvd),
            second_pivot_time_ms=b.start_ms,
            second_price=_price(q, d.second_price),
            second_cvd=vol(b.cvd),
        ),
    )


def bar_proto(
    q: FlowQuery,
    bar: Bar,
    imbalances: Sequence[Imbalance],
    zones: Sequence[pb.Zone],
    include_rows: bool,
    out: pb.OrderFlowBar | None = None,
) -> pb.OrderFlowBar:
    """The bar's message; with `out` (a response's bars.add()), filled in there rather than built and
    then copied into the response."""
    if bar.derived is None:
        message = _bar_fields(q, bar, imbalances, include_rows)
        if out is not None:
            out.CopyFrom(message)
            message = out
    else:
        # the fields that follow from the rows and prices, formatted once per bar, imbalance list
        # and layout; CVD, large trades, zones and closed are this request's
        key = ("proto", q.grid, include_rows, id(imbalances))
        held = bar.derived.get(key)
        if held is None or held[0] is not imbalances:
            held = bar.derived[key] = (imbalances, _bar_fields(q, bar, imbalances, include_rows))
        message = pb.OrderFlowBar() if out is None else out
        message.CopyFrom(held[1])
    message.cvd = vol(bar.cvd)
    message.large_trades = bar.large_trades
    message.large_trade_volume = vol(bar.large_volume)
    message.zones.extend(zones)
    message.closed = bar.closed
    return message


def _bar_fields(
    q: FlowQuery, bar: Bar, imbalances: Sequence[Imbalance], include_rows: bool
) -> pb.OrderFlowBar:
    """A bar's message without CVD, large trades, zones and closed."""
    message = pb.OrderFlowBar(
        start_time_ms=bar.start_ms,
        end_time_ms=bar.end_ms,
        open=_price(q, bar.open),
        high=_price(q, bar.high),
        low=_price(q, bar.low),
        close=_price(q, bar.close),
        volume=vol(bar.volume),
        buy_volume=vol(bar.buy),
        sell_volume=vol(bar.sell),
        delta=vol(bar.delta),
        max_delta=vol(bar.max_delta),
        min_delta=vol(bar.min_delta),
        trades=bar.trades,
    )
    add_imbalance = message.imbalances.add  # built in place: a message passed in is copied
    for i in imbalances:
        _fill_imbalance(add_imbalance(), q, i)
    if include_rows:
        add = message.rows.add
        for r in grid_rows(bar.rows, q.grid.row_units):
            add(
                price=_price(q, r.price_units),
                buy_volume=vol(r.buy),
                sell_volume=vol(r.sell),
                delta=vol(r.delta),
            )
    return message


def large_trade_proto(t: LargeTradeRecord) -> pb.LargeTrade:
    return pb.LargeTrade(
        instrument=t.instrument.to_proto(),
        trade_id=t.trade_id,
        exchange_time_ms=t.time_ms,
        price=t.price,
        size=t.size,
        side=common_pb2.SIDE_BUY if t.is_buy else common_pb2.SIDE_SELL,
    )
