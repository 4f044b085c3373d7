"""The counting window every trade client shares, so each client's figure means the same thing.

Standard library only: the client scripts beside it import it as `window` under whichever interpreter
runs them (the peer virtualenv's for cryptofeed and ccxt).
"""

from __future__ import annotations

import asyncio
import json
import os
import time


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop the marketdata processes run on (MARKETDATA_EVENT_LOOP: uvloop by default), so
    every client is measured on the same one; asyncio's own where uvloop is not installed."""
    if os.environ.get("MARKETDATA_EVENT_LOOP", "uvloop").strip().lower() == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class TradeWindow:
    """Counts trades received within [first trade + warmup, + warmup + seconds)."""

    def __init__(self, client: str, warmup_s: float, seconds: float) -> None:
        self.client = client
        self.warmup_s = warmup_s
        self.seconds = seconds
        self.first = 0.0
        self.opened = 0.0
        self.cpu_at_open = 0.0
        self.trades = 0
        self.done = False
        # Consecutive ids of the counted trades (Binance trade ids, Bybit `seq` from the firehose):
        # (last - first + 1) - trades is 0 exactly when nothing was lost or repeated.
        self.first_id: int | None = None
        self.last_id: int | None = None

    def add(self, count: int, first_id: int | None = None, last_id: int | None = None) -> bool:
        """Record `count` trades received now (with the ids of the first and last when they are
        consecutive); True once the window has closed."""
        now = time.monotonic()
        if not self.first:
            self.first = now
        if now < self.first + self.warmup_s:
            return False
        if not self.opened:
            self.opened, self.cpu_at_open = now, time.process_time()
            return False
        if now - self.opened >= self.seconds:
            self.done = True
            return True
        self.trades += count
        if first_id is not None:
            if self.first_id is None:
                self.first_id = first_id
            self.last_id = last_id if last_id is not None else first_id
        return False

    def report(self) -> str:
        elapsed = (time.monotonic() - self.opened) if self.opened else 0.0
        rate = self.trades / elapsed if elapsed > 0 else 0.0
        cpu = 100 * (time.process_time() - self.cpu_at_open) / elapsed if elapsed > 0 else 0.0
        return json.dumps(
            {
                "client": self.client,
                "trades": self.trades,
                "seconds": round(elapsed, 3),
                "trades_per_s": round(rate),
                "cpu_pct": round(cpu, 1),  # the client process's CPU over the window
                "id_span_mismatch": (
                    None
                    if self.first_id is None or self.last_id is None
                    else abs(self.last_id - self.first_id + 1 - self.trades)
                ),
            }
        )
