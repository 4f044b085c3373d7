"""`marketdata bench ...`: benchmarks print a table and write JSON (docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def configure_parser(parser: argparse.ArgumentParser) -> None:
    areas = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    collector = areas.add_parser(
        "collector", help="trades/s through the collector, and send->receipt latency"
    )
    collector.add_argument("--seconds", type=float, default=10.0, help="measuring time per scenario")
    collector.add_argument("--quick", action="store_true", help="one throughput and one latency scenario")
    collector.add_argument("--out", default="bench-results/collector.json", help="where to write the JSON")
    collector.add_argument(
        "--peers",
        action="store_true",
        help="also run cryptofeed and ccxt (installed into --peers-venv) and the bare loop side by side",
    )
    collector.add_argument("--only-peers", action="store_true", help="only the side-by-side comparison")
    collector.add_argument(
        "--profile",
        metavar="DIR",
        help="side by side: also py-spy our collector at saturation, top functions to DIR/collector-*.txt",
    )
    collector.add_argument(
        "--peers-venv",
        default=str(Path.home() / ".cache" / "marketdata" / "bench-peers"),
        help="virtualenv for the peer clients (created on first use)",
    )
    collector.set_defaults(handler=run_collector)
    book = areas.add_parser(
        "book", help="order-book level updates applied/s, and GetOrderBook(depth 20) latency over loopback"
    )
    book.add_argument("--events", type=int, default=20000, help="depth events per apply scenario")
    book.add_argument("--calls", type=int, default=5000, help="GetOrderBook calls per latency scenario")
    book.add_argument("--quick", action="store_true", help="one apply and one latency scenario")
    book.add_argument("--out", default="bench-results/book.json", help="where to write the JSON")
    book.add_argument(
        "--peers",
        action="store_true",
        help="install cryptofeed into --peers-venv if missing (without it, the cryptofeed rows use the "
        "virtualenv only when it exists)",
    )
    book.add_argument(
        "--peers-venv",
        default=str(Path.home() / ".cache" / "marketdata" / "bench-peers"),
        help="virtualenv for the peer clients (as bench collector --peers)",
    )
    book.set_defaults(handler=run_book)
    storage = areas.add_parser(
        "storage", help="embedded store: ingest trades/s, 24 h footprint query latency, trades streamed back"
    )
    storage.add_argument("--trades", type=int, default=1_000_000, help="trades to ingest (24 h)")
    storage.add_argument("--rounds", type=int, default=50, help="footprint queries to time")
    storage.add_argument(
        "--synchronous", choices=("FULL", "NORMAL"), default="FULL", help="SQLite synchronous"
    )
    storage.add_argument(
        "--mongodb-uri",
        default=os.environ.get("MARKETDATA_TEST_MONGODB_URI", ""),
        help="also measure MongoDB on this server (a fresh database, dropped afterwards)",
    )
    storage.add_argument("--out", default="bench-results/storage.json", help="where to write the JSON")
    storage.set_defaults(handler=run_storage)
    profile = areas.add_parser(
        "profile",
        aliases=["analytics"],
        help="GetVolumeProfile and GetOrderFlow latency over 1 h, 24 h and 30 days of footprints; "
        "live cost per trade",
    )
    profile.add_argument("--trades", type=int, default=2_000_000, help="trades in the 24 h scenario")
    profile.add_argument(
        "--month-trades", type=int, default=3_000_000, help="trades over the 30-day scenario (0: skip)"
    )
    profile.add_argument("--rounds", type=int, default=30, help="warm calls to time per scenario")
    profile.add_argument("--out", default="bench-results/profile.json", help="where to write the JSON")
    profile.set_defaults(handler=run_profile)
    flow = areas.add_parser(
        "flow", help="trade leaving the replay exchange -> StreamOrderFlow update latency (p50/p99/max)"
    )
    flow.add_argument("--rate", type=float, default=10_000.0, help="offered trades/s on one instrument")
    flow.add_argument("--seconds", type=float, default=20.0, help="measuring time")
    flow.add_argument("--out", default="bench-results/flow.json", help="where to write the JSON")
    flow.set_defaults(handler=run_flow)
    e2e = areas.add_parser(
        "e2e",
        help="exchange send -> StreamTrades and StreamOrderFlow receipt at stepped rates, all services "
        "running; CPU per process",
    )
    e2e.add_argument(
        "--rates", default="1000,10000,50000", help="offered trades/s to step through, comma-separated"
    )
    e2e.add_argument("--seconds", type=float, default=10.0, help="measuring time per rate")
    e2e.add_argument("--out", default="bench-results/e2e.json", help="where to write the JSON")
    e2e.set_defaults(handler=run_e2e)
    mcp = areas.add_parser("mcp", help="get_volume_profile for a day end to end over MCP streamable HTTP")
    mcp.add_argument("--trades", type=int, default=1_000_000, help="trades in the stored UTC day")
    mcp.add_argument("--rounds", type=int, default=50, help="warm calls to time per scenario")
    mcp.add_argument("--out", default="bench-results/mcp.json", help="where to write the JSON")
    mcp.set_defaults(handler=run_mcp)
    hotpath = areas.add_parser(
        "hotpath",
        help="collector hot path: CPU microseconds per trade from frame to serialized batch, in process",
    )
    hotpath.add_argument("--trades", type=int, default=100_000, help="trades per scenario and repetition")
    hotpath.add_argument("--repeats", type=int, default=5, help="repetitions; the best one counts")
    hotpath.add_argument(
        "--read-bytes",
        type=int,
        default=65536,
        help="frame bytes handled per event-loop turn (one socket read)",
    )
    hotpath.add_argument("--out", default="bench-results/hotpath.json", help="where to write the JSON")
    hotpath.set_defaults(handler=run_hotpath)
    memory = areas.add_parser(
        "memory", help="resident memory of every service under `up --replay`, and its growth over a long run"
    )
    memory.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    memory.add_argument(
        "--warmup-minutes",
        type=float,
        default=5.0,
        help="growth is measured after this (the analytics services keep the last 3 minutes of trades)",
    )
    memory.add_argument("--instruments", type=int, default=20, help="instruments collected (up to 20)")
    memory.add_argument("--rate", type=float, default=2000.0, help="synthetic trades/s over all instruments")
    memory.add_argument("--sample-seconds", type=float, default=10.0, help="time between samples")
    memory.add_argument("--out", default="bench-results/memory.json", help="where to write the JSON")
    memory.set_defaults(handler=run_memory)
    soak = areas.add_parser(
        "soak", help="every service as a process under a fault a minute: zero loss and flat memory"
    )
    soak.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    soak.add_argument("--rate", type=float, default=5000.0, help="synthetic trades/s over all instruments")
    soak.add_argument("--instruments", type=int, default=8, help="instruments (1..24, over three markets)")
    soak.add_argument("--fault-every", type=float, default=60.0, help="seconds between injected faults")
    soak.add_argument("--sample-seconds", type=float, default=10.0, help="time between RSS samples")
    soak.add_argument("--out", default="bench-results/soak.json", help="where to write the JSON")
    soak.set_defaults(handler=run_soak)
    everything = areas.add_parser(
        "all",
        help=f"every area in turn with its defaults ({', '.join(SHORT_AREAS)}); "
        "--long adds memory and soak (30 min each)",
    )
    everything.add_argument("--long", action="store_true", help="also the 30-minute memory and soak runs")
    everything.add_argument(
        "--peers",
        action="store_true",
        help="collector and book side by side with their peers (cryptofeed, ccxt)",
    )
    everything.set_defaults(handler=lambda args: run_all(args, areas))


SHORT_AREAS = ("collector", "hotpath", "book", "storage", "profile", "flow", "e2e", "mcp")
LONG_AREAS = ("memory", "soak")


def run_all(args: argparse.Namespace, areas: Any) -> int:
    """Each area as if run alone with its defaults (JSON to bench-results/<area>.json); the exit code
    is the worst of theirs, and an area that fails does not stop the others."""
    worst = 0
    for area in SHORT_AREAS + (LONG_AREAS if args.long else ()):
        print(f"\n== marketdata bench {area}", flush=True)
        area_args = areas.choices[area].parse_args(
            ["--peers"] if area in ("collector", "book") and args.peers else []
        )
        try:
            code = int(area_args.handler(area_args))
        except Exception as exc:  # one broken area must not hide the others' figures
            print(f"marketdata bench {area}: failed: {exc!r}")
            code = 1
        worst = max(worst, code)
    return worst


def publish(table: str, figures: dict[str, Any], out: str) -> int:
    """Print a benchmark's table and write its figures as JSON to `out`."""
    print(table)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


