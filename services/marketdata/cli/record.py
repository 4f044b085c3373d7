"""`marketdata record`: capture raw exchange frames with receive times, for deterministic replays.

It runs the collector's own connections (same URLs, subscriptions, keepalives and reconnects) and
writes every text frame before parsing, in the capture format of core/capture.py, which
`marketdata replay-exchange --file` serves back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

from marketdata.collector.collector import Collector
from marketdata.core.capture import CaptureWriter
from marketdata.core.config import ConfigError, load_settings
from marketdata.core.instruments import MarketKey
from marketdata.core.logging import configure_logging
from marketdata.core.metrics import create_registry


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", required=True, help="capture file to write")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: Ctrl-C)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    parser.set_defaults(handler=run)


async def record(output: str, duration: float, max_frames: int) -> int:
    settings = load_settings()
    configure_logging("record", settings.log_level, settings.log_format)
    done = asyncio.Event()
    with CaptureWriter(output, settings.instruments) as writer:

        def sink_for(market: MarketKey):  # type: ignore[no-untyped-def]
            def sink(receive_ns: int, text: str) -> None:
                writer.write(receive_ns, market, text)
                if max_frames and writer.frames_written >= max_frames:
                    done.set()

            return sink

        collector = Collector(
            settings, create_registry("record", process_metrics=False), {m: sink_for(m) for m in MarketKey}
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        started = time.monotonic()
        await collector.start()
        print(f"recording {', '.join(i.key for i in settings.instruments)} to {output}", file=sys.stderr)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=duration or None)
        await collector.stop()
        frames = writer.frames_written
    print(f"wrote {frames} frames in {time.monotonic() - started:.1f} s to {output}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(record(args.output, args.duration, args.max_frames))
    except ConfigError as exc:
        print(f"marketdata record: configuration error: {exc}", file=sys.stderr)
        return 2
