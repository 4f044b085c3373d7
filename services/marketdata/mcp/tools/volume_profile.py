"""get_volume_profile and get_volume_profile_levels (volume-profile GetVolumeProfile /
GetVolumeProfileLevels): the bridge only checks and translates arguments and shapes the answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from pydantic import BaseModel, Field

from marketdata.core.instruments import InstrumentId
from marketdata.mcp.backends import VOLUME_PROFILE, Backends
from marketdata.mcp.errors import InvalidArgument
from marketdata.mcp.shaping import (
    Coverage,
    InstrumentKey,
    TimeArg,
    answer,
    iso,
    now_ms,
    parse_time,
    register_tool,
    signed,
)
from marketdata.mcp.tools.system import FailoverInfo, failover_info
from marketdata.v1 import order_flow_service_pb2 as of_pb
from marketdata.v1 import volume_profile_service_pb2 as pb

Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1d"]
AnchorName = Literal["utc_day", "utc_week", "session"]
# Long ranges (31 days, cold) take seconds; the tool's own timeout is above this.
PROFILE_DEADLINE_S = 25.0
ANCHORS = {"utc_day": pb.ANCHOR_UTC_DAY, "utc_week": pb.ANCHOR_UTC_WEEK, "session": pb.ANCHOR_SESSION}

# --- arguments shared by both tools ------------------------------------------------------------------

Instruments = Annotated[
    list[InstrumentKey],
    Field(
        min_length=1,
        max_length=8,
        description="One instrument key, or several whose volumes are added row by row (the same pair on "
        'several exchanges), e.g. ["binance-futures:BTCUSDT"], ["best:BTCUSDT"].',
    ),
]
Anchor = Annotated[
    AnchorName,
    Field(
        description="The calendar range when neither start/end nor timeframe/lookback is given: utc_day "
        "(00:00-24:00 UTC), utc_week (ISO week from Monday 00:00 UTC) or session (session_time_zone, "
        "session_start, session_end)."
    ),
]
SessionsBack = Annotated[
    int,
    Field(
        ge=0,
        le=366,
        description="0: the anchored range holding `at` (today: developing); 1: the one before, ...",
    ),
]
Start = Annotated[TimeArg, Field(description="Range start (inclusive), with `end`; overrides the anchor.")]
End = Annotated[TimeArg, Field(description="Range end (exclusive); omit for now.")]
At = Annotated[TimeArg, Field(description="A time inside the anchored range; omit for now.")]
TimeframeArg = Annotated[
    Timeframe | None,
    Field(
        description="With `lookback`: that many bars of this timeframe up to now (the open bar included); overrides the anchor."
    ),
]
Lookback = Annotated[int | None, Field(ge=1, le=10_000, description="Bars of `timeframe` to cover.")]
SessionZone = Annotated[
    str | None, Field(max_length=64, description="IANA time zone for anchor=session, e.g. America/New_York.")
]
SessionTime = Annotated[
    str | None, Field(pattern=r"^\d{2}:\d{2}$", description="Local time HH:MM for anchor=session.")
]
RowTicks = Annotated[
    int | None,
    Field(
        ge=1,
        le=1_000_000,
        description="Row height in ticks (default 1 tick; the largest tick among the instruments).",
    ),
]
RowSize = Annotated[
    str | None,
    Field(
        pattern=r"^\d+(\.\d+)?$",
        max_length=32,
        description='Row height as a decimal price step, e.g. "10" or "0.5"; must be a whole multiple of every '
        "instrument's tick. Overrides row_ticks.",
    ),
]
ValueAreaPct = Annotated[
    float, Field(gt=0, le=100, description="Share of volume in the value area, percent.")
]
VaMethod = Annotated[
    Literal["dual_row", "single_row"],
    Field(
        description="dual_row: grow the value area two rows at a time per side (the common convention); single_row: one."
    ),
]
Unit = Annotated[
    Literal["base", "quote"], Field(description="base: size (e.g. BTC); quote: price x size (e.g. USDT).")
]


# --- answers -------------------------------------------------------------------------------------------


class Node(BaseModel):
    price: str
    total_volume: str


class Row(BaseModel):
    price: str = Field(description="The row's lowest price.")
    buy_volume: str = Field(description="Aggressive (taker) buy volume.")
    sell_volume: str = Field(description="Aggressive (taker) sell volume.")
    total_volume: str
    delta: str = Field(description="buy - sell.")


class Gap(BaseModel):
    start: str
    end: str
    reason: str


class ProfileCoverage(Coverage):
    minutes_expected: int = Field(description="Whole minutes of the range up to now.")
    minutes_covered: int = Field(description="Minutes the services had data for.")
    minutes_with_trades: int
    includes_live: bool = Field(description="The current minute came from the collector's live stream.")
    developing: bool = Field(
        description="The range reaches past now (e.g. today): still developing. The future part is not a "
        "gap and does not make the coverage incomplete."
    )
    known_gaps: list[Gap] = Field(description="Parts of the range up to now without data, and why.")


class Parameters(BaseModel):
    instruments: list[str] = Field(
        description="The plain instruments used (composites are listed in `failovers`)."
    )
    start: str = Field(description="Effective range start, UTC (whole minutes).")
    end: str = Field(description="Effective range end (exclusive), UTC.")
    start_ms: int
    end_ms: int
    row_size: str
    row_ticks: int
    tick_size: str
    value_area_pct: str
    va_method: str
    volume_unit: str
    node_window: int = Field(
        description="Rows of the moving average that smooths the profile before HVN/LVN are picked."
    )


class VolumeProfile(BaseModel):
    poc: str | None = Field(
        description="Point of control: the row with the most volume; null without trades."
    )
    value_area_high: str | None
    value_area_low: str | None
    value_area_share: str = Field(description="Share of volume actually inside the value area (0..1).")
    value_area_volume: str
    total_volume: str
    buy_volume: str
    sell_volume: str
    delta: str = Field(description="buy - sell volume over the range.")
    high_volume_nodes: list[Node] = Field(description="HVNs, lowest price first.")
    low_volume_nodes: list[Node] = Field(description="LVNs, lowest price first.")
    rows_total: int = Field(
        description="Rows in the profile (lowest to highest traded row, empty rows included)."
    )
    rows: list[Row] | None = Field(
        description="With include_rows: rows lowest price first, at most max_rows around the POC."
    )
    rows_truncated: bool
    parameters: Parameters
    failovers: list[FailoverInfo] = Field(
        description="For best:SYMBOL keys: the feed followed and its switches."
    )
    coverage: ProfileCoverage


class NakedPoc(BaseModel):
    price: str
    session_start: str
    session_end: str


class VolumeProfileLevels(BaseModel):
    poc: str | None
    value_area_high: str | None
    value_area_low: str | None
    high_volume_nodes: list[Node]
    low_volume_nodes: list[Node]
    naked_pocs: list[NakedPoc] = Field(
        description="POCs of previous sessions no later trade touched, newest first."
    )
    parameters: Parameters
    failovers: list[FailoverInfo]
    coverage: ProfileCoverage


# --- translation ---------------------------------------------------------------------------------------


def profile_range(
    anchor: str,
    sessions_back: int,
    at: str | int | None,
    start: str | int | None,
    end: str | int | None,
    timeframe: str | None,
    lookback: int | None,
    session_time_zone: str | None,
    session_start: str | None,
    session_end: str | None,
) -> pb.ProfileRange:
    if start is not None or end is not None:
        if timeframe is not None or lookback is not None:
            raise InvalidArgument("give either start/end or timeframe/lookback, not both")
        if start is None:
            raise InvalidArgument("end: give start too (start/end select a range)")
        begin = parse_time(start, "start")
        # An end in the future or omitted: up to now (the service counts the future as not expected).
        finish = parse_time(end, "end") if end is not None else 0
        if finish and finish <= begin:
            raise InvalidArgument(f"end ({iso(finish)}) must be after start ({iso(begin)})")
        return pb.ProfileRange(start_time_ms=begin, end_time_ms=finish or _far_end(begin))
    if timeframe is not None or lookback is not None:
        if timeframe is None or lookback is None:
            raise InvalidArgument("timeframe and lookback go together, e.g. timeframe=1h, lookback=4")
        return pb.ProfileRange(timeframe=timeframe, lookback=lookback)
    result = pb.ProfileRange(anchor=ANCHORS[anchor], sessions_back=sessions_back)
    if at is not None:
        result.at_time_ms = parse_time(at, "at")
    if anchor == "session":
        if not (session_time_zone and session_start and session_end):
            raise InvalidArgument("anchor=session needs session_time_zone, session_start and session_end")
        result.session.CopyFrom(pb.Session(time_zone=session_time_zone, start=session_start, end=session_end))
    return result


def _far_end(start_ms: int) -> int:
    return max(now_ms(), start_ms + 60_000)


def profile_parameters(
    row_ticks: int | None, row_size: str | None, value_area_pct: float, va_method: str, volume_unit: str
) -> pb.ProfileParameters:
    return pb.ProfileParameters(
        row_ticks=row_ticks or 0,
        row_size=row_size or "",
        value_area_pct=value_area_pct,
        va_method=pb.VALUE_AREA_METHOD_SINGLE_ROW
        if va_method == "single_row"
        else pb.VALUE_AREA_METHOD_DUAL_ROW,
        volume_unit=pb.VOLUME_UNIT_QUOTE if volume_unit == "quote" else pb.VOLUME_UNIT_BASE,
    )


def _parameters(echo: pb.EchoedParameters) -> Parameters:
    return Parameters(
        instruments=[InstrumentId.from_proto(i).key for i in echo.instruments],
        start=iso(echo.start_time_ms),
        end=iso(echo.end_time_ms),
        start_ms=echo.start_time_ms,
        end_ms=echo.end_time_ms,
        row_size=echo.row_size,
        row_ticks=echo.row_ticks,
        tick_size=echo.tick_size,
        value_area_pct=echo.value_area_pct,
        va_method=pb.ValueAreaMethod.Name(echo.va_method).removeprefix("VALUE_AREA_METHOD_").lower(),
        volume_unit=pb.VolumeUnit.Name(echo.volume_unit).removeprefix("VOLUME_UNIT_").lower(),
        node_window=echo.node_window,
    )


def shape_coverage(coverage: pb.ProfileCoverage | of_pb.OrderFlowCoverage) -> ProfileCoverage:
    """Coverage of profiles and order flow (the same fields in both services). The services list the
    part of a range after the open minute as a gap ("in the future"); for an agent that is a developing
    range, not missing data, so it is reported as `developing` instead."""
    now = now_ms()
    past: list[pb.TimeGap] = []
    future: list[pb.TimeGap] = []
    for g in coverage.known_gaps:
        is_future = g.end_time_ms > now and g.start_time_ms >= now - 60_000
        (future if is_future else past).append(g)
    gaps = [Gap(start=iso(g.start_time_ms), end=iso(g.end_time_ms), reason=g.reason) for g in past]
    notes = [f"{g.start} to {g.end}: {g.reason}" for g in gaps[:10]]
    if len(gaps) > 10:
        notes.append(f"and {len(gaps) - 10} more gaps")
    missing = coverage.minutes_expected - coverage.minutes_covered
    if missing > 0 and not gaps:
        notes.append(f"{missing} of {coverage.minutes_expected} minutes not covered")
    return ProfileCoverage(
        complete=not gaps and missing <= 0,
        notes=notes,
        minutes_expected=coverage.minutes_expected,
        minutes_covered=coverage.minutes_covered,
        minutes_with_trades=coverage.minutes_with_trades,
        includes_live=coverage.includes_live,
        developing=bool(future),
        known_gaps=gaps,
    )


def _nodes(nodes: list[pb.VolumeNode]) -> list[Node]:
    return [Node(price=n.price, total_volume=n.total_volume) for n in nodes]


def _rows_around_poc(rows: list[pb.VolumeProfileRow], poc: str, max_rows: int) -> list[pb.VolumeProfileRow]:
    """At most max_rows consecutive rows, centred on the POC row where the edges allow."""
    if len(rows) <= max_rows:
        return rows
    centre = next((k for k, r in enumerate(rows) if r.price == poc), len(rows) // 2)
    first = min(max(centre - max_rows // 2, 0), len(rows) - max_rows)
    return rows[first : first + max_rows]


def shape_profile(reply: pb.GetVolumeProfileResponse, include_rows: bool, max_rows: int) -> VolumeProfile:
    p = reply.profile
    rows = list(p.rows)
    kept = _rows_around_poc(rows, p.poc, max_rows) if include_rows else []
    return VolumeProfile(
        poc=p.poc or None,
        value_area_high=p.value_area_high or None,
        value_area_low=p.value_area_low or None,
        value_area_share=p.value_area_share or "0",
        value_area_volume=p.value_area_volume or "0",
        total_volume=p.total_volume or "0",
        buy_volume=p.buy_volume or "0",
        sell_volume=p.sell_volume or "0",
        delta=p.delta or "0",
        high_volume_nodes=_nodes(list(p.high_volume_nodes)),
        low_volume_nodes=_nodes(list(p.low_volume_nodes)),
        rows_total=len(rows),
        rows=[
            Row(
                price=r.price,
                buy_volume=r.buy_volume,
                sell_volume=r.sell_volume,
                total_volume=r.total_volume,
                delta=r.delta,
            )
            for r in kept
        ]
        if include_rows
        else None,
        rows_truncated=include_rows and len(kept) < len(rows),
        parameters=_parameters(reply.parameters),
        failovers=[failover_info(f) for f in reply.failovers],
        coverage=shape_coverage(reply.coverage),
    )


def shape_levels(reply: pb.GetVolumeProfileLevelsResponse) -> VolumeProfileLevels:
    return VolumeProfileLevels(
        poc=reply.poc or None,
        value_area_high=reply.value_area_high or None,
        value_area_low=reply.value_area_low or None,
        high_volume_nodes=_nodes(list(reply.high_volume_nodes)),
        low_volume_nodes=_nodes(list(reply.low_volume_nodes)),
        naked_pocs=[
            NakedPoc(
                price=n.price,
                session_start=iso(n.session_start_time_ms),
                session_end=iso(n.session_end_time_ms),
            )
            for n in reply.naked_pocs
        ],
        parameters=_parameters(reply.parameters),
        failovers=[failover_info(f) for f in reply.failovers],
        coverage=shape_coverage(reply.coverage),
    )


def what(keys: list[str], parameters: Parameters) -> str:
    return f"{' + '.join(keys)} {parameters.start} to {parameters.end}"


def coverage_text(c: ProfileCoverage) -> str:
    state = "complete" if c.complete else f"PARTIAL ({len(c.known_gaps)} known gaps)"
    return f"coverage {state}, {c.minutes_covered}/{c.minutes_expected} min" + (
        ", developing" if c.developing else ""
    )


def register(mcp: FastMCP, backends: Backends) -> None:
    async def get_volume_profile(
        instruments: Instruments,
        anchor: Anchor = "utc_day",
        sessions_back: SessionsBack = 0,
        at: At = None,
        start: Start = None,
        end: End = None,
        timeframe: TimeframeArg = None,
        lookback: Lookback = None,
        session_time_zone: SessionZone = None,
        session_start: SessionTime = None,
        session_end: SessionTime = None,
        row_ticks: RowTicks = None,
        row_size: RowSize = None,
        value_area_pct: ValueAreaPct = 70.0,
        va_method: VaMethod = "dual_row",
        volume_unit: Unit = "base",
        include_rows: Annotated[
            bool, Field(description="Return the histogram rows too (default: levels and totals only).")
        ] = False,
        max_rows: Annotated[
            int, Field(ge=1, le=5000, description="Most rows returned with include_rows, centred on the POC.")
        ] = 200,
    ) -> ToolResult:
        """Volume profile over a range (default: today, UTC): POC, value area high/low (70% by default),
        high- and low-volume nodes, buy/sell volume and delta, optionally the price rows; exact decimals.
        The range is an anchor (utc_day, utc_week, session; sessions_back for earlier ones), or start/end,
        or timeframe+lookback. Coverage says whether any minute of the range is missing."""
        selection = await backends.select(instruments, "instruments")
        request = pb.GetVolumeProfileRequest(
            instruments=[i.to_proto() for i in selection.instruments],
            composites=selection.composites,
            range=profile_range(
                anchor,
                sessions_back,
                at,
                start,
                end,
                timeframe,
                lookback,
                session_time_zone,
                session_start,
                session_end,
            ),
            parameters=profile_parameters(row_ticks, row_size, value_area_pct, va_method, volume_unit),
        )
        reply = await backends.call(
            VOLUME_PROFILE, backends.volume_profile.GetVolumeProfile, request, PROFILE_DEADLINE_S
        )
        result = shape_profile(reply, include_rows, max_rows)
        unit = result.parameters.volume_unit
        if result.poc is None:
            summary = (
                f"{what(selection.keys, result.parameters)}: no trades; {coverage_text(result.coverage)}"
            )
        else:
            summary = (
                f"{what(selection.keys, result.parameters)}: POC {result.poc}, value area "
                f"{result.value_area_low}-{result.value_area_high} ({float(result.value_area_share) * 100:.1f}% of "
                f"{result.total_volume} {unit}), delta {signed(result.delta)}, {result.rows_total} rows of "
                f"{result.parameters.row_size}; {coverage_text(result.coverage)}"
            )
        return answer(result, summary)

    async def get_volume_profile_levels(
        instruments: Instruments,
        anchor: Anchor = "utc_day",
        sessions_back: SessionsBack = 0,
        at: At = None,
        start: Start = None,
        end: End = None,
        timeframe: TimeframeArg = None,
        lookback: Lookback = None,
        session_time_zone: SessionZone = None,
        session_start: SessionTime = None,
        session_end: SessionTime = None,
        row_ticks: RowTicks = None,
        row_size: RowSize = None,
        value_area_pct: ValueAreaPct = 70.0,
        va_method: VaMethod = "dual_row",
        volume_unit: Unit = "base",
        naked_poc_sessions: Annotated[
            int,
            Field(
                ge=0,
                le=60,
                description="Previous sessions searched for naked POCs; 0: the server's default (10).",
            ),
        ] = 0,
    ) -> ToolResult:
        """Key levels only, compact: POC, value area high/low, HVNs/LVNs of the range (default today, UTC),
        plus naked POCs (previous sessions' POCs no trade has revisited since), newest first."""
        selection = await backends.select(instruments, "instruments")
        request = pb.GetVolumeProfileLevelsRequest(
            instruments=[i.to_proto() for i in selection.instruments],
            composites=selection.composites,
            range=profile_range(
                anchor,
                sessions_back,
                at,
                start,
                end,
                timeframe,
                lookback,
                session_time_zone,
                session_start,
                session_end,
            ),
            parameters=profile_parameters(row_ticks, row_size, value_area_pct, va_method, volume_unit),
            naked_poc_sessions=naked_poc_sessions,
        )
        reply = await backends.call(
            VOLUME_PROFILE, backends.volume_profile.GetVolumeProfileLevels, request, PROFILE_DEADLINE_S
        )
        result = shape_levels(reply)
        nakeds = ", ".join(n.price for n in result.naked_pocs[:5]) or "none"
        if result.poc is None:
            levels = "no trades"
        else:
            levels = f"POC {result.poc}, VAH {result.value_area_high}, VAL {result.value_area_low}"
        summary = f"{what(selection.keys, result.parameters)}: {levels}; naked POCs {nakeds}; {coverage_text(result.coverage)}"
        return answer(result, summary)

    register_tool(mcp, get_volume_profile, output=VolumeProfile, title="Volume profile", timeout_s=30)
    register_tool(
        mcp,
        get_volume_profile_levels,
        output=VolumeProfileLevels,
        title="Volume profile levels",
        timeout_s=30,
    )