def run_collector(args: argparse.Namespace) -> int:
    from marketdata.bench import collector
    from marketdata.bench.peers.environment import PeerSetupError, peer_python

    python = None
    if args.peers or args.only_peers:
        try:
            python = peer_python(Path(args.peers_venv))
        except PeerSetupError as exc:
            print(f"marketdata bench collector: {exc}")
            return 1
    profiles = Path(args.profile) if args.profile else None
    report = collector.main(args.seconds, args.quick, python, args.only_peers, profiles)
    return publish(collector.table(report), collector.as_json(report), args.out)


def run_storage(args: argparse.Namespace) -> int:
    from marketdata.bench import storage

    report = storage.main(args.trades, args.rounds, args.synchronous, args.mongodb_uri)
    return publish(storage.table(report), storage.as_json(report), args.out)


def run_book(args: argparse.Namespace) -> int:
    from marketdata.bench import book
    from marketdata.bench.peers.environment import PeerSetupError, peer_python

    python: Path | None = Path(args.peers_venv) / "bin" / "python"
    missing = f"no peer virtualenv at {args.peers_venv}: run with --peers to install cryptofeed"
    if args.peers:
        try:
            python = peer_python(Path(args.peers_venv))
        except PeerSetupError as exc:
            print(f"marketdata bench book: {exc}")
            return 1
    elif python is not None and not python.exists():
        python = None
    report = book.main(args.events, args.calls, args.quick, python, missing)
    return publish(book.table(report), book.as_json(report), args.out)


