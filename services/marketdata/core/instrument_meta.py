"""Instrument metadata from the exchanges' REST APIs: the price tick size of each instrument.

- Binance spot `/api/v3/exchangeInfo?symbols=[...]` and USD-M `/fapi/v1/exchangeInfo`: the
  `PRICE_FILTER` filter's `tickSize`.
- Bybit `/v5/market/instruments-info?category=spot|linear&symbol=X`: `priceFilter.tickSize`.

Tick sizes are returned exactly as the exchange prints them ("0.01000000", "0.10"): the decimals
tell how the exchange prints prices, and footprint rows are printed the same way.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson

from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey

__all__ = ["MetadataError", "fetch_tick_sizes", "rest_base"]

_PLAIN = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,18})?")
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class MetadataError(RuntimeError):
    """The exchange did not tell the tick size (unreachable, error answer, unknown symbol)."""


def rest_base(settings: Settings, market: MarketKey) -> str:
    return {
        MarketKey.BINANCE_SPOT: settings.binance_spot_rest_url,
        MarketKey.BINANCE_FUTURES: settings.binance_futures_rest_url,
        MarketKey.BYBIT_SPOT: settings.bybit_rest_url,
        MarketKey.BYBIT_LINEAR: settings.bybit_rest_url,
    }[market]


async def _get(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> Any:
    try:
        async with session.get(url, params=params, timeout=_TIMEOUT) as response:
            body = await response.read()
            if response.status != 200:
                raise MetadataError(f"{url} answered {response.status}: {body[:200]!r}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MetadataError(f"{url}: {type(exc).__name__}: {exc}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MetadataError(f"{url}: answer is not JSON: {body[:200]!r}") from None


def _tick(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _PLAIN.fullmatch(value) or not any(c in "123456789" for c in value):
        raise MetadataError(f"{where}: tick size {value!r} is not a positive decimal")
    return value


async def _binance(
    session: aiohttp.ClientSession, base: str, market: MarketKey, symbols: list[str]
) -> dict[str, str]:
    if market == MarketKey.BINANCE_SPOT:
        url = f"{base}/api/v3/exchangeInfo"
        params = {"symbols": orjson.dumps(symbols).decode()}
    else:
        url, params = f"{base}/fapi/v1/exchangeInfo", {}
    body = await _get(session, url, params)
    out: dict[str, str] = {}
    for row in body.get("symbols", []) if isinstance(body, dict) else []:
        symbol = row.get("symbol")
        if symbol not in symbols:
            continue
        for item in row.get("filters", []):
            if item.get("filterType") == "PRICE_FILTER":
                out[symbol] = _tick(item.get("tickSize"), f"{url} {symbol}")
    return out


async def _bybit(
    session: aiohttp.ClientSession, base: str, market: MarketKey, symbols: list[str]
) -> dict[str, str]:
    category = "spot" if market == MarketKey.BYBIT_SPOT else "linear"
    url = f"{base}/v5/market/instruments-info"
    out: dict[str, str] = {}
    for symbol in symbols:
        body = await _get(session, url, {"category": category, "symbol": symbol})
        if not isinstance(body, dict) or body.get("retCode") != 0:
            raise MetadataError(f"{url} {symbol}: {str(body)[:200]}")
        for row in body.get("result", {}).get("list", []):
            if row.get("symbol") == symbol:
                out[symbol] = _tick(row.get("priceFilter", {}).get("tickSize"), f"{url} {symbol}")
    return out


async def fetch_tick_sizes(
    settings: Settings,
    instruments: Iterable[InstrumentId],
    session: aiohttp.ClientSession | None = None,
) -> dict[InstrumentId, str]:
    """Tick size per instrument; raises MetadataError when any market cannot be asked or an instrument
    is missing from its answer."""
    wanted = list(dict.fromkeys(instruments))
    by_market: dict[MarketKey, list[str]] = {}
    for instrument in wanted:
        by_market.setdefault(instrument.market, []).append(instrument.symbol)
    own = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        calls = [
            (_binance if market.is_binance else _bybit)(client, rest_base(settings, market), market, symbols)
            for market, symbols in by_market.items()
        ]
        answers = await asyncio.gather(*calls)
    finally:
        if own:
            await client.close()
    out: dict[InstrumentId, str] = {}
    for (market, symbols), ticks in zip(by_market.items(), answers, strict=True):
        for symbol in symbols:
            if symbol not in ticks:
                raise MetadataError(f"{market.value}:{symbol}: the exchange lists no tick size for it")
            out[InstrumentId(market, symbol)] = ticks[symbol]
    return out
