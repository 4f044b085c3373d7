"""Binance REST depth snapshots, throttled by request weight.

Snapshots are the expensive part of keeping books: `/api/v3/depth?limit=1000` costs 50 of spot's
6000 weight a minute, `/fapi/v1/depth?limit=1000` 20 of USD-M's 2400. After a reconnect every book
of a connection wants one at once (the "snapshot storm" of cryptofeed#558/#613), so requests queue
behind a token bucket holding a share of each market's weight (MARKETDATA_BOOK_SNAPSHOT_WEIGHT_SHARE)
and at most a few run at a time; each also draws its weight from the market's whole budget in
ExchangeRest, which trade backfills draw from too. 429/418 answers block the host for Retry-After
through the same ExchangeRest, so both respect one ban.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from marketdata.collector import binance
from marketdata.collector.rest import WEIGHT_PER_MINUTE, ExchangeRest, WeightBudget
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey

# WeightBudget lives in collector/rest.py (one budget per rate limit); re-exported for its users here.
__all__ = ["BOOK_MARKETS", "CONCURRENT_SNAPSHOTS", "DepthSnapshot", "SnapshotFetcher", "WeightBudget"]

CONCURRENT_SNAPSHOTS = 4
BOOK_MARKETS = (MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES)


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    last_update_id: int
    bids: list[Any]
    asks: list[Any]
    exchange_time_ms: int
    receive_ns: int
    limit: int


class SnapshotFetcher:
    def __init__(self, rest: ExchangeRest, settings: Settings) -> None:
        self._rest = rest
        self._settings = settings
        share = settings.book_snapshot_weight_share
        # the snapshots' own share, on top of the market's whole budget they share with backfills
        self.budgets = {m: WeightBudget(WEIGHT_PER_MINUTE[m] * share) for m in BOOK_MARKETS}
        self._running = {m: asyncio.Semaphore(CONCURRENT_SNAPSHOTS) for m in BOOK_MARKETS}
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
        weight = binance.depth_weight(market, limit)
        await self.budgets[market].take(weight)
        async with self._running[market]:
            self.requests += 1
            body = await self._rest.get_json(
                self._rest.base_url(market),
                binance.depth_path(market),
                {"symbol": instrument.symbol, "limit": str(limit)},
                breaker=self._rest.breaker(market, "rest_snapshot"),
                weight=(market, weight),
            )
        last, bids, asks, time_ms = binance.parse_depth_snapshot(body)
        return DepthSnapshot(last, bids, asks, time_ms, time.time_ns(), limit)
