"""REST calls for trade backfill, honouring the exchanges' rate limits.

A 429 or 418 (Binance's ban) with Retry-After blocks every further call to that host until the
time has passed: hammering on after a ban only lengthens it. Each call also goes through its
circuit breaker (collector/health/breaker.py): per feed, one for backfills and one for book snapshots.
"""

from __future__ import annotations

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
    ) -> Any:
        blocked = self._blocked_until.get(base, 0.0) - time.monotonic()
        if breaker is None or blocked > 0:  # a host ban already opened the breaker that met it
            return await self._get_json(base, path, params, headers)
        try:
            breaker.allow()
        except CircuitOpen as exc:
            raise RestError(str(exc), 0, exc.wait_s) from None
        try:
            body = await self._get_json(base, path, params, headers)
        except RestError as exc:
            ban = exc.status in (418, 429)
            breaker.failure(f"{path}: {exc}", exc.retry_after, ban=ban)
            raise
        breaker.success()
        return body

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
            self.base_url(market), path, params, headers, self.breaker(market, "rest_backfill")
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
        )
        return bybit.parse_recent_trades(body, time.time_ns())


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
