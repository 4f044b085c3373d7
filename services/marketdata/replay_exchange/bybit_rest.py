"""Bybit v5 REST market endpoints served from the trade tapes. Errors are HTTP 200 with retCode != 0,
as Bybit answers them."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange.faults import FaultSpec
from marketdata.replay_exchange.specs import InstrumentSpec
from marketdata.replay_exchange.state import ReplayState
from marketdata.replay_exchange.trades import Trade

_CATEGORIES = {"spot": MarketKey.BYBIT_SPOT, "linear": MarketKey.BYBIT_LINEAR}
# recent-trade limits: spot 1..60 (default 60), linear 1..1000 (default 500).
_TRADE_LIMITS = {MarketKey.BYBIT_SPOT: (60, 60), MarketKey.BYBIT_LINEAR: (500, 1000)}
_DIGITS = re.compile(r"^[0-9]{1,9}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BybitError(Exception):
    def __init__(self, ret_msg: str, ret_code: int = 10001) -> None:
        super().__init__(ret_msg)
        self.ret_code, self.ret_msg = ret_code, ret_msg


def routes(state: ReplayState) -> list[web.RouteDef]:
    return [
        web.get("/v5/market/recent-trade", _wrap(state, _recent_trades)),
        web.get("/v5/market/orderbook", _wrap(state, _orderbook)),
        web.get("/v5/market/instruments-info", _wrap(state, _instruments_info)),
        web.get("/v5/market/time", _server_time),
    ]


def _envelope(ret_code: int, ret_msg: str, result: Any) -> bytes:
    return orjson.dumps(
        {
            "retCode": ret_code,
            "retMsg": ret_msg,
            "result": result,
            "retExtInfo": {},
            "time": time.time_ns() // 1_000_000,
        }
    )


def _respond(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _wrap(state: ReplayState, endpoint: Callable[[ReplayState, web.Request, MarketKey], Any]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            market = _category(request)
        except BybitError as exc:
            return _respond(_envelope(exc.ret_code, exc.ret_msg, {}))
        state.rest_calls[market.value] += 1
        fault = state.faults.take_rest(market)
        if fault is not None:
            state.faults.record(fault, state.uptime(), applied_to=request.path)
            return _fault_response(fault)
        try:
            return _respond(_envelope(0, "OK", endpoint(state, request, market)))
        except BybitError as exc:
            return _respond(_envelope(exc.ret_code, exc.ret_msg, {}))

    return handle


async def _server_time(request: web.Request) -> web.StreamResponse:
    now_ns = time.time_ns()
    result = {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}
    return _respond(_envelope(0, "OK", result))


def _fault_response(fault: FaultSpec) -> web.Response:
    if fault.status == 500:
        return _respond(_envelope(10016, "Server error.", {}), 500)
    headers = {"Retry-After": str(fault.retry_after)}
    return _respond(_envelope(10006, "Too many visits!", {}), fault.status, headers)


def _category(request: web.Request) -> MarketKey:
    market = _CATEGORIES.get(request.query.get("category", ""))
    if market is None:
        raise BybitError("Illegal category")
    return market


def _recent_trades(state: ReplayState, request: web.Request, market: MarketKey) -> Any:
    symbol = request.query.get("symbol", "")
    tape = state.find_tape(market, symbol) if symbol and symbol == symbol.upper() else None
    if tape is None:
        raise BybitError(
            f"params error: symbol invalid: {symbol!r}" if symbol else "params error: symbol invalid"
        )
    default, maximum = _TRADE_LIMITS[market]
    limit_text = request.query.get("limit", "")
    if limit_text and (not _DIGITS.match(limit_text) or int(limit_text) < 1):
        raise BybitError(f"params error: limit must be an integer in [1, {maximum}], got {limit_text!r}")
    limit = min(int(limit_text), maximum) if limit_text else default
    rows = [_trade_row(tape.instrument.symbol, t) for t in reversed(tape.latest(limit))]
    return {"category": _category_name(market), "list": rows}


# orderbook limits: spot 1..200 (default 1), linear 1..500 (default 25).
_BOOK_LIMITS = {MarketKey.BYBIT_SPOT: (1, 200), MarketKey.BYBIT_LINEAR: (25, 500)}


def _orderbook(state: ReplayState, request: web.Request, market: MarketKey) -> Any:
    symbol = request.query.get("symbol", "")
    default, maximum = _BOOK_LIMITS[market]
    limit_text = request.query.get("limit", "")
    if limit_text and (not _DIGITS.match(limit_text) or not 1 <= int(limit_text) <= maximum):
        raise BybitError(f"params error: limit must be an integer in [1, {maximum}], got {limit_text!r}")
    limit = int(limit_text) if limit_text else default
    body = state.depth.bybit_snapshot(market, symbol, limit) if symbol and symbol == symbol.upper() else None
    if body is None:
        raise BybitError(
            f"params error: symbol invalid: {symbol!r}" if symbol else "params error: symbol invalid"
        )
    return body


def _trade_row(symbol: str, trade: Trade) -> dict[str, Any]:
    return {
        "execId": str(trade.trade_id),
        "symbol": symbol,
        "price": trade.price,
        "size": trade.qty,
        "side": "Buy" if trade.is_buy else "Sell",
        "time": str(trade.time_ms),
        "isBlockTrade": False,
        "isRPITrade": False,
        "seq": str(trade.bybit_seq),
    }


def _instruments_info(state: ReplayState, request: web.Request, market: MarketKey) -> Any:
    wanted = request.query.get("symbol")
    symbols = [s for s in state.symbols(market) if wanted is None or s == wanted]
    specs = [t.spec for s in symbols if (t := state.find_tape(market, s)) is not None]
    rows = [_linear_row(s) if market == MarketKey.BYBIT_LINEAR else _spot_row(s) for s in specs]
    return {"category": _category_name(market), "list": rows, "nextPageCursor": ""}


def _category_name(market: MarketKey) -> str:
    return "spot" if market == MarketKey.BYBIT_SPOT else "linear"


def _fixed(value: Any, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _spot_row(spec: InstrumentSpec) -> dict[str, Any]:
    qd = spec.qty_decimals
    return {
        "symbol": spec.instrument.symbol,
        "baseCoin": spec.base_asset,
        "quoteCoin": spec.quote_asset,
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": _fixed(spec.step, qd),
            # Real spot listings give basePrecision only; qtyStep is added so one field name works
            # for both categories.
            "qtyStep": _fixed(spec.step, qd),
            "quotePrecision": "0.00000001",
            "minOrderQty": _fixed(spec.step, qd),
            "maxOrderQty": _fixed(spec.typical_qty * 10000, qd),
            "minOrderAmt": "1",
            "maxOrderAmt": "2000000",
        },
        "priceFilter": {"tickSize": _fixed(spec.tick, spec.price_decimals)},
    }


def _linear_row(spec: InstrumentSpec) -> dict[str, Any]:
    pd, qd = spec.price_decimals, spec.qty_decimals
    return {
        "symbol": spec.instrument.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": spec.base_asset,
        "quoteCoin": spec.quote_asset,
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(pd),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {
            "minPrice": _fixed(spec.tick, pd),
            "maxPrice": _fixed(spec.start_price * 100, pd),
            "tickSize": _fixed(spec.tick, pd),
        },
        "lotSizeFilter": {
            "maxOrderQty": _fixed(spec.typical_qty * 100000, qd),
            "minOrderQty": _fixed(spec.step, qd),
            "qtyStep": _fixed(spec.step, qd),
            "postOnlyMaxOrderQty": _fixed(spec.typical_qty * 100000, qd),
            "maxMktOrderQty": _fixed(spec.typical_qty * 10000, qd),
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": spec.quote_asset,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
    }
