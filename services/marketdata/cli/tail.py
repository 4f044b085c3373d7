"""`marketdata tail trades|book|flow`: print a running collector's trades or an order book, as JSON lines
or for people."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

import orjson

from marketdata.cli import flow as flow_cli
from marketdata.cli.calls import call
from marketdata.core.config import ConfigError, load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.core.trade_json import trade_to_record
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import common_pb2, order_book_pb2

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

    book = what.add_parser("book", help="the top of one order book, one snapshot per line")
    book.add_argument(
        "--instrument", required=True, metavar="KEY", help="market:SYMBOL, e.g. binance-spot:BTCUSDT"
    )
    book.add_argument(
        "--depth", type=int, default=10, help="levels per side: 5, 10, 20, 50 or 200 (default 10)"
    )
    book.add_argument(
        "--interval-ms",
        type=int,
        default=None,
        help="one snapshot every this many ms (default: after every update with --json, else 1000)",
    )
    book.add_argument(
        "--limit", type=int, default=0, help="stop after N snapshots (default: run until Ctrl-C)"
    )
    book.add_argument("--json", action="store_true", help="one JSON object per line (decimals as strings)")
    book.add_argument("--addr", default=None, help="collector address (default MARKETDATA_COLLECTOR_ADDR)")
    book.set_defaults(handler=run_book)

    flow_cli.configure_tail_parser(
        what.add_parser("flow", help="live order flow of the current bar, one update per line")
    )


def trade_record(instrument: common_pb2.Instrument, trade: common_pb2.Trade) -> dict[str, Any]:
    """The JSON form of a trade: identity, exact decimals as strings, aggressor side, both times."""
    key = InstrumentId.from_proto(instrument).key
    return {
        "instrument": key,
        "exchange": _EXCHANGES[instrument.exchange],
        "market": _MARKETS[instrument.market],
        "symbol": instrument.symbol,
        **trade_to_record(trade),
    }


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


_STATES = {
    order_book_pb2.BOOK_SYNC_STATE_SYNCED: "synced",
    order_book_pb2.BOOK_SYNC_STATE_RESYNCING: "resyncing",
    order_book_pb2.BOOK_SYNC_STATE_SYNCING: "syncing",
}


def book_record(view: collector_pb2.OrderBookView) -> dict[str, Any]:
    """The JSON form of a book view: bids and asks as [price, size] string pairs, best first."""
    book, summary = view.book, view.summary
    record: dict[str, Any] = {
        "instrument": InstrumentId.from_proto(book.instrument).key,
        "state": _STATES.get(view.state, "unknown"),
        "update_id": book.update_id,
        "exchange_time_ms": book.exchange_time_ms,
        "receive_time_ns": book.receive_time_ns,
        "age_ms": view.age_ms,
        "bids": [[level.price, level.size] for level in book.bids],
        "asks": [[level.price, level.size] for level in book.asks],
        "best_bid": summary.best_bid.price if summary.HasField("best_bid") else None,
        "best_ask": summary.best_ask.price if summary.HasField("best_ask") else None,
        "spread": summary.spread or None,
        "mid": summary.mid or None,
        "depth_imbalance": round(summary.depth_imbalance, 6),
    }
    untrusted_bids = sum(1 for level in book.bids if level.untrusted)
    untrusted_asks = sum(1 for level in book.asks if level.untrusted)
    if untrusted_bids or untrusted_asks:
        # Levels past the REST snapshot's range: updated since, but neighbours may be missing.
        record["untrusted_levels"] = {"bids": untrusted_bids, "asks": untrusted_asks}
    if view.last_resync_reason:
        record["resyncs"] = view.resyncs
        record["last_resync_reason"] = view.last_resync_reason
    return record


def _book_human(record: dict[str, Any]) -> str:
    clock = time.strftime("%H:%M:%S", time.gmtime(record["exchange_time_ms"] / 1000))
    millis = record["exchange_time_ms"] % 1000
    head = (
        f"{clock}.{millis:03d}Z  {record['instrument']}  {record['state'].upper()}  update {record['update_id']}"
        f"  age {record['age_ms']} ms  spread {record['spread']}  mid {record['mid']}"
        f"  imbalance {record['depth_imbalance']:+.3f}"
    )
    rows = [head, f"{'bid size':>18} {'bid':>16} | {'ask':<16} ask size"]
    for n in range(max(len(record["bids"]), len(record["asks"]))):
        bid = record["bids"][n] if n < len(record["bids"]) else ["", ""]
        ask = record["asks"][n] if n < len(record["asks"]) else ["", ""]
        rows.append(f"{bid[1]:>18} {bid[0]:>16} | {ask[0]:<16} {ask[1]}".rstrip())
    return "\n".join(rows) + "\n"


async def stream_book(
    addr: str, instrument: InstrumentId, depth: int, interval_ms: int, limit: int, as_json: bool, out: TextIO
) -> int:
    request = collector_pb2.StreamOrderBookRequest(
        instrument=instrument.to_proto(), depth=depth, interval_ms=interval_ms
    )
    printed = 0
    async with create_channel(addr) as channel:
        stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
        async for response in stub.StreamOrderBook(request):
            record = book_record(response.view)
            out.write((orjson.dumps(record).decode() if as_json else _book_human(record)) + "\n")
            out.flush()
            printed += 1
            if limit and printed >= limit:
                return 0
    return 0


def run_book(args: argparse.Namespace) -> int:
    try:
        instrument = InstrumentId.parse(args.instrument)
        addr = args.addr or load_settings().collector_addr
    except (ValueError, ConfigError) as exc:
        print(f"marketdata tail: {exc}", file=sys.stderr)
        return 2
    interval_ms = args.interval_ms if args.interval_ms is not None else (0 if args.json else 1000)
    try:
        return call(
            "marketdata tail",
            stream_book(addr, instrument, args.depth, interval_ms, args.limit, args.json, sys.stdout),
            f"collector at {addr}",
        )
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


def run(args: argparse.Namespace) -> int:
    try:
        instruments = [InstrumentId.parse(text) for text in args.instrument]
        addr = args.addr or load_settings().collector_addr
    except (ValueError, ConfigError) as exc:
        print(f"marketdata tail: {exc}", file=sys.stderr)
        return 2
    try:
        return call(
            "marketdata tail",
            stream_trades(addr, instruments, args.limit, args.json, sys.stdout),
            f"collector at {addr}",
        )
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
