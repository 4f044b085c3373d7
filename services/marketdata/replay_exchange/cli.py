"""`marketdata replay-exchange`: flags, and running the server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path

from marketdata.core.garbage import FULL_COLLECTION_EVERY, settle_garbage_collector
from marketdata.core.instruments import MarketKey, parse_instrument_list
from marketdata.replay_exchange.books import is_rest_capture
from marketdata.replay_exchange.config import DEFAULT_INSTRUMENTS, RecordingSource, ReplayConfig
from marketdata.replay_exchange.faults import FAULT_KINDS, parse_fault_text
from marketdata.replay_exchange.server import ReplayHandle, running_replay_exchange
from marketdata.replay_exchange.tls import server_context

DEFAULT_PORT = 8765


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "A local stand-in for Binance and Bybit: their public WebSocket and REST protocols on one port, "
        "fed by a seeded trade generator and/or recorded files, with fault injection."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free port)"
    )
    parser.add_argument(
        "--instruments",
        help="generated instruments, comma-separated market:SYMBOL (default: BTCUSDT on all four markets, "
        "or none when --file is given)",
    )
    parser.add_argument(
        "--rate", type=float, default=100.0, help="total generated trades per second (default 100)"
    )
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--firehose",
        action="store_true",
        help="benchmarks: offer generated trades as fast as each subscriber reads them (--rate is not "
        "used): pre-rendered blocks of 1000 trades, consecutive ids, held back only by the reader",
    )
    parser.add_argument("--max-trades", type=int, help="stop each instrument after this many trades")
    parser.add_argument(
        "--trades-per-frame",
        type=int,
        default=50,
        help="most trades per Bybit publicTrade push (1..1024, default 50)",
    )
    parser.add_argument(
        "--history-size", type=int, default=200_000, help="trades kept per instrument for REST"
    )
    parser.add_argument(
        "--start-immediately",
        action="store_true",
        help="generate from start-up instead of from each instrument's first subscription",
    )
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="[MARKET=]PATH",
        help="recorded file to replay (repeatable): our capture format, cryptofeed *.ws.* or '<ns> <json>' lines; "
        "prefix the market when the file name does not tell it, e.g. bybit-linear=trades.jsonl",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="replay speed factor; 0 = as fast as possible"
    )
    parser.add_argument("--loop", action="store_true", help="replay recorded files in a loop")
    parser.add_argument(
        "--rest-file",
        action="append",
        default=[],
        metavar="PATH",
        help="recorded REST depth snapshots (cryptofeed *.http.* capture) to serve (repeatable); "
        "those next to a --file *.ws.* capture are found without it",
    )
    parser.add_argument(
        "--book-churn",
        type=float,
        default=40.0,
        help="synthetic books: random level changes per second per instrument, besides trades (default 40)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:key=value,...",
        help=f"fault to inject (repeatable); kinds: {', '.join(FAULT_KINDS)}; "
        "e.g. drop:market=binance-spot,every=5 or skip:instrument=binance-spot:BTCUSDT,count=3,at=2",
    )
    parser.add_argument(
        "--max-connection-age",
        type=float,
        default=86_400.0,
        help="Binance cuts connections older than this many seconds (default 86400, as the real 24 h)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        help="Binance server ping interval in seconds for spot and USD-M (real: 20 and 180); the pong "
        "deadline scales with it (real: 60 and 600)",
    )
    parser.add_argument(
        "--bybit-idle-timeout",
        type=float,
        default=600.0,
        help="Bybit cuts idle connections after this (default 600)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve https/wss with this certificate (with --tls-key), as clients that refuse ws:// need",
    )
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    parser.add_argument(
        "--max-send-buffer-mb",
        type=float,
        default=64.0,
        help="cut a connection whose unsent data passes this many MB (default 64); benchmarks that let "
        "a slow client fall behind on purpose raise it",
    )


def config_from_args(args: argparse.Namespace) -> ReplayConfig:
    """Build the config; raises ValueError naming the flag that is wrong."""
    rest_files = [Path(text) for text in args.rest_file]
    for text in rest_files:
        if not text.is_file():
            raise ValueError(f"--rest-file {str(text)!r}: no such file")
    ws_files = []
    for text in args.file:
        path = Path(text.partition("=")[2] if "=" in text and not Path(text).exists() else text)
        if path.is_file() and is_rest_capture(path):
            rest_files.append(path)  # a REST capture given with --file: serve its snapshots
        else:
            ws_files.append(text)
    recordings = tuple(_recording(text) for text in ws_files)
    if args.instruments is not None:
        try:
            instruments = parse_instrument_list(args.instruments)
        except ValueError as exc:
            raise ValueError(f"--instruments: {exc}") from None
    else:
        instruments = () if recordings else DEFAULT_INSTRUMENTS
    faults = []
    for text in args.fault:
        try:
            faults.append(parse_fault_text(text))
        except ValueError as exc:
            raise ValueError(f"--fault {text!r}: {exc}") from None
    defaults = ReplayConfig()
    spot_ping, futures_ping = defaults.binance_spot_ping_interval_s, defaults.binance_futures_ping_interval_s
    if args.ping_interval is not None:
        if args.ping_interval <= 0:
            raise ValueError("--ping-interval must be > 0")
        spot_ping = futures_ping = args.ping_interval
    if args.max_connection_age <= 0:
        raise ValueError("--max-connection-age must be > 0")
    if args.max_send_buffer_mb <= 0:
        raise ValueError("--max-send-buffer-mb must be > 0")
    return ReplayConfig(
        instruments=instruments,
        rate=args.rate,
        seed=args.seed,
        max_trades=args.max_trades,
        trades_per_frame=args.trades_per_frame,
        firehose=args.firehose,
        history_size=args.history_size,
        start_on_subscribe=not args.start_immediately,
        recordings=recordings,
        rest_recordings=tuple(rest_files),
        book_churn_per_s=args.book_churn,
        speed=args.speed,
        loop=args.loop,
        faults=tuple(faults),
        max_connection_age_s=args.max_connection_age,
        bybit_idle_timeout_s=args.bybit_idle_timeout,
        max_send_buffer_bytes=int(args.max_send_buffer_mb * 1024 * 1024),
        # Keep the real ratio of pong deadline to ping interval (spot 60/20, USD-M 600/180).
        binance_spot_ping_interval_s=spot_ping,
        binance_spot_pong_timeout_s=spot_ping * 3,
        binance_futures_ping_interval_s=futures_ping,
        binance_futures_pong_timeout_s=futures_ping * 10 / 3,
    )


def _recording(text: str) -> RecordingSource:
    head, sep, tail = text.partition("=")
    market: MarketKey | None = None
    path = text
    if sep:
        try:
            market = MarketKey.parse(head)
            path = tail
        except ValueError:
            market = None  # an '=' inside the path itself
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--file {text!r}: no such file")
    return RecordingSource(file, market)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"marketdata replay-exchange: {exc}", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("marketdata replay-exchange: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        context = server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except ValueError as exc:
        print(f"marketdata replay-exchange: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_signal(config, args.host, args.port, context))
    except ValueError as exc:  # a recording that cannot be read
        print(f"marketdata replay-exchange: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"marketdata replay-exchange: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signal(
    config: ReplayConfig, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_replay_exchange(config, host, port, ssl_context) as handle:
            # The exchange keeps the last --history-size trades per instrument as objects: a full
            # collection walked them for 40-110 ms at 10k trades/s, a pause every few seconds that
            # benchmarks measured as latency of the services. Full collections come 10x rarer still
            # than in the services (whose trades the collector does not hold as objects).
            settle_garbage_collector(full_every=10 * FULL_COLLECTION_EVERY)
            print(_listening_line(handle), flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _listening_line(handle: ReplayHandle) -> str:
    return (
        f"replay exchange listening on {handle.http_url} (WebSocket {handle.ws_url}; "
        f"control {handle.http_url}/_replay/status)"
    )
