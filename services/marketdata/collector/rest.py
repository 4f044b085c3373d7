"""REST calls for trade backfill and book snapshots, honouring the exchanges' rate limits.

Every call draws its documented request weight from one budget per rate limit (a Binance market's
REQUEST_WEIGHT per minute; Bybit's 600 requests per 5 s per IP, shared by spot and linear) before it
is made, so backfills and book snapshots together stay inside the exchange's limit; a call waits
for weight rather than being refused. A 429 or 418 (Binance's ban) with Retry-After blocks every
further call to that host until the time has passed: hammering on after a ban only lengthens it.
Each call also goes through its circuit breaker (collector/health/breaker.py): per feed, one for
backfills and one for book snapshots; a call refused by its breaker or a ban takes no weight.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from marketdata.collector import binance, bybit
from marketdata.collector.health.breaker import Breakers, CircuitBreaker, CircuitOpen
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import common_pb2

DEFAULT_RETRY_AFTER_S = 5.0

# Request weight per minute per IP: Binance's REQUEST_WEIGHT (exchangeInfo rateLimits); Bybit counts
# requests (weight 1 each), 600 in any 5 s window, for every category on the host.
WEIGHT_PER_MINUTE = {
    MarketKey.BINANCE_SPOT: 6000,
    MarketKey.BINANCE_FUTURES: 2400,
    MarketKey.BYBIT_SPOT: 7200,
    MarketKey.BYBIT_LINEAR: 7200,
}
BYBIT_WINDOW_REQUESTS = 600
BYBIT_RECENT_TRADES_WEIGHT = 1


def budget_key(market: MarketKey) -> str:
    """One budget per rate limit: each Binance market has its own; Bybit's markets share one."""
    return market.value if market.is_binance else "bybit"


class WeightBudget:
    """A token bucket of request weight: `per_minute` refills evenly, bursts up to `burst` (default
    half of a minute's weight)."""

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(burst if burst is not None else per_minute / 2.0, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.waited_s = 0.0
        self.taken = 0.0

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
                self.taken += weight
                return
            wait = (weight - self.tokens) / self.rate
            self.waited_s += wait
            await asyncio.sleep(wait)


def market_budgets() -> dict[str, WeightBudget]:
    out: dict[str, WeightBudget] = {}
    for market, per_minute in WEIGHT_PER_MINUTE.items():
        burst = None if market.is_binance else BYBIT_WINDOW_REQUESTS
        out.setdefault(budget_key(market), WeightBudget(per_minute, burst))
    return out


class RestError(Exception):
    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ExchangeRest:
    def __init__(
        self, session: aiohttp.ClientSession, settings: Settings, breakers: Breakers | None = None
    ) -> None:
        self._session = session
        self._settings = settings
        self._blocked_until: dict[str, float] = {}
        self.breakers = breakers if breakers is not None else Breakers()
        self.budgets = market_budgets()

    def budget(self, market: MarketKey) -> WeightBudget:
        """The request-weight budget `market`'s calls draw from (shared as the exchange shares it)."""
        return self.budgets[budget_key(market)]

    def breaker(self, market: MarketKey, call: str) -> CircuitBreaker:
        return self.breakers.get(market, call)

    def base_url(self, market: MarketKey) -> str:
        s = self._settings
        return {
            MarketKey.BINANCE_SPOT: s.binance_spot_rest_url,
            MarketKey.BINANCE_FUTURES: s.binance_futures_rest_url,
            MarketKey.BYBIT_SPOT: s.bybit_rest_url,
            MarketKey.BYBIT_LINEAR: s.bybit_rest_url,
        }[market]

    async def get_json(
        self,
        base: str,
        path: str,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
        breaker: CircuitBreaker | None = None,
        weight: tuple[MarketKey, float] | None = None,
    ) -> Any:
        """GET base+path as JSON. `weight` (market, request weight) is drawn from that market's
        budget before the call is made (waiting for it when the budget is spent)."""
        blocked = self._blocked_until.get(base, 0.0) - time.monotonic()
        if breaker is None or blocked > 0:  # a host ban already opened the breaker that met it
            if blocked <= 0:
                await self._take(weight, breaker)
            return await self._get_json(base, path, params, headers)
        try:
            breaker.allow()
        except CircuitOpen as exc:
            raise RestError(str(exc), 0, exc.wait_s) from None
        try:
            await self._take(weight, breaker)
            body = await self._get_json(base, path, params, headers)
        except RestError as exc:
            ban = exc.status in (418, 429)
            breaker.failure(f"{path}: {exc}", exc.retry_after, ban=ban)
            raise
        except asyncio.CancelledError:
            breaker.abandon()  # e.g. a backfill timed out while waiting for weight or the answer
            raise
        breaker.success()
        return body

    async def _take(self, weight: tuple[MarketKey, float] | None, breaker: CircuitBreaker | None) -> None:
        if weight is None:
            return
        market, amount = weight
        await self.budget(market).take(amount)
        if breaker is not None:
            breaker.weight_used += amount

    async def _get_json(
        self, base: str, path: str, params: dict[str, str], headers: dict[str, str] | None
    ) -> Any:
        blocked = self._blocked_until.get(base, 0.0) - time.monotonic()
        if blocked > 0:
            raise RestError(f"{base} asked us to wait; {blocked:.1f} s left", 429, blocked)
        url = base + path
        try:
            async with self._session.get(
                url, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                body = await response.read()
                if response.status in (418, 429):
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    self._blocked_until[base] = time.monotonic() + retry_after
                    raise RestError(
                        f"{path} answered {response.status}; waiting {retry_after:.1f} s",
                        response.status,
                        retry_after,
                    )
                if response.status >= 400:
                    raise RestError(
                        f"{path} answered {response.status}: {body[:200].decode(errors='replace')}",
                        response.status,
                    )
        except aiohttp.ClientError as exc:
            raise RestError(f"{path}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise RestError(f"{path}: timed out") from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RestError(f"{path}: answer is not JSON: {body[:200]!r}") from None

    async def binance_trades_from(
        self, instrument: InstrumentId, from_id: int, limit: int
    ) -> list[tuple[int, common_pb2.Trade]]:
        """Trades with id >= from_id where the endpoint allows it, else the most recent page."""
        market = instrument.market
        api_key = self._settings.binance_api_key
        path = binance.rest_trades_path(market, with_api_key=bool(api_key))
        params = {"symbol": instrument.symbol}
        headers = None
        if path.endswith("historicalTrades"):
            params["fromId"] = str(from_id)
            params["limit"] = str(min(limit, binance.rest_page_limit(market, path)))
            if market == MarketKey.BINANCE_FUTURES:
                headers = {"X-MBX-APIKEY": api_key}
        else:
            params["limit"] = "1000"
        body = await self.get_json(
            self.base_url(market),
            path,
            params,
            headers,
            self.breaker(market, "rest_backfill"),
            (market, binance.rest_trades_weight(path)),
        )
        return binance.parse_rest_trades(market, body, time.time_ns())

    async def bybit_recent_trades(self, instrument: InstrumentId) -> list[common_pb2.Trade]:
        market = instrument.market
        params = {
            "category": bybit.category(market),
            "symbol": instrument.symbol,
            "limit": str(bybit.recent_trades_limit(market)),
        }
        body = await self.get_json(
            self.base_url(market),
            "/v5/market/recent-trade",
            params,
            breaker=self.breaker(market, "rest_backfill"),
            weight=(market, BYBIT_RECENT_TRADES_WEIGHT),
        )
        return bybit.parse_recent_trades(body, time.time_ns())


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
