"""get_order_flow (order-flow GetOrderFlow) and get_order_flow_stream (a bounded window of
StreamOrderFlow: MCP has no streamed results, so the tool collects up to 60 s of updates, reports each
as a progress notification, and returns them with a cursor to continue from)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Annotated, Any, Literal

import grpc
from fastmcp import Context, FastMCP
from fastmcp.tools.base import ToolResult
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field

from marketdata.core.instruments import InstrumentId
from marketdata.mcp.backends import ORDER_FLOW, Backends
from marketdata.mcp.errors import InvalidArgument, from_rpc_error
from marketdata.mcp.shaping import Coverage, answer, iso, now_ms, parse_time, register_tool, signed
from marketdata.mcp.tools.system import FailoverInfo, failover_info
from marketdata.mcp.tools.volume_profile import (
    End,
    Instruments,
    ProfileCoverage,
    RowSize,
    RowTicks,
    SessionTime,
    SessionZone,
    Start,
    Timeframe,
    coverage_text,
    shape_coverage,
)
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2 as vp_pb

MAX_STREAM_SECONDS = 60
# Past the window the stream is cancelled; the tool's own timeout leaves room for the answer.
STREAM_TOOL_TIMEOUT_S = MAX_STREAM_SECONDS + 15
ORDER_FLOW_DEADLINE_S = 25.0
HEARTBEAT_S = 5.0
SIDES = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}
CVD_ANCHORS = {
    "utc_day": pb.CVD_ANCHOR_KIND_UTC_DAY,
    "utc_week": pb.CVD_ANCHOR_KIND_UTC_WEEK,
    "session": pb.CVD_ANCHOR_KIND_SESSION,
    "timestamp": pb.CVD_ANCHOR_KIND_TIMESTAMP,
}

# --- arguments ----------------------------------------------------------------------------------------

TimeframeArg = Annotated[Timeframe, Field(description="Bar timeframe, aligned to the UTC epoch.")]
LastBars = Annotated[
    int, Field(ge=1, le=1000, description="Without start: the last N bars up to now, the open bar included.")
]
CvdAnchorArg = Annotated[
    Literal["utc_day", "utc_week", "session", "timestamp"],
    Field(
        description="Where the cumulative delta starts: utc_day (resets 00:00 UTC), utc_week, session "
        "(session_time_zone/start/end), or timestamp (cvd_anchor_time; never resets)."
    ),
]
CvdAnchorTime = Annotated[
    str | int | None,
    Field(description="For cvd_anchor=timestamp: ISO 8601 or ms; not after the range's start."),
]
ImbalanceRatio = Annotated[
    float,
    Field(
        gt=1,
        le=1000,
        description="Diagonal imbalance: dominant volume >= ratio x the diagonal opposite (3 = 300%).",
    ),
]
ImbalanceMinVolume = Annotated[
    float,
    Field(ge=0, description="Diagonal imbalance: the dominant volume must be above this (base quantity)."),
]
StackedMinRows = Annotated[
    int,
    Field(ge=2, le=50, description="Adjacent same-side imbalanced rows that make a stacked-imbalance zone."),
]
LargeTradeMinSize = Annotated[
    float | None,
    Field(gt=0, description="Trades at least this size (base quantity) are listed as large trades."),
]


def decimal_text(value: float) -> str:
    """An agent's number as the exact decimal text the services take (3.0 -> "3", 0.25 -> "0.25")."""
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


