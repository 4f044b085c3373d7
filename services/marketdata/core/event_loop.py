"""The event loop marketdata processes run on: uvloop (libuv) unless MARKETDATA_EVENT_LOOP=asyncio.

Every service spends much of its time in the loop itself: a gRPC message read or written, a task woken,
a callback scheduled from gRPC's poller thread. uvloop does that work in C; with it `bench e2e` at 10k
trades/s measured the collector at 14 % of a core instead of 16 %, order-flow 20 % instead of 21.5 %
and volume-profile 7.7 % instead of 8.5 % (docs/benchmarks.md). asyncio's loop stays available (and is
what the in-process tests run on); where uvloop is not installed (it has no Windows build), the
processes fall back to it with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from marketdata.core.config import ConfigError, env_name, event_loop_choice

log = logging.getLogger(__name__)

ENV = env_name("event_loop")


def use_event_loop(environ: Mapping[str, str] = os.environ) -> str:
    """Make asyncio.run() and new loops use the chosen event loop; returns the one in use."""
    try:
        choice = event_loop_choice(environ.get(ENV, "uvloop"))
    except ValueError as exc:
        raise ConfigError(f"{ENV}: {exc}") from None
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; running on asyncio's event loop")
            choice = "asyncio"
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return choice
    asyncio.set_event_loop_policy(None)
    return choice
