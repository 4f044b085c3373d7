"""`marketdata profile`: a volume profile from the running volume-profile service, as one JSON object
(--json, exact decimal strings) or as a histogram for a terminal."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from decimal import Decimal
from typing import Any

import orjson

from marketdata.cli.calls import call, command_settings
from marketdata.core.composite import is_composite
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import volume_profile_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2_grpc as pb_grpc

_METHODS = {"dual_row": pb.VALUE_AREA_METHOD_DUAL_ROW, "single_row": pb.VALUE_AREA_METHOD_SINGLE_ROW}
_METHOD_NAMES = {v: k for k, v in _METHODS.items()}
_UNITS = {"base": pb.VOLUME_UNIT_BASE, "quote": pb.VOLUME_UNIT_QUOTE}
_UNIT_NAMES = {v: k for k, v in _UNITS.items()}
_ANCHORS = {"utc_day": pb.ANCHOR_UTC_DAY, "utc_week": pb.ANCHOR_UTC_WEEK}
BAR_WIDTH = 50


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instrument",
        action="append",
        required=True,
        metavar="KEY",
        help="market:SYMBOL, or a failover composite best:SYMBOL (repeat to aggregate across exchanges)",
    )
    parser.add_argument("--start", help="range start, ISO 8601 (UTC unless an offset is given)")
    parser.add_argument("--end", help="range end (exclusive), ISO 8601")
    parser.add_argument("--timeframe", help="1m 5m 15m 1h 4h 1d, with --lookback")
    parser.add_argument(
        "--lookback", type=int, default=0, help="bars of --timeframe, the current one included"
    )
    parser.add_argument("--anchor", choices=sorted(_ANCHORS), help="utc_day or utc_week (holding now)")
    parser.add_argument("--row-ticks", type=int, default=0, help="row size in ticks (default 1)")
    parser.add_argument("--row-size", default="", help="row size as a decimal (a multiple of the tick)")
    parser.add_argument(
        "--value-area", type=float, default=0.0, metavar="PCT", help="value area %% (default 70)"
    )
    parser.add_argument("--va-method", choices=sorted(_METHODS), default="dual_row")
    parser.add_argument("--volume-unit", choices=sorted(_UNITS), default="base")
    parser.add_argument("--json", action="store_true", help="print one JSON object (decimals as strings)")
    parser.add_argument(
        "--addr", default=None, help="service address (default MARKETDATA_VOLUME_PROFILE_ADDR)"
    )
    parser.set_defaults(handler=run)


def _ms(text: str, flag: str) -> int:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"marketdata profile: {flag}: not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def build_request(args: argparse.Namespace) -> pb.GetVolumeProfileRequest:
    instruments = []
    composites = []
    for key in args.instrument:
        if is_composite(key):
            composites.append(key.strip())
            continue
        try:
            instruments.append(InstrumentId.parse(key).to_proto())
        except ValueError as exc:
            raise SystemExit(f"marketdata profile: --instrument: {exc}") from None
    rng = pb.ProfileRange()
    if args.start or args.end:
        if not (args.start and args.end):
            raise SystemExit("marketdata profile: give both --start and --end")
        rng.start_time_ms, rng.end_time_ms = _ms(args.start, "--start"), _ms(args.end, "--end")
    if args.timeframe:
        rng.timeframe, rng.lookback = args.timeframe, args.lookback
    if args.anchor:
        rng.anchor = _ANCHORS[args.anchor]
    return pb.GetVolumeProfileRequest(
        instruments=instruments,
        composites=composites,
        range=rng,
        parameters=pb.ProfileParameters(
            row_ticks=args.row_ticks,
            row_size=args.row_size,
            value_area_pct=args.value_area,
            va_method=_METHODS[args.va_method],  # type: ignore[arg-type]
            volume_unit=_UNITS[args.volume_unit],  # type: ignore[arg-type]
        ),
    )


def to_json(response: pb.GetVolumeProfileResponse) -> dict[str, Any]:
    p, e, c = response.profile, response.parameters, response.coverage
    return {
        "instruments": [InstrumentId.from_proto(i).key for i in e.instruments],
        "start_time_ms": e.start_time_ms,
        "end_time_ms": e.end_time_ms,
        "row_size": e.row_size,
        "row_ticks": e.row_ticks,
        "tick_size": e.tick_size,
        "value_area_pct": e.value_area_pct,
        "va_method": _METHOD_NAMES.get(e.va_method, "dual_row"),
        "volume_unit": _UNIT_NAMES.get(e.volume_unit, "base"),
        "node_window": e.node_window,
        "poc": p.poc,
        "vah": p.value_area_high,
        "val": p.value_area_low,
        "total_volume": p.total_volume,
        "buy_volume": p.buy_volume,
        "sell_volume": p.sell_volume,
        "delta": p.delta,
        "value_area_volume": p.value_area_volume,
        "value_area_share": p.value_area_share,
        "hvn": [n.price for n in p.high_volume_nodes],
        "lvn": [n.price for n in p.low_volume_nodes],
        "failovers": [failover_json(f) for f in response.failovers],
        "rows": [
            {
                "price": r.price,
                "buy": r.buy_volume,
                "sell": r.sell_volume,
                "total": r.total_volume,
                "delta": r.delta,
            }
            for r in p.rows
        ],
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


def failover_json(failover: collector_pb2.Failover) -> dict[str, Any]:
    return {
        "composite": failover.composite,
        "selected": InstrumentId.from_proto(failover.selected).key if failover.selected.symbol else None,
        "switches": [
            {"time_ns": s.time_ns, "from": s.from_feed, "to": s.to_feed, "reason": s.reason}
            for s in failover.switches
        ],
    }


def histogram_text(response: pb.GetVolumeProfileResponse) -> str:
    """Highest price first; `#` buy, `=` sell; POC, value area and nodes marked."""
    p = response.profile
    if not p.rows:
        return "no trades in the range\n"
    totals = [Decimal(r.total_volume) for r in p.rows]
    top = max(totals) or Decimal(1)
    hvn = {n.price for n in p.high_volume_nodes}
    lvn = {n.price for n in p.low_volume_nodes}
    low, high = Decimal(p.value_area_low), Decimal(p.value_area_high)
    width = max(len(r.price) for r in p.rows)
    lines = []
    for r, total in zip(reversed(p.rows), reversed(totals), strict=True):
        buy = int(Decimal(r.buy_volume) / top * BAR_WIDTH)
        sell = int(total / top * BAR_WIDTH) - buy
        marks = []
        if r.price == p.poc:
            marks.append("POC")
        if r.price in hvn:
            marks.append("HVN")
        if r.price in lvn:
            marks.append("LVN")
        va = "|" if low <= Decimal(r.price) <= high else " "
        lines.append(
            f"{r.price:>{width}} {va}{'#' * buy}{'=' * sell:<{BAR_WIDTH - buy}} {r.total_volume} {' '.join(marks)}"
        )
    e = response.parameters
    lines.append(
        f"POC {p.poc}  VAH {p.value_area_high}  VAL {p.value_area_low}  value area {p.value_area_share} of "
        f"{p.total_volume}  row {e.row_size}  (# buy, = sell, | value area)"
    )
    for failover in response.failovers:
        followed = failover_json(failover)
        lines.append(f"{failover.composite} follows {followed['selected']}")
        for switch in failover.switches:
            at = dt.datetime.fromtimestamp(switch.time_ns / 1e9, dt.UTC).isoformat(timespec="seconds")
            lines.append(f"  {at} {switch.from_feed or '-'} -> {switch.to_feed}: {switch.reason}")
    if response.coverage.partial:
        lines.append(
            f"partial: {response.coverage.minutes_covered}/{response.coverage.minutes_expected} minutes covered"
        )
    return "\n".join(lines) + "\n"


async def fetch(addr: str, request: pb.GetVolumeProfileRequest) -> pb.GetVolumeProfileResponse:
    async with create_channel(addr) as channel:
        stub = pb_grpc.VolumeProfileServiceStub(channel)  # type: ignore[no-untyped-call]
        response: pb.GetVolumeProfileResponse = await stub.GetVolumeProfile(request, timeout=60)
        return response


def run(args: argparse.Namespace) -> int:
    settings = command_settings("marketdata profile")
    addr = args.addr or settings.volume_profile_addr or f"127.0.0.1:{settings.volume_profile_port}"
    response = call("marketdata profile", fetch(addr, build_request(args)))
    if args.json:
        sys.stdout.write(orjson.dumps(to_json(response)).decode() + "\n")
    else:
        sys.stdout.write(histogram_text(response))
    return 0
