"""Feed health: scores, exchange latency, circuit breakers, cross-exchange consistency and failover.

See docs/feed-health.md for the formulas and rules.
"""

from marketdata.collector.health.breaker import Breakers, CircuitBreaker, CircuitOpen
from marketdata.collector.health.latency import LatencyHistogram

__all__ = ["Breakers", "CircuitBreaker", "CircuitOpen", "LatencyHistogram"]
