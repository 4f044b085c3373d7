"""Parsing and validating order-flow requests into a FlowQuery (INVALID_ARGUMENT names the field)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from marketdata.core.analytics.exact import (
    format_scaled,
    is_plain_decimal,
    to_units,
    volume_units,
)
from marketdata.core.analytics.profile import Grid
from marketdata.core.analytics.timeframes import (
    MINUTE_MS,
    TIMEFRAMES_MS,
    align,
    parse_hhmm,
    session_range,
    utc_day,
    utc_week,
    zone,
)
from marketdata.core.analytics_requests import RequestError, row_grid
from marketdata.core.composite import PREFIX as COMPOSITE_PREFIX
from marketdata.core.composite import is_composite
from marketdata.core.config import Settings, env_name, format_duration
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb

HOUR_MS = 3_600_000
DEFAULT_RATIO = "3"
DEFAULT_STACKED_ROWS = 3
DEFAULT_ABSORPTION_MULTIPLE = "3"
DEFAULT_ABSORPTION_WINDOW = 3
DEFAULT_REFILL_RATIO = "1"
DEFAULT_PIVOT = 2


@dataclass
class FlowQuery:
    instruments: list[InstrumentId]
    composites: list[str]
    timeframe: str
    size_ms: int
    start: int
    end: int
    grid: Grid
    row_ticks: int
    tick: str
    anchor_kind: int
    anchor_start: Callable[[int], int]
    large_min: int  # volume units; 0: no large trades
    large_min_text: str
    include_rows: bool
    ratio: Fraction
    ratio_text: str
    imbalance_min: int
    imbalance_min_text: str
    stacked_rows: int
    absorption_multiple: Fraction
    absorption_multiple_text: str
    absorption_window: int
    absorption_min: int
    absorption_min_text: str
    refill_ratio: Fraction
    refill_ratio_text: str
    ignore_book: bool
    pivot_left: int
    pivot_right: int
    include_hidden: bool

    @property
    def data_start(self) -> int:
        """Where data must be read from: the range's start, or the first bar's anchor if earlier."""
        return min(self.start, self.anchor_start(self.start + self.size_ms - MINUTE_MS))

    @property
    def hourly_anchor(self) -> bool:
        """Whether every CVD anchor period starts on a whole UTC hour (UTC day or week), so that an
        hour's delta lies wholly inside or outside each: 1h bars serve the CVD before a range."""
        return self.anchor_kind in (pb.CVD_ANCHOR_KIND_UTC_DAY, pb.CVD_ANCHOR_KIND_UTC_WEEK)

    @property
    def detail_start(self) -> int:
        """Where minute detail is needed from (FlowData.minutes' detail_from): before the range only
        the CVD's deltas are, from 1h bars where hourly_anchor allows."""
        return self.start if self.hourly_anchor else self.data_start

    @property
    def hourly(self) -> bool:
        """Whether storage may serve whole hours as 1h bars: bars and anchor periods are whole hours."""
        return self.size_ms >= HOUR_MS and self.anchor_kind in (
            pb.CVD_ANCHOR_KIND_UTC_DAY,
            pb.CVD_ANCHOR_KIND_UTC_WEEK,
        )

    @property
    def key(self) -> str:
        """What identifies a stream's output: instruments, timeframe and every parameter."""
        return "|".join(
            [
                ",".join(sorted(i.key for i in self.instruments)),
                ",".join(sorted(self.composites)),
                self.timeframe,
                self.grid.row_size,
                str(self.anchor_kind),
                self._anchor_text,
                self.large_min_text,
                str(self.include_rows),
                self.ratio_text,
                self.imbalance_min_text,
                str(self.stacked_rows),
                self.absorption_multiple_text,
                str(self.absorption_window),
                self.absorption_min_text,
                self.refill_ratio_text,
                str(self.ignore_book),
                f"{self.pivot_left},{self.pivot_right},{self.include_hidden}",
            ]
        )

    _anchor_text: str = ""