def flow_parameters(
    row_ticks: int | None,
    row_size: str | None,
    cvd_anchor: str,
    cvd_anchor_time: str | int | None,
    session_time_zone: str | None,
    session_start: str | None,
    session_end: str | None,
    imbalance_ratio: float,
    imbalance_min_volume: float,
    stacked_min_rows: int,
    large_trade_min_size: float | None,
    include_rows: bool = False,
    absorption: pb.AbsorptionParameters | None = None,
    divergence: pb.DivergenceParameters | None = None,
) -> pb.OrderFlowParameters:
    anchor = pb.CvdAnchor(kind=CVD_ANCHORS[cvd_anchor])
    if cvd_anchor == "session":
        if not (session_time_zone and session_start and session_end):
            raise InvalidArgument("cvd_anchor=session needs session_time_zone, session_start and session_end")
        anchor.session.CopyFrom(
            vp_pb.Session(time_zone=session_time_zone, start=session_start, end=session_end)
        )
    elif cvd_anchor == "timestamp":
        if cvd_anchor_time is None:
            raise InvalidArgument("cvd_anchor=timestamp needs cvd_anchor_time")
        anchor.time_ms = parse_time(cvd_anchor_time, "cvd_anchor_time")
    return pb.OrderFlowParameters(
        row_ticks=row_ticks or 0,
        row_size=row_size or "",
        cvd_anchor=anchor,
        large_trade_min_size=decimal_text(large_trade_min_size) if large_trade_min_size else "",
        include_rows=include_rows,
        imbalance=pb.ImbalanceParameters(
            ratio=decimal_text(imbalance_ratio),
            min_volume=decimal_text(imbalance_min_volume),
            stacked_min_rows=stacked_min_rows,
        ),
        absorption=absorption or pb.AbsorptionParameters(),
        divergence=divergence or pb.DivergenceParameters(),
    )


# --- answers --------------------------------------------------------------------------------------------


class Imbalance(BaseModel):
    price: str
    side: Literal["buy", "sell"]
    ratio: str = Field(description="volume / opposite_volume; empty when the opposite row is empty.")
    volume: str
    opposite_price: str
    opposite_volume: str


class ZoneOut(BaseModel):
    kind: Literal["stacked_imbalance", "volume_imbalance", "absorption", "cvd_divergence", "unspecified"]
    side: Literal["buy", "sell", "none"] = Field(
        description="Stacked imbalance: the imbalances' side; volume imbalance: buy for a gap up; absorption: "
        "the aggressor side absorbed; divergence: buy bullish, sell bearish."
    )
    price_low: str
    price_high: str
    start: str
    end: str
    evidence: dict[str, Any] = Field(
        description="The figures behind the zone and the rule's parameters as used."
    )


class Row(BaseModel):
    price: str
    buy_volume: str
    sell_volume: str
    delta: str


class Bar(BaseModel):
    start: str = Field(description="Bar start, UTC.")
    open: str | None
    high: str | None
    low: str | None
    close: str | None
    volume: str
    buy_volume: str = Field(description="Aggressive (taker) buys.")
    sell_volume: str = Field(description="Aggressive (taker) sells.")
    delta: str = Field(description="buy - sell.")
    max_delta: str = Field(description="Highest running delta within the bar.")
    min_delta: str = Field(description="Lowest running delta within the bar.")
    cvd: str = Field(description="Cumulative delta at the bar's end from the CVD anchor.")
    trades: int
    large_trades: int
    closed: bool = Field(description="False for the open (current) bar.")
    imbalances: list[Imbalance] | None = Field(
        description="With include_imbalances: diagonal imbalances, lowest first."
    )
    rows: list[Row] | None = Field(description="With include_rows: the footprint rows, lowest first.")


class LargeTradeOut(BaseModel):
    instrument: str
    time: str
    price: str
    size: str
    side: Literal["buy", "sell", "none"]


class FlowParameters(BaseModel):
    instruments: list[str]
    composites: list[str]
    timeframe: str
    start: str
    end: str
    row_size: str
    tick_size: str
    cvd_anchor: str
    cvd_anchor_start: str
    imbalance_ratio: str
    imbalance_min_volume: str
    stacked_min_rows: int
    absorption_volume_multiple: str
    absorption_window_bars: int
    absorption_min_volume: str
    absorption_refill_ratio: str
    absorption_ignore_order_book: bool
    divergence_pivot_left: int
    divergence_pivot_right: int
    divergence_include_hidden: bool
    large_trade_min_size: str


