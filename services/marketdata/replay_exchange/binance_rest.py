"""Binance REST endpoints (spot `/api/v3/...`, USD-M `/fapi/v1/...`) served from the trade tapes and
the books (depth snapshots), with Binance's error bodies, request weights and X-MBX-USED-WEIGHT-1M
headers."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange.faults import FaultSpec
from marketdata.replay_exchange.specs import BINANCE_SPOT_DECIMALS, InstrumentSpec
from marketdata.replay_exchange.state import ReplayState
from marketdata.replay_exchange.trades import Tape, Trade

_DIGITS = re.compile(r"^[0-9]{1,20}$")
Endpoint = Callable[[web.Request, MarketKey], Any]
Weight = int | Callable[[web.Request], int]
# USD-M depth takes these limits only; spot takes any up to 5000.
_FUTURES_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def routes(state: ReplayState) -> list[web.RouteDef]:
    spot, futures = MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES
    api = _Api(state)
    # (path, market, request weight, endpoint); weights as Binance lists them.
    table: list[tuple[str, MarketKey, Weight, Endpoint]] = [
        ("/api/v3/depth", spot, _depth_weight(spot), api.depth),
        ("/fapi/v1/depth", futures, _depth_weight(futures), api.depth),
        ("/api/v3/ping", spot, 1, api.ping),
        ("/api/v3/time", spot, 1, api.server_time),
        ("/api/v3/exchangeInfo", spot, 20, api.exchange_info),
        ("/api/v3/trades", spot, 25, api.recent_trades),
        ("/api/v3/historicalTrades", spot, 25, api.historical_trades),
        ("/fapi/v1/ping", futures, 1, api.ping),
        ("/fapi/v1/time", futures, 1, api.server_time),
        ("/fapi/v1/exchangeInfo", futures, 1, api.exchange_info),
        ("/fapi/v1/trades", futures, 5, api.recent_trades),
        ("/fapi/v1/historicalTrades", futures, 20, api.historical_trades),
    ]
    return [web.get(path, _wrap(state, market, weight, fn)) for path, market, weight, fn in table]


def _depth_weight(market: MarketKey) -> Callable[[web.Request], int]:
    """Depth snapshots weigh more the deeper they go (spot rest-api.md; USD-M depth endpoint)."""

    def weight(request: web.Request) -> int:
        text = request.query.get("limit", "")
        limit = int(text) if text.isdigit() else (100 if market == MarketKey.BINANCE_SPOT else 500)
        if market == MarketKey.BINANCE_SPOT:
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20

    return weight


def _wrap(state: ReplayState, market: MarketKey, weight: Weight, endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state.rest_calls[market.value] += 1
        meter = state.weights[market]
        used = meter.add(weight if isinstance(weight, int) else weight(request))
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if market == MarketKey.BINANCE_SPOT:
            headers["X-MBX-USED-WEIGHT"] = str(used)
        fault = state.faults.take_rest(market)
        if fault is not None:
            state.faults.record(fault, state.uptime(), applied_to=request.path)
            return _fault_response(fault, meter.limit, headers)
        if meter.over():
            headers["Retry-After"] = str(meter.seconds_to_reset())
            return _json(_too_many(meter.limit), 429, headers)
        try:
            return _json(endpoint(request, market), 200, headers)
        except BinanceError as exc:
            return _json({"code": exc.code, "msg": exc.msg}, exc.status, headers)

    return handle


def _json(body: Any, status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _too_many(limit: int) -> dict[str, Any]:
    return {
        "code": -1003,
        "msg": f"Too many requests; current limit of IP(127.0.0.1) is {limit} requests per minute. "
        "Please use the websocket for live updates to avoid polling the API.",
    }


def _fault_response(fault: FaultSpec, limit: int, headers: dict[str, str]) -> web.Response:
    if fault.status == 500:
        body: dict[str, Any] = {
            "code": -1001,
            "msg": "Internal error; unable to process your request. Please try again.",
        }
        return _json(body, 500, headers)
    headers["Retry-After"] = str(fault.retry_after)
    if fault.status == 418:
        until = time.time_ns() // 1_000_000 + fault.retry_after * 1000
        body = {
            "code": -1003,
            "msg": f"Way too many requests; IP(127.0.0.1) banned until {until}. "
            "Please use the websocket for live updates to avoid bans.",
        }
        return _json(body, 418, headers)
    return _json(_too_many(limit), 429, headers)


class _Api:
    def __init__(self, state: ReplayState) -> None:
        self.state = state

    def ping(self, request: web.Request, market: MarketKey) -> Any:
        return {}

    def server_time(self, request: web.Request, market: MarketKey) -> Any:
        return {"serverTime": time.time_ns() // 1_000_000}

    def recent_trades(self, request: web.Request, market: MarketKey) -> Any:
        tape = self._tape(request, market)
        limit = _limit(request, default=500, maximum=1000)
        return [_row(market, t) for t in tape.latest(limit)]

    def historical_trades(self, request: web.Request, market: MarketKey) -> Any:
        if market == MarketKey.BINANCE_FUTURES and not request.headers.get("X-MBX-APIKEY", "").strip():
            raise BinanceError(-2014, "API-key format invalid.", status=401)
        tape = self._tape(request, market)
        if market == MarketKey.BINANCE_SPOT:
            limit = _limit(request, default=500, maximum=1000)
        else:
            limit = _limit(request, default=100, maximum=500)
        from_id = _optional_digits(request, "fromId")
        trades = tape.latest(limit) if from_id is None else tape.from_id(from_id, limit)
        return [_row(market, t) for t in trades]

    def depth(self, request: web.Request, market: MarketKey) -> Any:
        symbol = _single(request, "symbol")
        if not symbol:
            raise BinanceError(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        requested = _optional_digits(request, "limit")
        if market == MarketKey.BINANCE_SPOT:
            limit = 100 if requested is None else requested
            if limit < 1:
                raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
            limit = min(limit, 5000)
        else:
            limit = 500 if requested is None else requested
            if limit not in _FUTURES_DEPTH_LIMITS:
                raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        body = self.state.depth.binance_snapshot(market, symbol, limit) if symbol == symbol.upper() else None
        if body is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return body

    def exchange_info(self, request: web.Request, market: MarketKey) -> Any:
        symbols = self.state.symbols(market)
        wanted = _wanted_symbols(request) if market == MarketKey.BINANCE_SPOT else None
        if wanted is not None:
            unknown = [s for s in wanted if s not in symbols]
            if unknown:
                raise BinanceError(-1121, "Invalid symbol.")
            symbols = wanted
        specs = [t.spec for s in symbols if (t := self.state.find_tape(market, s)) is not None]
        server_time = time.time_ns() // 1_000_000
        if market == MarketKey.BINANCE_SPOT:
            return {
                "timezone": "UTC",
                "serverTime": server_time,
                "rateLimits": [
                    _limit_row("REQUEST_WEIGHT", "MINUTE", 1, self.state.weights[market].limit),
                    _limit_row("ORDERS", "SECOND", 10, 100),
                    _limit_row("ORDERS", "DAY", 1, 200000),
                    _limit_row("RAW_REQUESTS", "MINUTE", 5, 61000),
                ],
                "exchangeFilters": [],
                "symbols": [_spot_symbol(s) for s in specs],
            }
        return {
            "timezone": "UTC",
            "serverTime": server_time,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                _limit_row("REQUEST_WEIGHT", "MINUTE", 1, self.state.weights[market].limit),
                _limit_row("ORDERS", "MINUTE", 1, 1200),
                _limit_row("ORDERS", "SECOND", 10, 300),
            ],
            "exchangeFilters": [],
            "assets": [],
            "symbols": [_futures_symbol(s) for s in specs],
        }

    def _tape(self, request: web.Request, market: MarketKey) -> Tape:
        symbol = _single(request, "symbol")
        if not symbol:
            raise BinanceError(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        tape = self.state.find_tape(market, symbol) if symbol == symbol.upper() else None
        if tape is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return tape


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BinanceError(-1101, "Duplicate values for a parameter detected.")
    return values[0] if values else None


def _optional_digits(request: web.Request, name: str) -> int | None:
    text = _single(request, name)
    if text is None or text == "":
        return None
    if not _DIGITS.match(text):
        raise BinanceError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(text)


def _limit(request: web.Request, *, default: int, maximum: int) -> int:
    value = _optional_digits(request, "limit")
    if value is None:
        return default
    if value < 1:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    return min(value, maximum)  # Binance serves at most `maximum` rows when asked for more


def _wanted_symbols(request: web.Request) -> list[str] | None:
    symbol = _single(request, "symbol")
    if symbol:
        return [symbol]
    symbols = _single(request, "symbols")
    if not symbols:
        return None
    try:
        value = orjson.loads(symbols)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise BinanceError(
            -1100,
            "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.",
        )
    return value


def _row(market: MarketKey, trade: Trade) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": trade.trade_id,
        "price": trade.price,
        "qty": trade.qty,
        "quoteQty": trade.quote_qty(),
        "time": trade.time_ms,
        "isBuyerMaker": not trade.is_buy,
    }
    if market == MarketKey.BINANCE_SPOT:
        row["isBestMatch"] = True
    return row


def _limit_row(kind: str, interval: str, number: int, limit: int) -> dict[str, Any]:
    return {"rateLimitType": kind, "interval": interval, "intervalNum": number, "limit": limit}


def _fixed(value: Any, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _spot_symbol(spec: InstrumentSpec) -> dict[str, Any]:
    d = BINANCE_SPOT_DECIMALS
    return {
        "symbol": spec.instrument.symbol,
        "status": "TRADING",
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": d,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": d,
        "quoteAssetPrecision": d,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _fixed(spec.tick, d),
                "maxPrice": _fixed(spec.start_price * 100, d),
                "tickSize": _fixed(spec.tick, d),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _fixed(spec.step, d),
                "maxQty": _fixed(spec.typical_qty * 100000, d),
                "stepSize": _fixed(spec.step, d),
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }


def _futures_symbol(spec: InstrumentSpec) -> dict[str, Any]:
    pd, qd = spec.price_decimals, spec.qty_decimals
    return {
        "symbol": spec.instrument.symbol,
        "pair": spec.instrument.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": spec.quote_asset,
        "pricePrecision": pd,
        "quantityPrecision": qd,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _fixed(spec.tick, pd),
                "maxPrice": _fixed(spec.start_price * 100, pd),
                "tickSize": _fixed(spec.tick, pd),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _fixed(spec.step, qd),
                "maxQty": _fixed(spec.typical_qty * 100000, qd),
                "stepSize": _fixed(spec.step, qd),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": _fixed(spec.step, qd),
                "maxQty": _fixed(spec.typical_qty * 10000, qd),
                "stepSize": _fixed(spec.step, qd),
            },
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }
