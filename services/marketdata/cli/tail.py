"""`marketdata tail trades`: print a running collector's trades, as JSON lines or for people."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, TextIO

import grpc
import orjson

from marketdata.core.config import ConfigError, load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import common_pb2

_SIDES = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}
_EXCHANGES = {common_pb2.EXCHANGE_BINANCE: "binance", common_pb2.EXCHANGE_BYBIT: "bybit"}
_MARKETS = {common_pb2.MARKET_SPOT: "spot", common_pb2.MARKET_LINEAR: "linear"}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    trades = what.add_parser("trades", help="normalized trades, one per line")
    trades.add_argument(
        "--instrument",
        action="append",
        default=[],
        metavar="KEY",
        help="market:SYMBOL, e.g. binance-spot:BTCUSDT (repeatable; default: all collected)",
    )
    trades.add_argument(
        "--limit", type=int, default=0, help="stop after N trades (default: run until Ctrl-C)"
    )
    trades.add_argument("--json", action="store_true", help="one JSON object per line (decimals as strings)")
    trades.add_argument("--addr", default=None, help="collector address (default MARKETDATA_COLLECTOR_ADDR)")
    trades.set_defaults(handler=run)


def trade_record(instrument: common_pb2.Instrument, trade: common_pb2.Trade) -> dict[str, Any]:
    """The JSON form of a trade: identity, exact decimals as strings, aggressor side, both times."""
    key = InstrumentId.from_proto(instrument).key
    record: dict[str, Any] = {
        "instrument": key,
        "exchange": _EXCHANGES[instrument.exchange],
        "market": _MARKETS[instrument.market],
        "symbol": instrument.symbol,
        "trade_id": trade.trade_id,
        "price": trade.price,
        "size": trade.size,
        "side": _SIDES.get(trade.side, "unknown"),
        "exchange_time_ms": trade.exchange_time_ms,
        "receive_time_ns": trade.receive_time_ns,
        "source": "rest_backfill" if trade.source == common_pb2.TRADE_SOURCE_REST_BACKFILL else "websocket",
    }
    if trade.execution_type:
        record["execution_type"] = trade.execution_type
    if trade.cross_sequence:
        record["cross_sequence"] = trade.cross_sequence
    if trade.block_trade:
        record["block_trade"] = True
    if trade.rpi:
        record["rpi"] = True
    return record


def _human(record: dict[str, Any]) -> str:
    clock = time.strftime("%H:%M:%S", time.gmtime(record["exchange_time_ms"] / 1000))
    millis = record["exchange_time_ms"] % 1000
    side = record["side"].upper().ljust(4)
    backfill = "  (backfilled)" if record["source"] == "rest_backfill" else ""
    return (
        f"{clock}.{millis:03d}Z  {record['instrument']:<28} {side} {record['size']:>16} @ {record['price']:<16}"
        f" id={record['trade_id']}{backfill}"
    )


async def stream_trades(
    addr: str, instruments: list[InstrumentId], limit: int, as_json: bool, out: TextIO
) -> int:
    request = collector_pb2.StreamTradesRequest(instruments=[i.to_proto() for i in instruments])
    printed = 0
    async with create_channel(addr) as channel:
        stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
        async for response in stub.StreamTrades(request):
            batch = response.batch
            lines = []
            for trade in batch.trades:
                record = trade_record(batch.instrument, trade)
                lines.append(orjson.dumps(record).decode() if as_json else _human(record))
                printed += 1
                if limit and printed >= limit:
                    break
            out.write("\n".join(lines) + "\n")
            out.flush()
            if limit and printed >= limit:
                return 0
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        instruments = [InstrumentId.parse(text) for text in args.instrument]
        addr = args.addr or load_settings().collector_addr
    except (ValueError, ConfigError) as exc:
        print(f"marketdata tail: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(stream_trades(addr, instruments, args.limit, args.json, sys.stdout))
    except KeyboardInterrupt:
        return 0
    except grpc.aio.AioRpcError as exc:
        print(f"marketdata tail: collector at {addr}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
