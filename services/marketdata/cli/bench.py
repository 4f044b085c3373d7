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


def run_collector(args: argparse.Namespace) -> int:
    from marketdata.bench import collector

    report = collector.main(args.seconds, args.quick)
    print(collector.table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(collector.as_json(report), indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0
