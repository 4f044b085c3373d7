"""`marketdata` entry point: parses the command line and dispatches to the subcommand's module."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from marketdata.cli.calls import CommandError
from marketdata.core.config import ConfigError, Settings, load_settings, markdown_table
from marketdata.core.event_loop import use_event_loop

SERVICES = ("collector", "storage", "volume-profile", "order-flow", "mcp")


def _parser() -> argparse.ArgumentParser:
    from marketdata.cli import bench, flow, profile, record, tail, up
    from marketdata.cli import storage as storage_cli
    from marketdata.replay_exchange import cli as replay_cli

    parser = argparse.ArgumentParser(
        prog="marketdata",
        description="Cloud MarketData: Binance and Bybit market data over gRPC. Configuration comes from "
        "MARKETDATA_* environment variables (see `marketdata config --markdown`).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run one service (what each Kubernetes pod runs)")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument(
        "--stdio",
        action="store_true",
        help="mcp only: speak MCP on stdin/stdout (for a local agent) instead of HTTP",
    )

    up.configure_parser(commands.add_parser("up", help="run every service on localhost in one process tree"))
    replay_cli.configure_parser(
        commands.add_parser(
            "replay-exchange", help="a local stand-in speaking Binance's and Bybit's protocols"
        )
    )
    tail.configure_parser(commands.add_parser("tail", help="print live data from a running collector"))
    record.configure_parser(commands.add_parser("record", help="capture raw exchange frames to a file"))
    bench.configure_parser(commands.add_parser("bench", help="benchmarks (figures, not tests)"))
    profile.configure_parser(
        commands.add_parser("profile", help="a volume profile from the volume-profile service")
    )
    flow.configure_parser(commands.add_parser("flow", help="order-flow bars from the order-flow service"))
    storage_cli.configure_parser(
        commands.add_parser("storage", help="storage maintenance: retention cleanup, restore from archive")
    )

    config = commands.add_parser("config", help="print the effective configuration")
    config.add_argument("--markdown", action="store_true", help="print the README's configuration table")
    return parser


def load_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"marketdata: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        use_event_loop()
    except ConfigError as exc:
        print(f"marketdata: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        if args.markdown:
            print(markdown_table())
            return 0
        for name, value in load_or_exit().public_items().items():
            print(f"{name} = {value}")
        return 0
    if args.command == "serve":
        settings = load_or_exit()
        if args.service == "storage":
            from marketdata.storage.server import run_storage

            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(run_storage(settings))
            return 0
        if args.service == "volume-profile":
            from marketdata.volume_profile.server import run_volume_profile

            if not settings.storage_addr:
                print(
                    "marketdata: configuration error: MARKETDATA_STORAGE_ADDR: the volume-profile service "
                    "reads storage; set its address (`marketdata up` does)",
                    file=sys.stderr,
                )
                return 2
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(run_volume_profile(settings))
            return 0
        if args.service == "order-flow":
            from marketdata.order_flow.server import run_order_flow

            if not settings.storage_addr:
                print(
                    "marketdata: configuration error: MARKETDATA_STORAGE_ADDR: the order-flow service "
                    "reads storage; set its address (`marketdata up` does)",
                    file=sys.stderr,
                )
                return 2
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(run_order_flow(settings))
            return 0
        if args.service == "mcp":
            from marketdata.cli.mcp import serve_mcp

            return serve_mcp(settings, stdio=args.stdio)
        from marketdata.collector.server import run_collector

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_collector(settings))
        return 0
    if args.command == "replay-exchange":
        from marketdata.replay_exchange import cli as replay_cli

        return replay_cli.run(args)
    if args.command == "bench":
        # A benchmark owns service processes: SIGTERM (timeout, kill) unwinds it like Ctrl-C, so that
        # its cleanup stops them instead of leaving them running.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    handler = args.handler  # set by the subcommand modules
    try:
        return int(handler(args))
    except CommandError as failed:
        print(failed, file=sys.stderr)
        return failed.code
    except KeyboardInterrupt:
        if args.command != "bench":
            raise
        print("marketdata bench: interrupted; its services were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
