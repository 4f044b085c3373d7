"""The health score of a feed: 100 minus penalties, each capped, clamped to 0..100.

Pure function of the inputs so that the formula is testable and documented in one place
(docs/feed-health.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Below this normal rate (frames/s) the rate is not judged: a quiet market is not a sick feed.
MIN_NORMAL_RATE = 0.5


@dataclass(slots=True)
class HealthInputs:
    connected: bool = False
    message_rate: float = 0.0
    normal_rate: float = 0.0
    last_message_age_s: float = -1.0  # -1 before the first frame
    reconnects: int = 0
    gaps: int = 0
    unrepaired_gaps: int = 0
    book_resyncs: int = 0
    latency_p50_ms: float = -1.0
    open_circuits: list[str] = field(default_factory=list)
    diverging: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Score:
    score: int
    reason: str
    penalties: dict[str, float]


def score(inputs: HealthInputs) -> Score:
    """Penalties (points off 100), each with its cap:
    not connected 25; last-message age 7.5 per second past 2 s (60); rate below half its normal
    (60 x the shortfall below 0.5 of normal, 30); reconnects 10 each (30); gaps 5 each plus 15 per
    unrepaired (30); book resyncs 5 each (20); latency p50 past 500 ms, 1 per 100 ms (30);
    open circuit breakers 15 each (30); cross-exchange divergence flagged 10 (10)."""
    p: dict[str, float] = {}
    reasons: dict[str, str] = {}
    if not inputs.connected:
        p["connection"] = 25.0
        reasons["connection"] = "not connected"
    age = inputs.last_message_age_s
    if age < 0:
        p["age"] = 60.0
        reasons["age"] = "no frame received yet"
    elif age > 2.0:
        p["age"] = min(60.0, (age - 2.0) * 7.5)
        reasons["age"] = f"no frame for {age:.1f} s"
    if inputs.normal_rate >= MIN_NORMAL_RATE:
        ratio = inputs.message_rate / inputs.normal_rate
        if ratio < 0.5:
            p["rate"] = min(30.0, (0.5 - ratio) * 60.0)
            reasons["rate"] = (
                f"message rate {inputs.message_rate:.1f}/s is {ratio:.0%} of its normal {inputs.normal_rate:.1f}/s"
            )
    if inputs.reconnects:
        p["reconnects"] = min(30.0, 10.0 * inputs.reconnects)
        reasons["reconnects"] = f"{inputs.reconnects} reconnects in the window"
    if inputs.gaps or inputs.unrepaired_gaps:
        p["gaps"] = min(30.0, 5.0 * inputs.gaps + 15.0 * inputs.unrepaired_gaps)
        reasons["gaps"] = f"{inputs.gaps} trade gaps ({inputs.unrepaired_gaps} unrepaired) in the window"
    if inputs.book_resyncs:
        p["book_resyncs"] = min(20.0, 5.0 * inputs.book_resyncs)
        reasons["book_resyncs"] = f"{inputs.book_resyncs} book resyncs in the window"
    if inputs.latency_p50_ms > 500:
        p["latency"] = min(30.0, (inputs.latency_p50_ms - 500) / 100)
        reasons["latency"] = f"exchange latency p50 {inputs.latency_p50_ms:.0f} ms"
    if inputs.open_circuits:
        p["circuits"] = min(30.0, 15.0 * len(inputs.open_circuits))
        reasons["circuits"] = "circuit open: " + ", ".join(inputs.open_circuits)
    if inputs.diverging:
        p["divergence"] = 10.0
        reasons["divergence"] = "prices diverge from " + ", ".join(inputs.diverging)
    p = {k: round(v, 1) for k, v in p.items() if v > 0}
    total = sum(p.values())
    value = int(max(0.0, min(100.0, round(100.0 - total))))
    if not p:
        return Score(value, "ok", p)
    worst = max(p, key=lambda k: p[k])
    others = [k for k in sorted(p, key=lambda k: -p[k]) if k != worst]
    reason = reasons[worst] + (f" (also: {', '.join(others)})" if others else "")
    return Score(value, reason, p)
