"""The counting window every trade client shares, so each client's figure means the same thing.

Standard library only: the client scripts beside it import it as `window` under whichever interpreter
runs them (the peer virtualenv's for cryptofeed and ccxt).
"""

from __future__ import annotations

import json
import time


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

    def add(self, count: int) -> bool:
        """Record `count` trades received now; True once the window has closed."""
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
            }
        )