def run_profile(args: argparse.Namespace) -> int:
    from marketdata.bench import profile

    report = profile.main(args.trades, args.month_trades, args.rounds)
    return publish(profile.table(report), profile.as_json(report), args.out)


def run_flow(args: argparse.Namespace) -> int:
    from marketdata.bench import flow

    report = flow.main(args.rate, args.seconds)
    return publish(flow.table(report), flow.as_json(report), args.out)


def run_e2e(args: argparse.Namespace) -> int:
    from marketdata.bench import e2e

    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        rates = []
    if not rates or any(not 0 < r < float("inf") for r in rates):  # also refuses nan
        print(f"marketdata bench e2e: --rates must be positive trades/s, comma-separated; got {args.rates!r}")
        return 2
    report = e2e.main(rates, args.seconds)
    return publish(e2e.table(report), e2e.as_json(report), args.out)


def run_hotpath(args: argparse.Namespace) -> int:
    from marketdata.bench import hotpath

    results = hotpath.main(args.trades, args.repeats, args.read_bytes)
    return publish(hotpath.table(results), hotpath.as_json(results), args.out)


def run_memory(args: argparse.Namespace) -> int:
    from marketdata.bench import memory

    if not 1 <= args.instruments <= len(memory.instruments(100)):
        print(f"marketdata bench memory: --instruments must be within 1..{len(memory.instruments(100))}")
        return 2
    report = memory.main(args.minutes, args.warmup_minutes, args.instruments, args.rate, args.sample_seconds)
    return publish(memory.table(report), memory.as_json(report), args.out)


def run_soak(args: argparse.Namespace) -> int:
    from marketdata.bench import soak

    most = len(soak.MARKETS) * len(soak.SYMBOLS)
    if not 1 <= args.instruments <= most:
        print(f"marketdata bench soak: --instruments must be within 1..{most}")
        return 2
    report = soak.main(args.minutes, args.rate, args.instruments, args.fault_every, args.sample_seconds)
    publish(soak.table(report), soak.as_json(report), args.out)
    return 0 if soak.passed(report) else 1


def run_mcp(args: argparse.Namespace) -> int:
    from marketdata.bench import mcp

    report = mcp.main(args.trades, args.rounds)
    return publish(mcp.table(report), mcp.as_json(report), args.out)
