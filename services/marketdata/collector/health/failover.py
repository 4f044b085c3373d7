"""Failover composite keys: `best:SYMBOL` follows the healthiest feed collecting SYMBOL.

Rule (docs/feed-health.md), evaluated every health tick, never sooner than MARKETDATA_FAILOVER_HOLD_S
after the last switch:
1. First selection: the highest score; ties go to the preferred feed (binance-spot, binance-futures,
   bybit-spot, bybit-linear: Binance is the market's reference).
2. Switch to the best other feed when it scores at least MARKETDATA_FAILOVER_MARGIN points above the
   followed one.
3. Switch back to a more preferred feed when it is healthy again (score >= 80) and within the margin
   of the followed one.
Every switch is recorded (time, from, to, why) and returned with the answers it affects.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Mapping

from marketdata.collector.bus import BusMetrics, Subscription
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2

PREFIX = "best:"
PREFERENCE = (MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES, MarketKey.BYBIT_SPOT, MarketKey.BYBIT_LINEAR)
HEALTHY = 80
MAX_SWITCHES = 100


def rank(instrument: InstrumentId) -> int:
    return PREFERENCE.index(instrument.market)


class Composite:
    def __init__(self, symbol: str, candidates: Collection[InstrumentId]) -> None:
        self.key = PREFIX + symbol
        self.symbol = symbol
        self.candidates = sorted(candidates, key=rank)
        self.selected: InstrumentId | None = None
        self.switched_at = 0.0  # monotonic
        self.switches: deque[collector_pb2.FailoverSwitch] = deque(maxlen=MAX_SWITCHES)
        self.version = 0

    def _switch(self, to: InstrumentId, why: str, now: float) -> None:
        self.switches.append(
            collector_pb2.FailoverSwitch(
                time_ns=time.time_ns(),
                from_feed=self.selected.market.value if self.selected is not None else "",
                to_feed=to.market.value,
                reason=why,
            )
        )
        self.selected = to
        self.switched_at = now
        self.version += 1

    def update(
        self,
        scores: Mapping[MarketKey, int],
        reasons: Mapping[MarketKey, str],
        margin: float,
        hold_s: float,
        now: float,
    ) -> None:
        def s(i: InstrumentId) -> int:
            return scores.get(i.market, 0)

        best = max(self.candidates, key=lambda i: (s(i), -rank(i)))
        current = self.selected
        if current is None:
            self._switch(best, f"first selection: {best.market.value} scores {s(best)}", now)
            return
        if now - self.switched_at < hold_s:
            return
        if best != current and s(best) >= s(current) + margin:
            why = (
                f"{best.market.value} scores {s(best)} vs {s(current)} of {current.market.value} "
                f"({reasons.get(current.market, '')})"
            )
            self._switch(best, why, now)
            return
        for other in self.candidates:
            if rank(other) >= rank(current):
                break
            if s(other) >= HEALTHY and s(other) > s(current) - margin:
                self._switch(
                    other,
                    f"preferred {other.market.value} healthy again (score {s(other)} vs {s(current)})",
                    now,
                )
                return

    def to_proto(self) -> collector_pb2.Failover:
        return collector_pb2.Failover(
            composite=self.key,
            selected=self.selected.to_proto() if self.selected is not None else None,
            switches=list(self.switches),
        )


def composites_of(instruments: Collection[InstrumentId]) -> dict[str, Composite]:
    by_symbol: dict[str, list[InstrumentId]] = {}
    for i in instruments:
        by_symbol.setdefault(i.symbol, []).append(i)
    return {PREFIX + symbol: Composite(symbol, c) for symbol, c in by_symbol.items()}


def resolve(composites: Mapping[str, Composite], key: str) -> Composite:
    """The composite for `best:SYMBOL`; ValueError naming what is collected otherwise."""
    composite = composites.get(key.strip())
    if composite is None:
        known = ", ".join(sorted(composites))
        if not key.startswith(PREFIX):
            raise ValueError(f"{key!r} is not a composite key (best:SYMBOL); composites: {known}")
        raise ValueError(f"{key[len(PREFIX) :]!r} is not collected on any feed; composites: {known}")
    return composite


class CompositeSubscription(Subscription):
    """A StreamTrades subscription to explicit instruments plus composites: a composite's batches come
    from its selected feed only, and the first batch after a (re)selection carries the Failover."""

    def __init__(
        self,
        instruments: Collection[InstrumentId],
        composites: Collection[Composite],
        capacity: int,
        metrics: BusMetrics,
    ) -> None:
        super().__init__(None, capacity, metrics)
        self._explicit = frozenset(instruments)
        self._composites = list(composites)
        self._seen = {c.key: -1 for c in self._composites}
        self._notice: bytes = b""
        self.notices = 0

    def wants(self, instrument: InstrumentId) -> bool:
        wanted = instrument in self._explicit
        for c in self._composites:
            if c.selected == instrument:
                wanted = True
                if self._seen[c.key] != c.version:
                    self._seen[c.key] = c.version
                    self._notice += collector_pb2.StreamTradesResponse(
                        failover=c.to_proto()
                    ).SerializeToString()
        return wanted

    def put(self, instrument: InstrumentId, message: bytes) -> None:
        if self._notice:
            # Serialized messages concatenate as a merge: one response with the batch and the failover.
            message, self._notice = self._notice + message, b""
            self.notices += 1
        super().put(instrument, message)


SubscriptionFactory = Callable[[], Subscription]
