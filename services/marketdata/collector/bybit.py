"""Bybit v5 spot and linear: endpoints, subscribe/ping messages, publicTrade frames, recent-trade REST.

Protocol facts (shared/reference/collectors.md §3c):
- `/v5/public/spot` and `/v5/public/linear`; subscribe with {"op":"subscribe","args":[...]}, spot at
  most 10 args per request (re-subscriptions after a reconnect too);
- the client keeps the connection alive with {"op":"ping"} every 20 s;
- publicTrade `S` is the taker side; one push may carry up to 1024 trades and be split into
  several messages with the same `seq`; ids are UUIDs on linear, so gaps cannot be seen from ids;
- `/v5/market/recent-trade` returns only the last 60 (spot) or 1000 (linear) trades;
- books: `orderbook.{1,50,200,1000}.<SYMBOL>` sends a snapshot after subscribing, then deltas whose
  `u` rises by one; a new snapshot (or `u`=1 after a service restart) replaces the book.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from marketdata.collector.frames import (
    IGNORED,
    INT64_MAX,
    INT64_MIN,
    PONG,
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

WEBSOCKET = common_pb2.TRADE_SOURCE_WEBSOCKET
REST_BACKFILL = common_pb2.TRADE_SOURCE_REST_BACKFILL
_SIDES: dict[str, common_pb2.Side] = {"Buy": common_pb2.SIDE_BUY, "Sell": common_pb2.SIDE_SELL}

SPOT_ARGS_PER_REQUEST = 10
# Linear has no documented args limit, but one request per 10 topics keeps acks small and failures
# local; the connection itself carries up to this many instruments.
MAX_TOPICS_PER_CONNECTION = 100
TOPIC_PREFIX = "publicTrade."
BOOK_DEPTHS = (1, 50, 200, 1000)


def book_topic(symbol: str, depth: int) -> str:
    return f"orderbook.{depth}.{symbol}"


def _side(value: object, name: str) -> common_pb2.Side:
    side = _SIDES.get(value) if isinstance(value, str) else None
    if side is None:
        raise FrameError(f"{name} is not Buy or Sell: {value!r}")
    return side


def category(market: MarketKey) -> str:
    return "spot" if market == MarketKey.BYBIT_SPOT else "linear"


def stream_url(market: MarketKey, ws_base: str) -> str:
    return f"{ws_base}/v5/public/{category(market)}"


def subscribe_requests(
    instruments: Sequence[InstrumentId],
    first_req_id: int,
    books: Sequence[InstrumentId] = (),
    book_depth: int = 200,
) -> list[str]:
    """Subscribe requests of at most SPOT_ARGS_PER_REQUEST topics each (the spot limit): the trade
    topic of every instrument, then the order-book topic of every instrument in `books`."""
    requests = []
    topics = [TOPIC_PREFIX + i.symbol for i in instruments]
    topics += [book_topic(i.symbol, book_depth) for i in books]
    for n, start in enumerate(range(0, len(topics), SPOT_ARGS_PER_REQUEST)):
        chunk = topics[start : start + SPOT_ARGS_PER_REQUEST]
        requests.append(
            orjson.dumps({"req_id": f"sub-{first_req_id + n}", "op": "subscribe", "args": chunk}).decode()
        )
    return requests


def ping_request(req_id: int) -> str:
    return f'{{"req_id":"ping-{req_id}","op":"ping"}}'


def resubscribe_requests(topic: str, req_id: int) -> list[str]:
    """Unsubscribe and subscribe one topic again: Bybit answers a subscription with a fresh snapshot."""
    return [
        orjson.dumps({"req_id": f"unsub-{req_id}", "op": "unsubscribe", "args": [topic]}).decode(),
        orjson.dumps({"req_id": f"resub-{req_id}", "op": "subscribe", "args": [topic]}).decode(),
    ]


class BybitFrameParser:
    """Parses frames of one connection; `instruments` maps the exchange symbol to our id, `books`
    the symbols whose order-book topic (of `book_depth`) the connection carries.

    A well-formed publicTrade frame goes through the C fast path (`_fastframes.bybit_trades`: the
    JSON scanned once into trade wire bytes); it declines anything else, which this class's Python
    code parses, and rejects with the error that names the field. `fast=False` keeps to the Python
    code (the reference the fast path is tested against)."""

    def __init__(
        self,
        market: MarketKey,
        instruments: Mapping[str, InstrumentId],
        books: Mapping[str, InstrumentId] | None = None,
        book_depth: int = 200,
        fast: bool = True,
    ) -> None:
        self._market = market
        # the C fast path (FrameParser.fast: the reader calls it directly)
        self.fast = fastframes.bybit_trades if fast and fastframes is not None else None
        self._by_topic = {TOPIC_PREFIX + symbol: i for symbol, i in instruments.items()}
        self.fast_keys = self._by_topic
        self._books = {book_topic(symbol, book_depth): i for symbol, i in (books or {}).items()}
        self._decimals: set[str] = set()  # prices and sizes already checked (remember_decimal)

    def parse(self, text: str | bytes, receive_ns: int) -> Frame:
        frame = fast_trades_frame(self.fast, self._by_topic, text, receive_ns)
        if frame is not None:
            return frame
        message = json_object(text)
        topic = message.get("topic")
        if topic is not None:
            instrument = self._by_topic.get(topic) if type(topic) is str else None
            if instrument is None:
                if self._books and type(topic) is str and topic.startswith("orderbook."):
                    return self._book(topic, message, receive_ns)
                return IGNORED
            trades = self._trades(message, receive_ns)
            return Frame(FrameKind.TRADES, instrument, TradeRun.of(trades, int_ids=False))
        op = message.get("op")
        if op in ("ping", "pong"):
            return PONG
        if op == "subscribe":
            if message.get("success") is True:
                return Frame(FrameKind.SUBSCRIBED)
            return Frame(FrameKind.REJECTED, detail=str(message.get("ret_msg", "subscribe refused")))
        return IGNORED

    def _book(self, topic: str, message: dict[str, Any], receive_ns: int) -> Frame:
        instrument = self._books.get(topic)
        if instrument is None:
            return Frame(FrameKind.BOOK_INVALID, detail=f"order-book topic without a book: {topic!r}")
        data, kind, ts = message.get("data"), message.get("type"), message.get("ts", 0)
        if type(data) is not dict:
            problem = "orderbook `data` is not an object"
        elif kind not in ("snapshot", "delta"):
            problem = f"orderbook type is neither snapshot nor delta: {kind!r}"
        elif not is_int64(ts):
            problem = f"ts is not an integer: {ts!r}"
        else:
            update_id, bids, asks = data.get("u"), data.get("b"), data.get("a")
            seq, cts = data.get("seq", 0), message.get("cts", ts)
            if not is_int64(update_id) or update_id < 1:
                problem = f"u is not an update id: {update_id!r}"
            elif type(bids) is not list or type(asks) is not list:
                problem = "b/a are not lists of levels"
            else:
                update = BookUpdate(
                    update_id,
                    update_id,
                    -1,
                    bids,
                    asks,
                    cts if is_int64(cts) else ts,
                    ts,
                    receive_ns,
                    snapshot=kind == "snapshot",
                    cross_sequence=seq if is_int64(seq) else 0,
                )
                return Frame(FrameKind.BOOK, instrument, book=update)
        return Frame(FrameKind.BOOK_INVALID, instrument, detail=problem)

    def _trades(self, message: dict[str, Any], receive_ns: int) -> list[common_pb2.Trade]:
        rows = message.get("data")
        if type(rows) is not list:
            raise FrameError("publicTrade `data` is not a list")
        event_ms = message.get("ts", 0)
        if not is_int64(event_ms):
            raise FrameError(f"ts is not an integer: {event_ms!r}")
        # The hot loop (up to 1024 rows a frame): checks are inlined and names hoisted into locals;
        # the helpers in frames.py are only called to raise the error that names the field.
        sides, trade_type, known = _SIDES, Trade, self._decimals
        low, high = INT64_MIN, INT64_MAX
        trades: list[common_pb2.Trade] = []
        append = trades.append
        for row in rows:
            if type(row) is not dict:
                raise FrameError("publicTrade row is not an object")
            try:
                side_text = row["S"]
                trade_id = row["i"]
                price = row["p"]
                size = row["v"]
                time_ms = row["T"]
            except KeyError as exc:
                raise FrameError(f"publicTrade row lacks field {exc.args[0]}") from None
            get = row.get
            sequence = get("seq", 0)
            tick_direction = get("L")
            side = sides.get(side_text) if type(side_text) is str else None
            if side is None:
                side = _side(side_text, "S")
            if type(trade_id) is not str or not trade_id:
                raise FrameError(f"i is not a trade id: {trade_id!r}")
            if type(price) is not str or price not in known:
                remember_decimal(known, price, "p")
            if type(size) is not str or size not in known:
                remember_decimal(known, size, "v")
            if type(time_ms) is not int or not low <= time_ms <= high:
                time_ms = integer(time_ms, "T")
            if type(sequence) is not int or not low <= sequence <= high:
                sequence = integer(sequence, "seq")
            # Fields left at their default are not passed: each keyword costs the constructor time;
            # linear's `L` goes in the constructor too (a keyword is ~5x cheaper than a later setattr).
            if tick_direction is None:
                trade = trade_type(
                    trade_id=trade_id,
                    price=price,
                    size=size,
                    side=side,
                    exchange_time_ms=time_ms,
                    receive_time_ns=receive_ns,
                    event_time_ms=event_ms,
                    source=WEBSOCKET,
                    cross_sequence=sequence,
                )
            else:
                if type(tick_direction) is not str:
                    optional_text(tick_direction, "L")  # raises the FrameError that names it
                trade = trade_type(
                    trade_id=trade_id,
                    price=price,
                    size=size,
                    side=side,
                    exchange_time_ms=time_ms,
                    receive_time_ns=receive_ns,
                    event_time_ms=event_ms,
                    source=WEBSOCKET,
                    cross_sequence=sequence,
                    tick_direction=tick_direction,
                )
            if get("BT") is True:
                trade.block_trade = True
            if get("RPI") is True:
                trade.rpi = True
            append(trade)
        return trades


def recent_trades_limit(market: MarketKey) -> int:
    return 60 if market == MarketKey.BYBIT_SPOT else 1000


def parse_recent_trades(body: object, receive_ns: int) -> list[common_pb2.Trade]:
    """`/v5/market/recent-trade` rows as Trades, oldest first; FrameError on an error answer."""
    if not isinstance(body, dict):
        raise FrameError("recent-trade response is not an object")
    if body.get("retCode") != 0:
        raise FrameError(f"recent-trade refused: retCode {body.get('retCode')} {body.get('retMsg')}")
    result = body.get("result")
    rows = result.get("list") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise FrameError("recent-trade response has no result.list")
    trades = []
    for row in rows:
        if not isinstance(row, dict):
            raise FrameError("recent-trade row is not an object")
        try:
            side = _side(row["side"], "side")
            exec_id = row["execId"]
            if type(exec_id) is not str or not exec_id:
                raise FrameError(f"execId is not a trade id: {exec_id!r}")
            trades.append(
                Trade(
                    trade_id=exec_id,
                    price=decimal_text(row["price"], "price"),
                    size=decimal_text(row["size"], "size"),
                    side=side,
                    exchange_time_ms=integer(row["time"], "time"),
                    receive_time_ns=receive_ns,
                    source=REST_BACKFILL,
                    block_trade=row.get("isBlockTrade") is True,
                    rpi=row.get("isRPITrade") is True,
                    cross_sequence=integer(row.get("seq", 0) or 0, "seq"),
                )
            )
        except KeyError as exc:
            raise FrameError(f"recent-trade row lacks field {exc.args[0]}") from None
    trades.sort(key=lambda t: (t.exchange_time_ms, t.cross_sequence))
    return trades