def _decimal(text: str, field_name: str, default: str, *, positive: bool = False) -> tuple[Fraction, str]:
    """An exact non-negative decimal parameter (signs, exponents and NaN are refused)."""
    value = text.strip() or default
    if value.startswith("-"):
        raise RequestError(field_name, f"must not be negative, got {text!r}")
    if not is_plain_decimal(value):
        raise RequestError(field_name, f"must be a plain decimal like {default!r}, got {text!r}")
    number = Fraction(value)
    if positive and number <= 0:
        raise RequestError(field_name, f"must be > 0, got {text!r}")
    return number, format_scaled(to_units(value, 18), 18)


def _volume(text: str, field_name: str, *, positive: bool = False) -> tuple[int, str]:
    _value, canonical = _decimal(text, field_name, "0", positive=positive)
    return volume_units(canonical), canonical


def parse_instruments(
    messages: Sequence[common_pb2.Instrument],
    composites: Sequence[str],
    settings: Settings,
) -> tuple[list[InstrumentId], list[str]]:
    if not messages and not composites:
        raise RequestError("instruments", "give at least one instrument or composite")
    limit = settings.order_flow_max_instruments
    if len(messages) + len(composites) > limit:
        raise RequestError(
            "instruments",
            f"{len(messages) + len(composites)} instruments and composites given, above the limit of "
            f"{limit} ({env_name('order_flow_max_instruments')})",
        )
    collected = set(settings.instruments)
    out: list[InstrumentId] = []
    for index, message in enumerate(messages):
        try:
            instrument = InstrumentId.from_proto(message)
        except ValueError as exc:
            raise RequestError(f"instruments[{index}]", str(exc)) from None
        if instrument not in collected:
            raise RequestError(
                f"instruments[{index}]",
                f"unknown instrument {instrument.key}: not collected ({env_name('instruments')})",
            )
        if instrument in out:
            raise RequestError(f"instruments[{index}]", f"{instrument.key} is given twice")
        out.append(instrument)
    # composites are checked against what the collector serves when they are resolved
    keys = [normalize(raw) for raw in composites]
    for index, key in enumerate(keys):
        if not is_composite(key) or len(key) == len(COMPOSITE_PREFIX):
            raise RequestError(
                f"composites[{index}]", f"{composites[index]!r} is not a composite key (best:SYMBOL)"
            )
        symbol = key[len(COMPOSITE_PREFIX) :]
        clash = [i.key for i in out if i.symbol == symbol]
        if clash:
            raise RequestError(
                f"composites[{index}]", f"{key} would count {clash[0]} (also in instruments) twice"
            )
    return out, keys


def normalize(text: str) -> str:
    """`best:btcusdt ` -> `best:BTCUSDT`, as the collector names composites."""
    text = text.strip()
    if is_composite(text):
        return COMPOSITE_PREFIX + text[len(COMPOSITE_PREFIX) :].strip().upper()
    return text


def parse_timeframe(text: str, field_name: str = "timeframe") -> tuple[str, int]:
    name = text or ""
    if name not in TIMEFRAMES_MS:
        raise RequestError(field_name, f"unknown timeframe {text!r}; one of {', '.join(TIMEFRAMES_MS)}")
    return name, TIMEFRAMES_MS[name]


