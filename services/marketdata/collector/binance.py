"""Binance spot and USD-M futures: stream URLs, trade frames, and REST trades for backfill.

Protocol facts (shared/reference/collectors.md §3a, §3b):
- combined streams `/stream?streams=a@trade/b@trade` wrap payloads as {"stream": ..., "data": ...};
- USD-M streams are routed since 2026-04: `@trade` lives on `/public`; a legacy or wrong route
  acknowledges and then stays silent, so the path matters;
- `m` is "buyer is maker": true means the taker SOLD;
- the server pings (spot every 20 s, futures every 3 min) and cuts connections at 24 h; since
  2026-05 spot announces `serverShutdown` first;
- books: diff depth `<symbol>@depth@100ms` (USD-M on `/public` too; USD-M events carry `pu`, the
  previous event's `u`) plus REST snapshots `/api/v3/depth`, `/fapi/v1/depth`, whose request weight
  grows with `limit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from marketdata.collector.frames import (
    IGNORED,
    INT64_MAX,
    INT64_MIN,
    BookUpdate,
    Frame,
    FrameError,
    FrameKind,
    Trade,
    decimal_text,
    fast_trades_frame,
    integer,
    is_int64,
    json_object,
    optional_text,
    remember_decimal,
)
from marketdata.collector.trade_runs import TradeRun, fastframes
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import common_pb2

SELL = common_pb2.SIDE_SELL
BUY = common_pb2.SIDE_BUY
WEBSOCKET = common_pb2.TRADE_SOURCE_WEBSOCKET
REST_BACKFILL = common_pb2.TRADE_SOURCE_REST_BACKFILL
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

# Binance allows 1024 streams per connection; peers cap at 200, the older limit, which keeps URLs
# short and a reconnect's blast radius small.
MAX_STREAMS_PER_CONNECTION = 200
DEPTH_STREAM = "@depth@100ms"


def stream_url(
    market: MarketKey,
    ws_base: str,
    instruments: Sequence[InstrumentId],
    books: Sequence[InstrumentId] = (),
) -> str:
    """The combined-stream URL carrying the raw `@trade` stream of each instrument and the diff
    depth stream of each instrument in `books`."""
    names = [f"{i.symbol.lower()}@trade" for i in instruments]
    names += [f"{i.symbol.lower()}{DEPTH_STREAM}" for i in books]
    route = "/public" if market == MarketKey.BINANCE_FUTURES else ""
    return f"{ws_base}{route}/stream?streams={'/'.join(names)}"


class BinanceFrameParser:
    """Parses frames of one connection; `instruments` maps the exchange symbol to our id, `books`
    the symbols whose depth stream the connection carries.

    A well-formed trade or aggTrade frame goes through the C fast path (`_fastframes.binance_trade`:
    the JSON scanned once into the trade's wire bytes); it declines anything else, which this class's
    Python code parses, and rejects with the error that names the field. `fast=False` keeps to the
    Python code (the reference the fast path is tested against)."""

    def __init__(
        self,
        market: MarketKey,
        instruments: Mapping[str, InstrumentId],
        books: Mapping[str, InstrumentId] | None = None,
        fast: bool = True,
    ) -> None:
        self._market = market
        # the C fast path (FrameParser.fast: the reader calls it directly)
        self.fast = fastframes.binance_trade if fast and fastframes is not None else None
        self._by_symbol = dict(instruments)
        self.fast_keys = self._by_symbol
        self._books = dict(books or {})
        self._futures = market == MarketKey.BINANCE_FUTURES
        self._decimals: set[str] = set()  # prices and sizes already checked (remember_decimal)

    def parse(self, text: str | bytes, receive_ns: int) -> Frame:
        frame = fast_trades_frame(self.fast, self._by_symbol, text, receive_ns)
        if frame is not None:
            return frame
        try:
            message = _loads(text)
        except _JSONDecodeError:
            message = json_object(text)  # raises the FrameError that says why
        if type(message) is not dict:
            raise FrameError("frame is not a JSON object")
        data = message.get("data", message)
        if type(data) is not dict:
            raise FrameError("`data` is not an object")
        event = data.get("e")
        if event == "trade":
            return self._trades(data, receive_ns, aggregated=False)
        if event == "aggTrade":
            return self._trades(data, receive_ns, aggregated=True)
        if event == "depthUpdate" and self._books:
            return self._depth(data, receive_ns)
        if event == "serverShutdown":
            return Frame(FrameKind.SHUTDOWN, detail="serverShutdown")
        if "result" in message and "id" in message:
            return Frame(FrameKind.SUBSCRIBED)
        if "error" in message or ("code" in message and "msg" in message):
            return Frame(FrameKind.REJECTED, detail=str(message.get("error") or message.get("msg")))
        return IGNORED

    def _trades(self, data: dict[str, Any], receive_ns: int, aggregated: bool) -> Frame:
        # The hot path (one call per trade): checks are inlined; the helpers in frames.py are only
        # called to raise the error that names the field.
        symbol = data.get("s")
        instrument = self._by_symbol.get(symbol) if type(symbol) is str else None
        if instrument is None:
            # A stream we did not ask for (or a symbol typo on the exchange side): not ours to keep.
            return IGNORED
        try:
            trade_id = data["a"] if aggregated else data["t"]
            price = data["p"]
            size = data["q"]
            time_ms = data["T"]
            maker = data["m"]
        except KeyError as exc:
            raise FrameError(f"trade frame lacks field {exc.args[0]}") from None
        event_ms = data.get("E", 0)
        if type(trade_id) is not int or not INT64_MIN <= trade_id <= INT64_MAX:
            trade_id = integer(trade_id, "t")
        known = self._decimals
        if type(price) is not str or price not in known:
            remember_decimal(known, price, "p")
        if type(size) is not str or size not in known:
            remember_decimal(known, size, "q")
        if type(time_ms) is not int or not INT64_MIN <= time_ms <= INT64_MAX:
            time_ms = integer(time_ms, "T")
        if type(event_ms) is not int or not INT64_MIN <= event_ms <= INT64_MAX:
            event_ms = integer(event_ms, "E")
        if type(maker) is not bool:
            raise FrameError(f"m is not a boolean: {maker!r}")
        # Fields left at their default are not passed: each keyword costs the constructor time;
        # USD-M's `X` goes in the constructor too (a keyword is ~5x cheaper than a later setattr).
        execution_type = data.get("X")
        if execution_type is None:
            trade = Trade(
                trade_id=str(trade_id),
                price=price,
                size=size,
                side=SELL if maker else BUY,
                exchange_time_ms=time_ms,
                receive_time_ns=receive_ns,
                event_time_ms=event_ms,
                source=WEBSOCKET,
            )
        else:
            trade = Trade(
                trade_id=str(trade_id),
                price=price,
                size=size,
                side=SELL if maker else BUY,
                exchange_time_ms=time_ms,
                receive_time_ns=receive_ns,
                event_time_ms=event_ms,
                source=WEBSOCKET,
                execution_type=optional_text(execution_type, "X"),
            )
        if aggregated:
            trade.aggregated = True
        return Frame(FrameKind.TRADES, instrument, TradeRun.of([trade], int_ids=True))

    def _depth(self, data: dict[str, Any], receive_ns: int) -> Frame:
        symbol = data.get("s")
        instrument = self._books.get(symbol) if type(symbol) is str else None
        if instrument is None:
            return Frame(
                FrameKind.BOOK_INVALID, detail=f"depthUpdate for a symbol without a book: {symbol!r}"
            )
        first, last, bids, asks = data.get("U"), data.get("u"), data.get("b"), data.get("a")
        prev = data.get("pu", -1) if self._futures else -1
        event_ms = data.get("E", 0)
        if not is_int64(first) or not is_int64(last) or first > last or first < 0:
            problem = f"U/u are not an update-id range: {first!r}, {last!r}"
        elif not is_int64(prev):
            problem = f"pu is not an update id: {prev!r}"
        elif self._futures and "pu" not in data:
            problem = "USD-M depthUpdate lacks pu"
        elif type(bids) is not list or type(asks) is not list:
            problem = "b/a are not lists of levels"
        elif not is_int64(event_ms):
            problem = f"E is not an integer: {event_ms!r}"
        else:
            exchange_ms = data.get("T", event_ms)
            update = BookUpdate(
                first,
                last,
                prev,
                bids,
                asks,
                exchange_ms if is_int64(exchange_ms) else event_ms,
                event_ms,
                receive_ns,
            )
            return Frame(FrameKind.BOOK, instrument, book=update)
        return Frame(FrameKind.BOOK_INVALID, instrument, detail=problem)


def rest_trades_path(market: MarketKey, *, with_api_key: bool) -> str:
    """Backfill endpoint: historicalTrades (by id) where allowed, else the recent-trades list.

    Spot `historicalTrades` needs no key; USD-M `historicalTrades` needs X-MBX-APIKEY, so without a
    key USD-M falls back to `/fapi/v1/trades` (the last 1000 trades, no fromId).
    """
    if market == MarketKey.BINANCE_SPOT:
        return "/api/v3/historicalTrades"
    return "/fapi/v1/historicalTrades" if with_api_key else "/fapi/v1/trades"


# Request weight of the backfill endpoints (Binance spot rest-api.md; USD-M "Recent Trades List"
# and "Old Trades Lookup"): the page size does not change it.
REST_TRADES_WEIGHT = {
    "/api/v3/historicalTrades": 25,
    "/api/v3/trades": 25,
    "/fapi/v1/historicalTrades": 20,
    "/fapi/v1/trades": 5,
}


def rest_trades_weight(path: str) -> int:
    """Request weight of one backfill page from `path` (rest_trades_path)."""
    return REST_TRADES_WEIGHT[path]


def rest_page_limit(market: MarketKey, path: str) -> int:
    if path == "/fapi/v1/historicalTrades":
        return 500
    return 1000


def parse_rest_trades(market: MarketKey, body: object, receive_ns: int) -> list[tuple[int, common_pb2.Trade]]:
    """Rows of historicalTrades/trades as (id, Trade), ascending by id; FrameError on bad rows."""
    # USD-M REST returns only order-book trades, which the stream tags X=MARKET.
    execution_type = "MARKET" if market == MarketKey.BINANCE_FUTURES else ""
    if not isinstance(body, list):
        raise FrameError(f"trades response is not a list: {str(body)[:200]}")
    out: list[tuple[int, common_pb2.Trade]] = []
    for row in body:
        if not isinstance(row, dict):
            raise FrameError("trades row is not an object")
        try:
            trade_id = integer(row["id"], "id")
            maker = row["isBuyerMaker"]
            out.append(
                (
                    trade_id,
                    Trade(
                        trade_id=str(trade_id),
                        price=decimal_text(row["price"], "price"),
                        size=decimal_text(row["qty"], "qty"),
                        side=SELL if maker is True else BUY,
                        exchange_time_ms=integer(row["time"], "time"),
                        receive_time_ns=receive_ns,
                        source=REST_BACKFILL,
                        execution_type=execution_type,
                    ),
                )
            )
        except KeyError as exc:
            raise FrameError(f"trades row lacks field {exc.args[0]}") from None
    out.sort(key=lambda pair: pair[0])
    return out


def depth_path(market: MarketKey) -> str:
    return "/api/v3/depth" if market == MarketKey.BINANCE_SPOT else "/fapi/v1/depth"


def depth_weight(market: MarketKey, limit: int) -> int:
    """Request weight of a REST depth snapshot (spot: rest-api.md; USD-M: the depth endpoint's table)."""
    if market == MarketKey.BINANCE_SPOT:
        if limit <= 100:
            return 5
        if limit <= 500:
            return 25
        if limit <= 1000:
            return 50
        return 250
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


def depth_limits(market: MarketKey) -> tuple[int, ...]:
    """The `limit` values the depth endpoint takes (spot takes any value up to 5000)."""
    if market == MarketKey.BINANCE_SPOT:
        return (5, 10, 20, 50, 100, 500, 1000, 5000)
    return (5, 10, 20, 50, 100, 500, 1000)


def parse_depth_snapshot(body: object) -> tuple[int, list[Any], list[Any], int]:
    """(lastUpdateId, bids, asks, exchange time ms or 0) of a depth snapshot; FrameError if it is not one."""
    if not isinstance(body, dict):
        raise FrameError(f"depth snapshot is not an object: {str(body)[:200]}")
    last = body.get("lastUpdateId")
    bids, asks = body.get("bids"), body.get("asks")
    if not is_int64(last) or last < 0:
        raise FrameError(f"depth snapshot lastUpdateId is not an update id: {last!r}")
    if type(bids) is not list or type(asks) is not list:
        raise FrameError("depth snapshot bids/asks are not lists")
    time_ms = body.get("T", body.get("E", 0))
    return last, bids, asks, time_ms if is_int64(time_ms) else 0
