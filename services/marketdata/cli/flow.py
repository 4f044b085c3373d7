"""`marketdata flow`: order-flow bars from the running order-flow service, as one JSON object (--json,
decimals as strings) or as a table for a terminal."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import orjson

from marketdata.cli.calls import call, command_settings
from marketdata.cli.profile import failover_json
from marketdata.core.composite import is_composite
from marketdata.core.config import Settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from marketdata.v1 import order_flow_service_pb2_grpc as pb_grpc
from marketdata.v1 import volume_profile_service_pb2 as vp_pb

ANCHORS = {
    "utc_day": pb.CVD_ANCHOR_KIND_UTC_DAY,
    "utc_week": pb.CVD_ANCHOR_KIND_UTC_WEEK,
    "session": pb.CVD_ANCHOR_KIND_SESSION,
    "timestamp": pb.CVD_ANCHOR_KIND_TIMESTAMP,
}
ANCHOR_NAMES = {v: k for k, v in ANCHORS.items()}
SIDES = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}
ZONE_KINDS = {
    pb.ZONE_KIND_STACKED_IMBALANCE: "stacked_imbalance",
    pb.ZONE_KIND_VOLUME_IMBALANCE: "volume_imbalance",
    pb.ZONE_KIND_ABSORPTION: "absorption",
    pb.ZONE_KIND_CVD_DIVERGENCE: "cvd_divergence",
}
RULES = {pb.ABSORPTION_RULE_VOLUME: "volume", pb.ABSORPTION_RULE_BOOK_REFILL: "book_refill"}


def add_flow_arguments(parser: argparse.ArgumentParser) -> None:
    """What `flow` and `tail flow` share: instruments, timeframe and the parameters."""
    parser.add_argument(
        "--instrument",
        action="append",
        required=True,
        metavar="KEY",
        help="market:SYMBOL, or a failover composite best:SYMBOL (repeat to aggregate)",
    )
    parser.add_argument("--timeframe", default="1m", help="1m 5m 15m 1h 4h 1d (default 1m)")
    parser.add_argument("--row-ticks", type=int, default=0, help="row size in ticks (default 1)")
    parser.add_argument("--row-size", default="", help="row size as a decimal (a multiple of the tick)")
    parser.add_argument("--anchor", choices=sorted(ANCHORS), default="utc_day", help="CVD anchor")
    parser.add_argument("--session-tz", default="", help="session anchor: IANA time zone")
    parser.add_argument("--session-start", default="", help="session anchor: local HH:MM")
    parser.add_argument("--session-end", default="", help="session anchor: local HH:MM")
    parser.add_argument("--anchor-time", default="", help="timestamp anchor, ISO 8601")
    parser.add_argument("--ratio", default="", help="diagonal imbalance ratio (default 3, > 1)")
    parser.add_argument("--min-volume", default="", help="imbalance minimum volume (default 0)")
    parser.add_argument("--stacked-rows", type=int, default=0, help="rows of a stacked zone (default 3)")
    parser.add_argument("--large-size", default="", help="large-trade minimum size (default: none)")
    parser.add_argument("--rows", action="store_true", help="include each bar's footprint rows")
    parser.add_argument("--addr", default=None, help="service address (default MARKETDATA_ORDER_FLOW_ADDR)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_flow_arguments(parser)
    parser.add_argument("--start", help="range start, ISO 8601 (UTC unless an offset is given)")
    parser.add_argument("--end", help="range end (exclusive), ISO 8601")
    parser.add_argument("--last", type=int, default=0, help="instead of a range: the last N bars")
    parser.add_argument("--json", action="store_true", help="print one JSON object (decimals as strings)")
    parser.set_defaults(handler=run)


def ms_of(text: str, flag: str, command: str = "flow") -> int:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"marketdata {command}: {flag}: not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def targets(args: argparse.Namespace, command: str = "flow") -> tuple[list[common_pb2.Instrument], list[str]]:
    instruments, composites = [], []
    for key in args.instrument:
        if is_composite(key):
            composites.append(key.strip())
            continue
        try:
            instruments.append(InstrumentId.parse(key).to_proto())
        except ValueError as exc:
            raise SystemExit(f"marketdata {command}: --instrument: {exc}") from None
    return instruments, composites


def parameters(args: argparse.Namespace, command: str = "flow") -> pb.OrderFlowParameters:
    anchor = pb.CvdAnchor(kind=ANCHORS[args.anchor])  # type: ignore[arg-type]
    if args.anchor == "session":
        anchor.session.CopyFrom(
            vp_pb.Session(time_zone=args.session_tz, start=args.session_start, end=args.session_end)
        )
    if args.anchor == "timestamp":
        if not args.anchor_time:
            raise SystemExit(f"marketdata {command}: --anchor timestamp needs --anchor-time")
        anchor.time_ms = ms_of(args.anchor_time, "--anchor-time", command)
    return pb.OrderFlowParameters(
        row_ticks=args.row_ticks,
        row_size=args.row_size,
        cvd_anchor=anchor,
        large_trade_min_size=args.large_size,
        include_rows=args.rows,
        imbalance=pb.ImbalanceParameters(
            ratio=args.ratio, min_volume=args.min_volume, stacked_min_rows=args.stacked_rows
        ),
    )


def build_request(args: argparse.Namespace) -> pb.GetOrderFlowRequest:
    instruments, composites = targets(args)
    request = pb.GetOrderFlowRequest(
        instruments=instruments,
        composites=composites,
        timeframe=args.timeframe,
        last_bars=args.last,
        parameters=parameters(args),
    )
    if args.start or args.end:
        if not (args.start and args.end):
            raise SystemExit("marketdata flow: give both --start and --end")
        request.start_time_ms, request.end_time_ms = ms_of(args.start, "--start"), ms_of(args.end, "--end")
    return request


def zone_json(zone: pb.Zone) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": ZONE_KINDS.get(zone.kind, "unspecified"),
        "side": SIDES.get(zone.side, ""),
        "price_low": zone.price_low,
        "price_high": zone.price_high,
        "start_time_ms": zone.start_time_ms,
        "end_time_ms": zone.end_time_ms,
    }
    which = zone.WhichOneof("evidence")
    if which == "stacked_imbalance":
        e = zone.stacked_imbalance
        out["evidence"] = {
            "rows": e.rows,
            "volume": e.volume,
            "opposite_volume": e.opposite_volume,
            "min_ratio": e.min_ratio,
        }
    elif which == "volume_imbalance":
        v = zone.volume_imbalance
        out["evidence"] = {
            "previous_close": v.previous_close,
            "next_open": v.next_open,
            "previous_delta": v.previous_delta,
            "next_delta": v.next_delta,
        }
    elif which == "absorption":
        a = zone.absorption
        out["evidence"] = {
            "rule": RULES.get(a.rule, ""),
            "order_book_used": a.order_book_used,
            "volume": a.volume,
            "mean_row_volume": a.mean_row_volume,
            "multiple": a.multiple,
            "displayed_size": a.displayed_size,
            "resting_size": a.resting_size,
            "window_bars": a.window_bars,
            "window_extreme": a.window_extreme,
        }
    elif which == "divergence":
        d = zone.divergence
        out["evidence"] = {
            "hidden": d.hidden,
            "first_pivot_time_ms": d.first_pivot_time_ms,
            "first_price": d.first_price,
            "first_cvd": d.first_cvd,
            "second_pivot_time_ms": d.second_pivot_time_ms,
            "second_price": d.second_price,
            "second_cvd": d.second_cvd,
        }
    return out


def bar_json(bar: pb.OrderFlowBar) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": iso(bar.start_time_ms),
        "start_time_ms": bar.start_time_ms,
        "end_time_ms": bar.end_time_ms,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "buy": bar.buy_volume,
        "sell": bar.sell_volume,
        "delta": bar.delta,
        "max_delta": bar.max_delta,
        "min_delta": bar.min_delta,
        "cvd": bar.cvd,
        "trades": bar.trades,
        "large_trades": bar.large_trades,
        "large_trade_volume": bar.large_trade_volume,
        "closed": bar.closed,
        "imbalances": [
            {
                "price": i.price,
                "side": SIDES.get(i.side, ""),
                "ratio": i.ratio,
                "volume": i.volume,
                "opposite_volume": i.opposite_volume,
                "opposite_price": i.opposite_price,
            }
            for i in bar.imbalances
        ],
        "zones": [zone_json(z) for z in bar.zones],
    }
    if bar.rows:
        out["rows"] = [
            {"price": r.price, "buy": r.buy_volume, "sell": r.sell_volume, "delta": r.delta} for r in bar.rows
        ]
    return out


def to_json(response: pb.GetOrderFlowResponse) -> dict[str, Any]:
    e, c = response.parameters, response.coverage
    return {
        "instruments": [InstrumentId.from_proto(i).key for i in e.instruments],
        "composites": list(e.composites),
        "timeframe": e.timeframe,
        "start_time_ms": e.start_time_ms,
        "end_time_ms": e.end_time_ms,
        "row_size": e.row_size,
        "tick_size": e.tick_size,
        "cvd_anchor": ANCHOR_NAMES.get(e.cvd_anchor, "utc_day"),
        "cvd_anchor_start_time_ms": e.cvd_anchor_start_time_ms,
        "imbalance_ratio": e.imbalance_ratio,
        "imbalance_min_volume": e.imbalance_min_volume,
        "stacked_min_rows": e.stacked_min_rows,
        "large_trade_min_size": e.large_trade_min_size,
        "bars": [bar_json(b) for b in response.bars],
        "large_trades": [
            {
                "instrument": InstrumentId.from_proto(t.instrument).key,
                "trade_id": t.trade_id,
                "time_ms": t.exchange_time_ms,
                "price": t.price,
                "size": t.size,
                "side": SIDES.get(t.side, ""),
            }
            for t in response.large_trades
        ],
        "large_trades_truncated": response.large_trades_truncated,
        "failovers": [failover_json(f) for f in response.failovers],
        "coverage": {
            "minutes_expected": c.minutes_expected,
            "minutes_covered": c.minutes_covered,
            "minutes_with_trades": c.minutes_with_trades,
            "partial": c.partial,
            "includes_live": c.includes_live,
            "known_gaps": [
                {"start_time_ms": g.start_time_ms, "end_time_ms": g.end_time_ms, "reason": g.reason}
                for g in c.known_gaps
            ],
        },
    }


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bar_line(bar: pb.OrderFlowBar) -> str:
    marks = []
    buys = sum(1 for i in bar.imbalances if i.side == common_pb2.SIDE_BUY)
    sells = len(bar.imbalances) - buys
    if buys or sells:
        marks.append(f"imb {buys}b/{sells}s")
    for zone in bar.zones:
        marks.append(
            f"{ZONE_KINDS.get(zone.kind, '?')}:{SIDES.get(zone.side, '')} {zone.price_low}-{zone.price_high}"
        )
    return (
        f"{iso(bar.start_time_ms):<20} {bar.open:>12} {bar.high:>12} {bar.low:>12} {bar.close:>12} "
        f"{bar.buy_volume:>14} {bar.sell_volume:>14} {bar.delta:>14} {bar.cvd:>14} {bar.trades:>7}  "
        + "; ".join(marks)
    )


def table(response: pb.GetOrderFlowResponse) -> str:
    header = (
        f"{'time':<20} {'open':>12} {'high':>12} {'low':>12} {'close':>12} {'buy':>14} {'sell':>14} "
        f"{'delta':>14} {'cvd':>14} {'trades':>7}  imbalances, zones"
    )
    lines = [header] + [bar_line(b) for b in response.bars]
    e, c = response.parameters, response.coverage
    lines.append(
        f"row {e.row_size}  ratio {e.imbalance_ratio}  min volume {e.imbalance_min_volume}  "
        f"stacked {e.stacked_min_rows} rows  CVD from {ANCHOR_NAMES.get(e.cvd_anchor, 'utc_day')}"
    )
    for failover in response.failovers:
        lines.append(f"{failover.composite} follows {failover_json(failover)['selected']}")
    if c.partial:
        lines.append(f"partial: {c.minutes_covered}/{c.minutes_expected} minutes covered")
    return "\n".join(lines) + "\n"


def address(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.addr or settings.order_flow_addr or f"127.0.0.1:{settings.order_flow_port}")


async def fetch(addr: str, request: pb.GetOrderFlowRequest) -> pb.GetOrderFlowResponse:
    async with create_channel(addr) as channel:
        stub = pb_grpc.OrderFlowServiceStub(channel)  # type: ignore[no-untyped-call]
        response: pb.GetOrderFlowResponse = await stub.GetOrderFlow(request, timeout=60)
        return response


def run(args: argparse.Namespace) -> int:
    settings = command_settings("marketdata flow")
    response = call("marketdata flow", fetch(address(args, settings), build_request(args)))
    if args.json:
        sys.stdout.write(orjson.dumps(to_json(response)).decode() + "\n")
    else:
        sys.stdout.write(table(response))
    return 0


# --- `marketdata tail flow` ---------------------------------------------------------------------------


def configure_tail_parser(parser: argparse.ArgumentParser) -> None:
    add_flow_arguments(parser)
    parser.add_argument("--resume", default="", metavar="CURSOR", help="continue after this resume cursor")
    parser.add_argument("--limit", type=int, default=0, help="stop after N updates (default: until Ctrl-C)")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per update (decimals as strings)"
    )
    parser.set_defaults(handler=run_tail)


def update_json(update: pb.StreamOrderFlowResponse) -> dict[str, Any]:
    return {
        "sequence": update.sequence,
        "resume_cursor": update.resume_cursor,
        "snapshot": update.snapshot,
        "replayed": update.replayed,
        "bar_closed": update.bar_closed,
        "bar": bar_json(update.bar),
        "new_imbalances": [
            {"price": i.price, "side": SIDES.get(i.side, ""), "ratio": i.ratio, "volume": i.volume}
            for i in update.new_imbalances
        ],
        "new_zones": [zone_json(z) for z in update.new_zones],
        "last_trade_ids": dict(update.last_trade_ids),
        "failovers": [failover_json(f) for f in update.failovers],
    }


def update_line(update: pb.StreamOrderFlowResponse) -> str:
    b = update.bar
    flags = "".join(
        mark for on, mark in ((update.snapshot, " snapshot"), (update.bar_closed, " CLOSED")) if on
    )
    news = [f"+{SIDES.get(i.side, '')} imbalance {i.price}" for i in update.new_imbalances]
    news += [f"+{ZONE_KINDS.get(z.kind, '?')} {z.price_low}-{z.price_high}" for z in update.new_zones]
    return (
        f"#{update.sequence} {iso(b.start_time_ms)} O {b.open} H {b.high} L {b.low} C {b.close} "
        f"buy {b.buy_volume} sell {b.sell_volume} delta {b.delta} cvd {b.cvd}{flags} {' '.join(news)}"
    ).rstrip()


async def tail(addr: str, request: pb.StreamOrderFlowRequest, limit: int, as_json: bool) -> None:
    async with create_channel(addr) as channel:
        stub = pb_grpc.OrderFlowServiceStub(channel)  # type: ignore[no-untyped-call]
        seen = 0
        async for update in stub.StreamOrderFlow(request):
            text = orjson.dumps(update_json(update)).decode() if as_json else update_line(update)
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            seen += 1
            if limit and seen >= limit:
                return


def run_tail(args: argparse.Namespace) -> int:
    settings = command_settings("marketdata tail flow")
    instruments, composites = targets(args, "tail flow")
    request = pb.StreamOrderFlowRequest(
        instruments=instruments,
        composites=composites,
        timeframe=args.timeframe,
        parameters=parameters(args, "tail flow"),
        resume_cursor=args.resume,
    )
    try:
        call("marketdata tail flow", tail(address(args, settings), request, args.limit, args.json))
    except KeyboardInterrupt:
        return 0
    return 0