class OrderFlow(BaseModel):
    bars: list[Bar] = Field(description="Oldest first; at most max_bars, the newest kept.")
    bars_total: int
    bars_truncated: bool
    zones: list[ZoneOut] = Field(
        description="Stacked imbalances, volume imbalances, absorption and CVD divergences, oldest first."
    )
    total_delta: str = Field(description="Delta over all returned bars.")
    last_cvd: str | None = Field(description="CVD at the end of the newest bar.")
    large_trades: list[LargeTradeOut]
    large_trades_truncated: bool
    parameters: FlowParameters
    failovers: list[FailoverInfo]
    coverage: ProfileCoverage


class StreamUpdate(BaseModel):
    sequence: int
    bar: Bar
    bar_closed: bool = Field(description="The bar's final state: a later bar has begun.")
    snapshot: bool = Field(
        description="A full state to start from (first update, or a resume that could not replay)."
    )
    replayed: bool = Field(description="Re-sent because the cursor was behind.")
    new_imbalances: list[Imbalance]
    new_zones: list[ZoneOut]
    new_large_trades: list[LargeTradeOut]


class StreamCoverage(Coverage):
    window_s: float = Field(description="How long the stream was followed.")
    ended: Literal["window", "max_updates", "stream_closed"]


class OrderFlowStream(BaseModel):
    updates: list[StreamUpdate] = Field(description="In order of arrival.")
    cursor: str | None = Field(
        description="Pass as `cursor` to continue after the last update (none yet: null)."
    )
    last_sequence: int | None
    failovers: list[FailoverInfo]
    coverage: StreamCoverage


def _side(side: int) -> Literal["buy", "sell", "none"]:
    return "buy" if side == common_pb2.SIDE_BUY else "sell" if side == common_pb2.SIDE_SELL else "none"


def _imbalance(i: pb.DiagonalImbalance) -> Imbalance:
    return Imbalance(
        price=i.price,
        side="buy" if i.side == common_pb2.SIDE_BUY else "sell",
        ratio=i.ratio,
        volume=i.volume,
        opposite_price=i.opposite_price,
        opposite_volume=i.opposite_volume,
    )


def _zone(z: pb.Zone) -> ZoneOut:
    which = z.WhichOneof("evidence")
    evidence = MessageToDict(getattr(z, which), preserving_proto_field_name=True) if which else {}
    kind = pb.ZoneKind.Name(z.kind).removeprefix("ZONE_KIND_").lower()
    return ZoneOut(
        kind=kind,  # type: ignore[arg-type]
        side=_side(z.side),
        price_low=z.price_low,
        price_high=z.price_high,
        start=iso(z.start_time_ms),
        end=iso(z.end_time_ms),
        evidence=evidence,
    )


def _bar(b: pb.OrderFlowBar, include_imbalances: bool, include_rows: bool) -> Bar:
    return Bar(
        start=iso(b.start_time_ms),
        open=b.open or None,
        high=b.high or None,
        low=b.low or None,
        close=b.close or None,
        volume=b.volume or "0",
        buy_volume=b.buy_volume or "0",
        sell_volume=b.sell_volume or "0",
        delta=b.delta or "0",
        max_delta=b.max_delta or "0",
        min_delta=b.min_delta or "0",
        cvd=b.cvd or "0",
        trades=b.trades,
        large_trades=b.large_trades,
        closed=b.closed,
        imbalances=[_imbalance(i) for i in b.imbalances] if include_imbalances else None,
        rows=[
            Row(price=r.price, buy_volume=r.buy_volume, sell_volume=r.sell_volume, delta=r.delta)
            for r in b.rows
        ]
        if include_rows
        else None,
    )


def _large(t: pb.LargeTrade) -> LargeTradeOut:
    return LargeTradeOut(
        instrument=InstrumentId.from_proto(t.instrument).key,
        time=iso(t.exchange_time_ms),
        price=t.price,
        size=t.size,
        side=_side(t.side),
    )


