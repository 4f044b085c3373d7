"""Binance spot and USD-M futures: stream URLs, trade frames, and REST trades for backfill.

Protocol facts (shared/reference/collectors.md §3a, §3b):
- combined streams `/stream?streams=a@trade/b@trade` wrap payloads as {"stream": ..., "data": ...};
- USD-M streams are routed since 2026-04: `@trade` lives on `/public`; a legacy or wrong route
  acknowledges and then stays silent, so the path matters;
- `m` is "buyer is maker": true means the taker SOLD;
- the server pings (spot every 20 s, futures every 3 min) and cuts connections at 24 h; since
  2026-05 spot announces `serverShutdown` first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marketdata.collector.frames import (
    IGNORED,
    Frame,
    FrameError,
    FrameKind,
    Trade,
    decimal_text,
    integer,
    json_object,
)
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import common_pb2

SELL = common_pb2.SIDE_SELL
BUY = common_pb2.SIDE_BUY
WEBSOCKET = common_pb2.TRADE_SOURCE_WEBSOCKET
REST_BACKFILL = common_pb2.TRADE_SOURCE_REST_BACKFILL

# Binance allows 1024 streams per connection; peers cap at 200, the older limit, which keeps URLs
# short and a reconnect's blast radius small.
MAX_STREAMS_PER_CONNECTION = 200


def stream_url(market: MarketKey, ws_base: str, instruments: Sequence[InstrumentId]) -> str:
    """The combined-stream URL carrying the raw `@trade` stream of each instrument."""
    streams = "/".join(f"{i.symbol.lower()}@trade" for i in instruments)
    route = "/public" if market == MarketKey.BINANCE_FUTURES else ""
    return f"{ws_base}{route}/stream?streams={streams}"


class BinanceFrameParser:
    """Parses frames of one connection; `instruments` maps the exchange symbol to our id."""

    def __init__(self, market: MarketKey, instruments: Mapping[str, InstrumentId]) -> None:
        self._market = market
        self._by_symbol = dict(instruments)

    def parse(self, text: str | bytes, receive_ns: int) -> Frame:
        message = json_object(text)
        data = message.get("data", message)
        if type(data) is not dict:
            raise FrameError("`data` is not an object")
        event = data.get("e")
        if event == "trade":
            return self._trades(data, receive_ns, aggregated=False)
        if event == "aggTrade":
            return self._trades(data, receive_ns, aggregated=True)
        if event == "serverShutdown":
            return Frame(FrameKind.SHUTDOWN, detail="serverShutdown")
        if "result" in message and "id" in message:
            return Frame(FrameKind.SUBSCRIBED)
        if "error" in message or ("code" in message and "msg" in message):
            return Frame(FrameKind.REJECTED, detail=str(message.get("error") or message.get("msg")))
        return IGNORED

    def _trades(self, data: dict[str, Any], receive_ns: int, aggregated: bool) -> Frame:
        instrument = self._by_symbol.get(data.get("s"))  # type: ignore[arg-type]
        if instrument is None:
            # A stream we did not ask for (or a symbol typo on the exchange side): not ours to keep.
            return IGNORED
        try:
            trade_id = data["a"] if aggregated else data["t"]
            maker = data["m"]
            trade = Trade(
                trade_id=str(integer(trade_id, "t")),
                price=decimal_text(data["p"], "p"),
                size=decimal_text(data["q"], "q"),
                side=SELL if maker is True else BUY,
                exchange_time_ms=integer(data["T"], "T"),
                receive_time_ns=receive_ns,
                event_time_ms=integer(data.get("E", 0), "E"),
                source=WEBSOCKET,
                execution_type=data.get("X", "") or "",
                aggregated=aggregated,
            )
        except KeyError as exc:
            raise FrameError(f"trade frame lacks field {exc.args[0]}") from None
        if type(maker) is not bool:
            raise FrameError(f"m is not a boolean: {maker!r}")
        return Frame(FrameKind.TRADES, instrument, [trade])


def rest_trades_path(market: MarketKey, *, with_api_key: bool) -> str:
    """Backfill endpoint: historicalTrades (by id) where allowed, else the recent-trades list.

    Spot `historicalTrades` needs no key; USD-M `historicalTrades` needs X-MBX-APIKEY, so without a
    key USD-M falls back to `/fapi/v1/trades` (the last 1000 trades, no fromId).
    """
    if market == MarketKey.BINANCE_SPOT:
        return "/api/v3/historicalTrades"
    return "/fapi/v1/historicalTrades" if with_api_key else "/fapi/v1/trades"


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
