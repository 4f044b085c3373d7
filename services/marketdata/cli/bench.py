"""`marketdata bench ...`: benchmarks print a table and write JSON (docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    areas = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    collector = areas.add_parser(
        "collector", help="trades/s through the collector, and send->receipt latency"
    )
    collector.add_argument("--seconds", type=float, default=10.0, help="measuring time per scenario")
    collector.add_argument("--quick", action="store_true", help="one throughput and one latency scenario")
    collector.add_argument("--out", default="bench-results/collector.json", help="where to write the JSON")
    collector.set_defaults(handler=run_collector)
    book = areas.add_parser(
        "book", help="order-book level updates applied/s, and GetOrderBook(depth 20) latency over loopback"
    )
    book.add_argument("--events", type=int, default=20000, help="depth events per apply scenario")
    book.add_argument("--calls", type=int, default=5000, help="GetOrderBook calls per latency scenario")
    book.add_argument("--quick", action="store_true", help="one apply and one latency scenario")
    book.add_argument("--out", default="bench-results/book.json", help="where to write the JSON")
    book.set_defaults(handler=run_book)
    storage = areas.add_parser(
        "storage", help="embedded store: ingest trades/s, 24 h footprint query latency, trades streamed back"
    )
    storage.add_argument("--trades", type=int, default=1_000_000, help="trades to ingest (24 h)")
    storage.add_argument("--rounds", type=int, default=50, help="footprint queries to time")
    storage.add_argument(
        "--synchronous", choices=("FULL", "NORMAL"), default="FULL", help="SQLite synchronous"
    )
    storage.add_argument("--out", default="bench-results/storage.json", help="where to write the JSON")
    storage.set_defaults(handler=run_storage)
    profile = areas.add_parser(
        "profile", help="GetVolumeProfile latency over 24 h and 30 days of footprints; live cost per trade"
    )
    profile.add_argument("--trades", type=int, default=2_000_000, help="trades in the 24 h scenario")
    profile.add_argument(
        "--month-trades", type=int, default=3_000_000, help="trades over the 30-day scenario (0: skip)"
    )
    profile.add_argument("--rounds", type=int, default=30, help="warm calls to time per scenario")
    profile.add_argument("--out", default="bench-results/profile.json", help="where to write the JSON")
    profile.set_defaults(handler=run_profile)


def run_collector(args: argparse.Namespace) -> int:
    from marketdata.bench import collector

    report = collector.main(args.seconds, args.quick)
    print(collector.table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(collector.as_json(report), indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


def run_storage(args: argparse.Namespace) -> int:
    from marketdata.bench import storage

    report = storage.main(args.trades, args.rounds, args.synchronous)
    print(storage.table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(storage.as_json(report), indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


def run_book(args: argparse.Namespace) -> int:
    from marketdata.bench import book

    report = book.main(args.events, args.calls, args.quick)
    print(book.table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(book.as_json(report), indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from marketdata.bench import profile

    report = profile.main(args.trades, args.month_trades, args.rounds)
    print(profile.table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(profile.as_json(report), indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0