def _parameters(e: pb.EchoedOrderFlowParameters) -> FlowParameters:
    return FlowParameters(
        instruments=[InstrumentId.from_proto(i).key for i in e.instruments],
        composites=list(e.composites),
        timeframe=e.timeframe,
        start=iso(e.start_time_ms),
        end=iso(e.end_time_ms),
        row_size=e.row_size,
        tick_size=e.tick_size,
        cvd_anchor=pb.CvdAnchorKind.Name(e.cvd_anchor).removeprefix("CVD_ANCHOR_KIND_").lower(),
        cvd_anchor_start=iso(e.cvd_anchor_start_time_ms),
        imbalance_ratio=e.imbalance_ratio,
        imbalance_min_volume=e.imbalance_min_volume,
        stacked_min_rows=e.stacked_min_rows,
        absorption_volume_multiple=e.absorption_volume_multiple,
        absorption_window_bars=e.absorption_window_bars,
        absorption_min_volume=e.absorption_min_volume,
        absorption_refill_ratio=e.absorption_refill_ratio,
        absorption_ignore_order_book=e.absorption_ignore_order_book,
        divergence_pivot_left=e.divergence_pivot_left,
        divergence_pivot_right=e.divergence_pivot_right,
        divergence_include_hidden=e.divergence_include_hidden,
        large_trade_min_size=e.large_trade_min_size,
    )


def shape_flow(
    reply: pb.GetOrderFlowResponse, include_imbalances: bool, include_rows: bool, max_bars: int
) -> OrderFlow:
    bars = list(reply.bars)
    kept = bars[-max_bars:]
    zones = [z for b in bars for z in b.zones]
    total = sum((Decimal(b.delta) for b in kept if b.delta), Decimal(0))
    return OrderFlow(
        bars=[_bar(b, include_imbalances, include_rows) for b in kept],
        bars_total=len(bars),
        bars_truncated=len(kept) < len(bars),
        zones=[_zone(z) for z in zones],
        total_delta=format(total, "f"),
        last_cvd=bars[-1].cvd or None if bars else None,
        large_trades=[_large(t) for t in reply.large_trades],
        large_trades_truncated=reply.large_trades_truncated,
        parameters=_parameters(reply.parameters),
        failovers=[failover_info(f) for f in reply.failovers],
        coverage=shape_coverage(reply.coverage),
    )


def _flow_summary(keys: list[str], result: OrderFlow) -> str:
    p = result.parameters
    counts: dict[str, int] = {}
    for zone in result.zones:
        counts[zone.kind] = counts.get(zone.kind, 0) + 1
    zones = ", ".join(f"{n}x {kind.replace('_', ' ')}" for kind, n in counts.items()) or "no zones"
    last = result.bars[-1] if result.bars else None
    latest = f"; last bar {last.start} delta {signed(last.delta)}" if last else ""
    return (
        f"{' + '.join(keys)} {p.timeframe} x {result.bars_total} bars {p.start} to {p.end}: delta "
        f"{signed(result.total_delta)}, CVD {result.last_cvd or '-'} ({p.cvd_anchor}){latest}; {zones}; "
        f"{coverage_text(result.coverage)}"
    )