def parse_range(request: Any, size_ms: int, now: int, settings: Settings) -> tuple[int, int]:
    """[start, end) widened to whole bars: either start/end or last_bars (the open bar included)."""
    has_times = bool(request.start_time_ms or request.end_time_ms)
    if has_times and request.last_bars:
        raise RequestError("last_bars", "give either start_time_ms/end_time_ms or last_bars, not both")
    max_bars = settings.order_flow_max_bars
    if request.last_bars:
        if request.last_bars > max_bars:
            raise RequestError(
                "last_bars",
                f"must be within 1..{max_bars} ({env_name('order_flow_max_bars')}), got {request.last_bars}",
            )
        end = align(now, size_ms) + size_ms
        start = end - request.last_bars * size_ms
    elif has_times:
        start, end = request.start_time_ms, request.end_time_ms
        if start < 0:
            raise RequestError("start_time_ms", f"must be >= 0, got {start}")
        if end <= start:
            raise RequestError("end_time_ms", f"must be after start_time_ms ({end} <= {start})")
        start = align(start, size_ms)
        end += (-end) % size_ms
    else:
        raise RequestError("start_time_ms", "give start_time_ms and end_time_ms, or last_bars")
    limit = settings.order_flow_max_range
    if limit and (end - start) / 1000 > limit:
        raise RequestError(
            "end_time_ms",
            f"the range is {format_duration((end - start) / 1000)}, longer than the limit of "
            f"{format_duration(limit)} ({env_name('order_flow_max_range')})",
        )
    bars = (end - start) // size_ms
    if bars > max_bars:
        raise RequestError(
            "end_time_ms",
            f"the range holds {bars} bars, above the limit of {max_bars} ({env_name('order_flow_max_bars')})",
        )
    return start, end


def parse_anchor(
    anchor: pb.CvdAnchor, start: int, settings: Settings
) -> tuple[int, Callable[[int], int], str]:
    """(kind, anchor period start of a time, text identifying the anchor)."""
    kind = anchor.kind or pb.CVD_ANCHOR_KIND_UTC_DAY
    where = "parameters.cvd_anchor"
    if kind == pb.CVD_ANCHOR_KIND_UTC_DAY:
        return kind, lambda t: utc_day(t)[0], "day"
    if kind == pb.CVD_ANCHOR_KIND_UTC_WEEK:
        return kind, lambda t: utc_week(t)[0], "week"
    if kind == pb.CVD_ANCHOR_KIND_SESSION:
        s = anchor.session
        try:
            zone(s.time_zone)
        except ValueError as exc:
            raise RequestError(f"{where}.session.time_zone", str(exc)) from None
        for name, value in (("start", s.start), ("end", s.end)):
            try:
                parse_hhmm(value)
            except ValueError as exc:
                raise RequestError(f"{where}.session.{name}", str(exc)) from None
        tz, first, last = s.time_zone, s.start, s.end

        def session_start(t: int) -> int:
            return session_range(t, tz, first, last)[0]

        return kind, session_start, f"{tz} {first}-{last}"
    if kind == pb.CVD_ANCHOR_KIND_TIMESTAMP:
        at = anchor.time_ms
        if at <= 0:
            raise RequestError(f"{where}.time_ms", f"must be > 0 for a timestamp anchor, got {at}")
        if at > start:
            raise RequestError(f"{where}.time_ms", f"must not be after the range's start ({at} > {start})")
        limit = settings.order_flow_max_range
        if limit and (start - at) / 1000 > limit:
            raise RequestError(
                f"{where}.time_ms",
                f"is {format_duration((start - at) / 1000)} before the range, longer than the limit of "
                f"{format_duration(limit)} ({env_name('order_flow_max_range')})",
            )
        floor = align(at, MINUTE_MS)
        return kind, lambda _t: floor, str(floor)
    raise RequestError(f"{where}.kind", f"unknown anchor kind {kind}")


