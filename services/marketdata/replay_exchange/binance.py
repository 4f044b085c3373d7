"""Binance public WebSocket protocol facts: stream names, USD-M routes and message shapes
(see shared/reference/collectors.md sections 3a and 3b)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange.trades import Trade

SPOT = "spot"
PUBLIC = "public"  # USD-M high-frequency route: @trade, @depth*, @bookTicker, @rpiDepth
MARKET = "market"  # USD-M route of everything else: @aggTrade, @kline_*, @markPrice, ...

_SPOT_KLINE = r"kline_(?:1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M)(?:@\+08:00)?"
_FUTURES_KLINE = r"(?:kline|continuousKline)_(?:1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M)"
_SPOT_KINDS = re.compile(
    r"^(?P<symbol>[a-z0-9]+)@(?P<kind>trade|aggTrade|depth(?:5|10|20)?(?:@100ms|@1000ms)?|bookTicker"
    rf"|{_SPOT_KLINE}|miniTicker|ticker|ticker_(?:1h|4h|1d)|avgPrice)$"
)
_SPOT_ALL = re.compile(r"^!(?:miniTicker|ticker|ticker_1h|ticker_4h|ticker_1d)@arr$")
_FUTURES_KINDS = re.compile(
    r"^(?P<symbol>[a-z0-9_]+)@(?P<kind>trade|aggTrade|depth(?:5|10|20)?(?:@0ms|@100ms|@250ms|@500ms)?"
    rf"|bookTicker|markPrice(?:@1s)?|{_FUTURES_KLINE}|miniTicker|ticker|forceOrder|rpiDepth@500ms"
    r"|compositeIndex|assetIndex)$"
)
_FUTURES_ALL = re.compile(
    r"^!(?:bookTicker|markPrice@arr(?:@1s)?|miniTicker@arr|ticker@arr|forceOrder@arr|contractInfo"
    r"|assetIndex@arr)$"
)
_PUBLIC_KINDS = ("trade", "depth", "bookTicker", "rpiDepth")

VALID_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    symbol: str | None  # upper-case exchange symbol; None for all-market streams (`!ticker@arr`)
    kind: str  # "trade", "aggTrade", "depth@100ms", ...
    route: str  # SPOT, or the USD-M route that serves it


def parse_stream(name: str, market: MarketKey) -> Stream | None:
    """The stream, or None when Binance would answer "Invalid request: invalid stream"."""
    if market == MarketKey.BINANCE_SPOT:
        if match := _SPOT_KINDS.match(name):
            return Stream(name, match["symbol"].upper(), match["kind"], SPOT)
        if _SPOT_ALL.match(name):
            return Stream(name, None, name, SPOT)
        return None
    if match := _FUTURES_KINDS.match(name):
        kind = match["kind"]
        return Stream(name, match["symbol"].upper(), kind, _futures_route(kind))
    if _FUTURES_ALL.match(name):
        return Stream(name, None, name, PUBLIC if name == "!bookTicker" else MARKET)
    return None


def _futures_route(kind: str) -> str:
    return PUBLIC if kind.startswith(_PUBLIC_KINDS) else MARKET


def trade_stream(symbol: str) -> str:
    return f"{symbol.lower()}@trade"


def trade_payload(market: MarketKey, symbol: str, trade: Trade) -> bytes:
    """The raw `@trade` event; `m` is buyer-is-maker, so an aggressor sell has m=true."""
    if market == MarketKey.BINANCE_SPOT:
        return orjson.dumps(
            {
                "e": "trade",
                "E": trade.time_ms,
                "s": symbol,
                "t": trade.trade_id,
                "p": trade.price,
                "q": trade.qty,
                "T": trade.time_ms,
                "m": not trade.is_buy,
                "M": True,
            }
        )
    return orjson.dumps(
        {
            "e": "trade",
            "E": trade.time_ms,
            "T": trade.time_ms,
            "s": symbol,
            "t": trade.trade_id,
            "p": trade.price,
            "q": trade.qty,
            "X": "MARKET",
            "m": not trade.is_buy,
        }
    )


def agg_trade_stream(symbol: str) -> str:
    return f"{symbol.lower()}@aggTrade"


def agg_trade_payload(market: MarketKey, symbol: str, trade: Trade) -> bytes:
    """The `@aggTrade` event for one generated trade: each trade is its own aggregate (a = f = l = the
    trade id), which keeps aggregate and raw streams countable one to one for benchmarks."""
    event: dict[str, object] = {
        "e": "aggTrade",
        "E": trade.time_ms,
        "s": symbol,
        "a": trade.trade_id,
        "p": trade.price,
        "q": trade.qty,
        "f": trade.trade_id,
        "l": trade.trade_id,
        "T": trade.time_ms,
        "m": not trade.is_buy,
    }
    if market == MarketKey.BINANCE_SPOT:
        event["M"] = True
    return orjson.dumps(event)


def combined(stream: str, payload: bytes) -> bytes:
    """The combined-stream wrapper, built by concatenation so `data` stays byte-identical."""
    return b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"


_COMBINED_HEAD = '{"stream":"'
_DATA_KEY = '","data":'


def split_combined(text: str) -> tuple[str, str] | None:
    """(stream, exact payload text) of a combined frame as Binance writes it, else None."""
    if not text.startswith(_COMBINED_HEAD) or not text.endswith("}"):
        return None
    end = text.find('"', len(_COMBINED_HEAD))
    if end < 0 or not text.startswith(_DATA_KEY, end):
        return None
    return text[len(_COMBINED_HEAD) : end], text[end + len(_DATA_KEY) : -1]


def derive_stream(payload: Any) -> str | None:
    """Best-effort stream name of a raw (unwrapped) event, for recordings made on `/ws`."""
    if not isinstance(payload, dict):
        return None
    symbol = payload.get("s")
    event = payload.get("e")
    if event == "serverShutdown":
        return "!serverShutdown"
    if not isinstance(symbol, str):
        return None
    base = symbol.lower()
    if event in ("trade", "aggTrade", "markPriceUpdate", "forceOrder"):
        return f"{base}@{'markPrice' if event == 'markPriceUpdate' else event}"
    if event == "depthUpdate":
        return f"{base}@depth"
    if event == "kline" and isinstance(payload.get("k"), dict):
        return f"{base}@kline_{payload['k'].get('i')}"
    if event is None and {"u", "b", "B", "a", "A"} <= payload.keys():
        return f"{base}@bookTicker"
    return None


def server_shutdown(now_ms: int) -> bytes:
    return orjson.dumps({"e": "serverShutdown", "E": now_ms})


SERVER_SHUTDOWN_STREAM = "!serverShutdown"


def result(value: Any, request_id: Any) -> bytes:
    return orjson.dumps({"result": value, "id": request_id})


def error(code: int, msg: str, request_id: Any = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": request_id})
