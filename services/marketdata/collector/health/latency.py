"""Exchange time -> receive time latency, sampled once per trade frame (not per trade).

Plain counters on the hot path; Prometheus reads them at scrape time. The bucket search is a bisect
over a dozen bounds.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds in milliseconds (Prometheus exports them in seconds).
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


@dataclass(slots=True)
class LatencyHistogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    count: int = 0
    sum_ms: int = 0
    # Smallest latency seen since the health monitor last took it (the clock-skew estimate's input).
    min_ms: int | None = None

    def observe(self, latency_ms: int) -> None:
        self.counts[bisect_left(BOUNDS_MS, latency_ms)] += 1
        self.count += 1
        self.sum_ms += latency_ms
        if self.min_ms is None or latency_ms < self.min_ms:
            self.min_ms = latency_ms

    def observe_many(self, latencies_ms: list[int]) -> None:
        """observe() each of them: the WebSocket reader keeps a frame's sample in a list and hands
        over the list once per event-loop turn, which saves a call per frame."""
        if not latencies_ms:
            return
        counts = self.counts
        for latency_ms in latencies_ms:
            counts[bisect_left(BOUNDS_MS, latency_ms)] += 1
        self.count += len(latencies_ms)
        self.sum_ms += sum(latencies_ms)
        least = min(latencies_ms)
        if self.min_ms is None or least < self.min_ms:
            self.min_ms = least

    def take_min(self) -> int | None:
        value, self.min_ms = self.min_ms, None
        return value


def quantile_ms(delta_counts: list[int], q: float) -> float | None:
    """The q-quantile (bucket upper bound, ms) of a window's bucket counts; None when empty.
    Latencies below 0 (exchange clock ahead) land in the first bucket."""
    total = sum(delta_counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, n in enumerate(delta_counts):
        seen += n
        if seen >= rank and n:
            return float(BOUNDS_MS[index]) if index < len(BOUNDS_MS) else float(BOUNDS_MS[-1]) * 2
    return float(BOUNDS_MS[-1]) * 2