def parse_query(
    request: Any,
    settings: Settings,
    now: int,
    instruments: list[InstrumentId],
    composites: list[str],
    ticks: dict[InstrumentId, str],
    *,
    stream: bool = False,
) -> FlowQuery:
    timeframe, size = parse_timeframe(request.timeframe)
    if stream:
        start = align(now, size)
        end = start + size
    else:
        start, end = parse_range(request, size, now, settings)
    params: pb.OrderFlowParameters = request.parameters
    kind, anchor_start, anchor_text = parse_anchor(params.cvd_anchor, start, settings)
    large_min, large_text = (0, "")
    if params.large_trade_min_size:
        large_min, large_text = _volume(
            params.large_trade_min_size, "parameters.large_trade_min_size", positive=True
        )
    imb = params.imbalance
    ratio, ratio_text = _decimal(imb.ratio, "parameters.imbalance.ratio", DEFAULT_RATIO)
    if ratio <= 1:
        raise RequestError("parameters.imbalance.ratio", f"must be > 1, got {imb.ratio!r}")
    imb_min, imb_min_text = _volume(imb.min_volume, "parameters.imbalance.min_volume")
    stacked = imb.stacked_min_rows or DEFAULT_STACKED_ROWS
    if not 2 <= stacked <= 1000:
        raise RequestError("parameters.imbalance.stacked_min_rows", f"must be within 2..1000, got {stacked}")
    ab = params.absorption
    multiple, multiple_text = _decimal(
        ab.volume_multiple,
        "parameters.absorption.volume_multiple",
        DEFAULT_ABSORPTION_MULTIPLE,
        positive=True,
    )
    window = ab.window_bars or DEFAULT_ABSORPTION_WINDOW
    if not 1 <= window <= 100:
        raise RequestError("parameters.absorption.window_bars", f"must be within 1..100, got {window}")
    ab_min, ab_min_text = _volume(ab.min_volume, "parameters.absorption.min_volume")
    refill, refill_text = _decimal(
        ab.refill_ratio, "parameters.absorption.refill_ratio", DEFAULT_REFILL_RATIO, positive=True
    )
    dv = params.divergence
    left, right = dv.pivot_left or DEFAULT_PIVOT, dv.pivot_right or DEFAULT_PIVOT
    for name, value in (("pivot_left", left), ("pivot_right", right)):
        if not 1 <= value <= 50:
            raise RequestError(f"parameters.divergence.{name}", f"must be within 1..50, got {value}")
    grid, row_ticks, tick = row_grid(params.row_size, params.row_ticks, ticks)
    query = FlowQuery(
        instruments=instruments,
        composites=composites,
        timeframe=timeframe,
        size_ms=size,
        start=start,
        end=end,
        grid=grid,
        row_ticks=row_ticks,
        tick=tick,
        anchor_kind=kind,
        anchor_start=anchor_start,
        large_min=large_min,
        large_min_text=large_text,
        include_rows=params.include_rows,
        ratio=ratio,
        ratio_text=ratio_text,
        imbalance_min=imb_min,
        imbalance_min_text=imb_min_text,
        stacked_rows=stacked,
        absorption_multiple=multiple,
        absorption_multiple_text=multiple_text,
        absorption_window=window,
        absorption_min=ab_min,
        absorption_min_text=ab_min_text,
        refill_ratio=refill,
        refill_ratio_text=refill_text,
        ignore_book=ab.ignore_order_book,
        pivot_left=left,
        pivot_right=right,
        include_hidden=dv.include_hidden,
    )
    query._anchor_text = anchor_text
    return query


def echo(q: FlowQuery, followed: Sequence[InstrumentId]) -> pb.EchoedOrderFlowParameters:
    everything = list(dict.fromkeys([*q.instruments, *followed]))
    return pb.EchoedOrderFlowParameters(
        instruments=[i.to_proto() for i in everything],
        composites=q.composites,
        timeframe=q.timeframe,
        start_time_ms=q.start,
        end_time_ms=q.end,
        row_size=q.grid.row_size,
        tick_size=q.tick,
        cvd_anchor=q.anchor_kind,  # type: ignore[arg-type]
        cvd_anchor_start_time_ms=q.anchor_start(q.start + q.size_ms - MINUTE_MS),
        large_trade_min_size=q.large_min_text,
        imbalance_ratio=q.ratio_text,
        imbalance_min_volume=q.imbalance_min_text,
        stacked_min_rows=q.stacked_rows,
        absorption_volume_multiple=q.absorption_multiple_text,
        absorption_window_bars=q.absorption_window,
        absorption_min_volume=q.absorption_min_text,
        absorption_refill_ratio=q.refill_ratio_text,
        absorption_ignore_order_book=q.ignore_book,
        divergence_pivot_left=q.pivot_left,
        divergence_pivot_right=q.pivot_right,
        divergence_include_hidden=q.include_hidden,
    )
