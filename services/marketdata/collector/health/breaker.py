"""Circuit breakers on exchange calls: WebSocket connects, REST book snapshots, REST backfills.

CLOSED: calls go through; `failures` consecutive failures open it. A 429 or 418 opens it at once.
OPEN: no call is made until the open period has passed: the exchange's Retry-After after a 429/418
(a 418 ban's length), otherwise `open_s`, doubled on each failed probe up to `max_open_s`.
HALF_OPEN: one probe call is let through; success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from marketdata.core.instruments import MarketKey

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half_open"}
CALLS = ("ws_connect", "rest_snapshot", "rest_backfill")


class CircuitOpen(Exception):
    """A call refused because its breaker is open."""

    def __init__(self, breaker: CircuitBreaker, wait_s: float) -> None:
        super().__init__(
            f"circuit {breaker.call} of {breaker.feed} open for {wait_s:.1f} s more: {breaker.reason}"
        )
        self.wait_s = wait_s


@dataclass(slots=True)
class CircuitBreaker:
    feed: str
    call: str
    failures: int = 5
    open_s: float = 5.0
    max_open_s: float = 300.0
    state: int = CLOSED
    consecutive: int = 0
    opened: int = 0  # times it opened
    rejected: int = 0  # calls refused while open
    reason: str = ""
    open_until: float = 0.0  # monotonic
    weight_used: float = 0.0  # REST request weight drawn by this call's requests (collector/rest.py)
    _period: float = 0.0
    _probing: bool = False
    clock: object = field(default=time.monotonic, repr=False)

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator,no-any-return]

    def wait_s(self) -> float:
        """Seconds until a call may be made (0 when closed or a probe is due)."""
        if self.state == OPEN:
            left = self.open_until - self._now()
            if left > 0:
                return left
            self.state = HALF_OPEN
            self._probing = False
        if self.state == HALF_OPEN and self._probing:
            return 0.05  # a probe is out; wait for its answer
        return 0.0

    def allow(self) -> None:
        """Raise CircuitOpen unless a call may go now (in HALF_OPEN, the caller becomes the probe)."""
        wait = self.wait_s()
        if wait > 0:
            self.rejected += 1
            raise CircuitOpen(self, wait)
        if self.state == HALF_OPEN:
            self._probing = True

    def abandon(self) -> None:
        """A call given up before its answer (cancelled): it proves nothing, so a probe may go again."""
        self._probing = False

    def success(self) -> None:
        self.consecutive = 0
        self._probing = False
        if self.state != CLOSED:
            self.state = CLOSED
            self._period = 0.0
            self.reason = f"closed after a successful probe ({self.reason})" if self.reason else ""

    def failure(self, reason: str, retry_after: float | None = None, ban: bool = False) -> None:
        """A failed call; `ban` (429/418) opens at once for at least `retry_after`."""
        self.consecutive += 1
        self._probing = False
        if self.state == HALF_OPEN or ban or self.consecutive >= self.failures:
            if self.state == HALF_OPEN:
                self._period = min(self.max_open_s, max(self._period, self.open_s) * 2)
            else:
                self._period = self._period or self.open_s
            # An exchange that said how long to wait (429/418 Retry-After, a ban's length) is taken at
            # its word; otherwise the breaker's own period.
            period = retry_after if ban and retry_after else self._period
            if self.state != OPEN:
                self.opened += 1
            self.state = OPEN
            self.open_until = max(self.open_until, self._now() + period)
            self.reason = f"{reason} ({self.consecutive} consecutive failures)"

    def to_dict(self) -> dict[str, object]:
        return {"call": self.call, "state": STATE_NAMES[self.state], "reason": self.reason}


class Breakers:
    """One breaker per (feed, call), created on first use with the configured limits."""

    def __init__(self, failures: int = 5, open_s: float = 5.0, max_open_s: float = 300.0) -> None:
        self._limits = (failures, open_s, max_open_s)
        self.all: dict[tuple[MarketKey, str], CircuitBreaker] = {}

    def get(self, market: MarketKey, call: str) -> CircuitBreaker:
        breaker = self.all.get((market, call))
        if breaker is None:
            failures, open_s, max_open_s = self._limits
            breaker = self.all[(market, call)] = CircuitBreaker(
                market.value, call, failures=failures, open_s=open_s, max_open_s=max_open_s
            )
        return breaker

    def of(self, market: MarketKey) -> list[CircuitBreaker]:
        return [b for (m, _), b in self.all.items() if m == market]