def register(mcp: FastMCP, backends: Backends) -> None:
    async def get_order_flow(
        instruments: Instruments,
        timeframe: TimeframeArg = "5m",
        last_bars: LastBars = 12,
        start: Start = None,
        end: End = None,
        row_ticks: RowTicks = None,
        row_size: RowSize = None,
        cvd_anchor: CvdAnchorArg = "utc_day",
        cvd_anchor_time: CvdAnchorTime = None,
        session_time_zone: SessionZone = None,
        session_start: SessionTime = None,
        session_end: SessionTime = None,
        imbalance_ratio: ImbalanceRatio = 3.0,
        imbalance_min_volume: ImbalanceMinVolume = 0.0,
        stacked_min_rows: StackedMinRows = 3,
        absorption_volume_multiple: Annotated[
            float,
            Field(
                gt=0,
                le=1000,
                description="Absorption: aggressor volume at a row >= this x the bar's mean row volume.",
            ),
        ] = 3.0,
        absorption_window_bars: Annotated[
            int,
            Field(
                ge=1,
                le=100,
                description="Absorption: bars after the heavy bar that must not trade through the row.",
            ),
        ] = 3,
        absorption_ignore_order_book: Annotated[
            bool, Field(description="Absorption: use the volume rule only, even where an order book is kept.")
        ] = False,
        divergence_pivot_bars: Annotated[
            int, Field(ge=1, le=50, description="CVD divergence: bars on each side of a swing high/low.")
        ] = 2,
        include_hidden_divergences: bool = False,
        large_trade_min_size: LargeTradeMinSize = None,
        include_imbalances: Annotated[
            bool, Field(description="List each bar's diagonal imbalances.")
        ] = False,
        include_rows: Annotated[bool, Field(description="List each bar's footprint rows (large).")] = False,
        max_bars: Annotated[int, Field(ge=1, le=1000, description="Most bars returned (the newest).")] = 200,
    ) -> ToolResult:
        """Order flow per bar: OHLC, buy/sell volume, delta, intrabar delta extremes and CVD, with zones
        (stacked diagonal imbalances, volume imbalances, absorption, CVD divergences) and their evidence,
        and optionally large trades, each bar's imbalances and footprint rows. Default: the last 12 bars
        of 5m. Coverage says whether any minute is missing."""
        selection = await backends.select(instruments, "instruments")
        request = pb.GetOrderFlowRequest(
            instruments=[i.to_proto() for i in selection.instruments],
            composites=selection.composites,
            timeframe=timeframe,
            parameters=flow_parameters(
                row_ticks,
                row_size,
                cvd_anchor,
                cvd_anchor_time,
                session_time_zone,
                session_start,
                session_end,
                imbalance_ratio,
                imbalance_min_volume,
                stacked_min_rows,
                large_trade_min_size,
                include_rows,
                pb.AbsorptionParameters(
                    volume_multiple=decimal_text(absorption_volume_multiple),
                    window_bars=absorption_window_bars,
                    ignore_order_book=absorption_ignore_order_book,
                ),
                pb.DivergenceParameters(
                    pivot_left=divergence_pivot_bars,
                    pivot_right=divergence_pivot_bars,
                    include_hidden=include_hidden_divergences,
                ),
            ),
        )
        if start is not None:
            request.start_time_ms = parse_time(start, "start")
            request.end_time_ms = parse_time(end, "end") if end is not None else now_ms()
            if request.end_time_ms <= request.start_time_ms:
                raise InvalidArgument(
                    f"end ({iso(request.end_time_ms)}) must be after start ({iso(request.start_time_ms)})"
                )
        elif end is not None:
            raise InvalidArgument("end: give start too (start/end select a range; otherwise last_bars)")
        else:
            request.last_bars = last_bars
        reply = await backends.call(
            ORDER_FLOW, backends.order_flow.GetOrderFlow, request, ORDER_FLOW_DEADLINE_S
        )
        result = shape_flow(reply, include_imbalances, include_rows, max_bars)
        return answer(result, _flow_summary(selection.keys, result))

    async def get_order_flow_stream(
        ctx: Context,
        instruments: Instruments,
        timeframe: TimeframeArg = "1m",
        seconds: Annotated[
            int,
            Field(
                ge=1, le=MAX_STREAM_SECONDS, description="How long to follow the live stream (at most 60 s)."
            ),
        ] = 10,
        cursor: Annotated[
            str | None,
            Field(
                max_length=4096,
                description="The `cursor` of a previous answer with the same arguments: continue after it "
                "(updates missed meanwhile are replayed while the service still holds them).",
            ),
        ] = None,
        max_updates: Annotated[int, Field(ge=1, le=1000, description="Stop after this many updates.")] = 200,
        row_ticks: RowTicks = None,
        row_size: RowSize = None,
        imbalance_ratio: ImbalanceRatio = 3.0,
        stacked_min_rows: StackedMinRows = 3,
        large_trade_min_size: LargeTradeMinSize = None,
    ) -> ToolResult:
        """Follow live order flow of the current bar for a bounded window (default 10 s, at most 60 s):
        every update (delta, CVD, new imbalances, zones and large trades) is also sent as a progress
        notification; the answer lists the updates and a `cursor` to call again and continue without gaps."""
        selection = await backends.select(instruments, "instruments")
        request = pb.StreamOrderFlowRequest(
            instruments=[i.to_proto() for i in selection.instruments],
            composites=selection.composites,
            timeframe=timeframe,
            parameters=flow_parameters(
                row_ticks,
                row_size,
                "utc_day",
                None,
                None,
                None,
                None,
                imbalance_ratio,
                0.0,
                stacked_min_rows,
                large_trade_min_size,
            ),
            resume_cursor=cursor or "",
        )
        updates: list[StreamUpdate] = []
        failovers: list[FailoverInfo] = []
        last_cursor = cursor
        ended: Literal["window", "max_updates", "stream_closed"] = "window"
        began = time.monotonic()
        call = backends.order_flow.StreamOrderFlow(request, timeout=seconds + backends.timeout_s)

        async def read() -> Literal["max_updates", "stream_closed"]:
            nonlocal last_cursor
            async for update in call:
                updates.append(_update(update))
                last_cursor = update.resume_cursor or last_cursor
                if update.failovers:
                    failovers[:] = [failover_info(f) for f in update.failovers]
                u = updates[-1]
                await ctx.report_progress(
                    min(time.monotonic() - began, seconds),
                    seconds,
                    f"#{u.sequence} {u.bar.start} delta {signed(u.bar.delta)} CVD {u.bar.cvd}"
                    + (f", {len(u.new_zones)} new zones" if u.new_zones else ""),
                )
                if len(updates) >= max_updates:
                    return "max_updates"
            return "stream_closed"

        async def heartbeat() -> None:
            # Progress while no update arrives, so the client sees the call alive (and clients that
            # reset their request timeout on progress keep waiting).
            while True:
                await asyncio.sleep(HEARTBEAT_S)
                await ctx.report_progress(
                    min(time.monotonic() - began, seconds),
                    seconds,
                    f"following; {len(updates)} updates so far",
                )

        ticker = asyncio.create_task(heartbeat())
        try:
            ended = await asyncio.wait_for(read(), timeout=seconds)
        except TimeoutError:
            ended = "window"
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(exc, ORDER_FLOW, seconds + backends.timeout_s) from None
        finally:
            ticker.cancel()
            call.cancel()
        elapsed = round(time.monotonic() - began, 3)
        notes = (
            [] if updates else [f"no update within {elapsed:g} s (no trades in the followed instruments?)"]
        )
        if ended == "stream_closed":
            notes.append("the service ended the stream; call again with the cursor")
        result = OrderFlowStream(
            updates=updates,
            cursor=last_cursor,
            last_sequence=updates[-1].sequence if updates else None,
            failovers=failovers,
            coverage=StreamCoverage(
                complete=ended != "stream_closed", notes=notes, window_s=elapsed, ended=ended
            ),
        )
        if updates:
            last = updates[-1].bar
            summary = (
                f"{' + '.join(selection.keys)} {timeframe}: {len(updates)} updates in {elapsed:g} s; bar {last.start} "
                f"delta {signed(last.delta)}, CVD {last.cvd}, {sum(len(u.new_zones) for u in updates)} new zones; "
                "continue with the cursor"
            )
        else:
            summary = f"{' + '.join(selection.keys)} {timeframe}: no updates in {elapsed:g} s; continue with the cursor"
        return answer(result, summary)

    register_tool(mcp, get_order_flow, output=OrderFlow, title="Order flow", timeout_s=30)
    register_tool(
        mcp,
        get_order_flow_stream,
        output=OrderFlowStream,
        title="Order flow stream (bounded window)",
        timeout_s=STREAM_TOOL_TIMEOUT_S,
    )


def _update(u: pb.StreamOrderFlowResponse) -> StreamUpdate:
    return StreamUpdate(
        sequence=u.sequence,
        bar=_bar(u.bar, False, False),
        bar_closed=u.bar_closed,
        snapshot=u.snapshot,
        replayed=u.replayed,
        new_imbalances=[_imbalance(i) for i in u.new_imbalances],
        new_zones=[_zone(z) for z in u.new_zones],
        new_large_trades=[_large(t) for t in u.new_large_trades],
    )
