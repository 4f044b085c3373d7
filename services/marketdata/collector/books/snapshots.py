"""Binance REST depth snapshots, throttled by request weight.

Snapshots are the expensive part of keeping books: `/api/v3/depth?limit=1000` costs 50 of spot's
6000 weight a minute, `/fapi/v1/depth?limit=1000` 20 of USD-M's 2400. After a reconnect every book
of a connection wants one at once (the "snapshot storm" of cryptofeed#558/#613), so requests queue
behind a token bucket holding a share of each market's weight (MARKETDATA_BOOK_SNAPSHOT_WEIGHT_SHARE)
and at most a few run at a time. 429/418 answers block the host for Retry-After through the same
ExchangeRest the trade backfill uses, so both respect one ban.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from marketdata.collector import binance
from marketdata.collector.rest import ExchangeRest
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey

# Binance's REQUEST_WEIGHT per minute per IP (exchangeInfo rateLimits).
WEIGHT_PER_MINUTE = {MarketKey.BINANCE_SPOT: 6000, MarketKey.BINANCE_FUTURES: 2400}
CONCURRENT_SNAPSHOTS = 4


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    last_update_id: int
    bids: list[Any]
    asks: list[Any]
    exchange_time_ms: int
    receive_ns: int
    limit: int


class WeightBudget:
    """A token bucket of request weight: `per_minute` refills evenly, bursts up to half of it."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(per_minute / 2.0, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.waited_s = 0.0

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, weight: float) -> None:
        weight = min(weight, self.capacity)
        while True:
            self._refill()
            if self.tokens >= weight:
                self.tokens -= weight
                return
            wait = (weight - self.tokens) / self.rate
            self.waited_s += wait
            await asyncio.sleep(wait)


class SnapshotFetcher:
    def __init__(self, rest: ExchangeRest, settings: Settings) -> None:
        self._rest = rest
        self._settings = settings
        share = settings.book_snapshot_weight_share
        self.budgets = {m: WeightBudget(w * share) for m, w in WEIGHT_PER_MINUTE.items()}
        self._running = {m: asyncio.Semaphore(CONCURRENT_SNAPSHOTS) for m in WEIGHT_PER_MINUTE}
        self.requests = 0

    def limit_for(self, market: MarketKey) -> int:
        """The configured depth, rounded up to a value the endpoint takes (USD-M takes a fixed set)."""
        wanted = self._settings.book_snapshot_limit
        allowed = binance.depth_limits(market)
        if market == MarketKey.BINANCE_SPOT:
            return min(wanted, allowed[-1])
        return next((n for n in allowed if n >= wanted), allowed[-1])

    async def fetch(self, instrument: InstrumentId) -> DepthSnapshot:
        """One snapshot; raises RestError (with retry_after on 429/418) or FrameError."""
        market = instrument.market
        limit = self.limit_for(market)
        await self.budgets[market].take(binance.depth_weight(market, limit))
        async with self._running[market]:
            self.requests += 1
            body = await self._rest.get_json(
                self._rest.base_url(market),
                binance.depth_path(market),
                {"symbol": instrument.symbol, "limit": str(limit)},
                breaker=self._rest.breaker(market, "rest_snapshot"),
            )
        last, bids, asks, time_ms = binance.parse_depth_snapshot(body)
        return DepthSnapshot(last, bids, asks, time_ms, time.time_ns(), limit)
