"""Exchange-frame parsers under random input: every frame is either parsed into values that can travel
(exact ASCII decimals, int64 times and ids, a known side) or refused with FrameError, which the
connection counts and skips. Anything else would end the connection (a reconnect and a backfill) on
one bad frame."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from marketdata.collector.binance import (
    BinanceFrameParser,
    parse_depth_snapshot,
    parse_rest_trades,
)
from marketdata.collector.bybit import BybitFrameParser, parse_recent_trades
from marketdata.collector.frames import Frame, FrameError, FrameKind
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import common_pb2

from .conftest import fuzz

ASCII_DECIMAL = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?\Z")
INT64 = range(-(2**63), 2**63)
SYMBOL = "BTCUSDT"


def parsers() -> list[BinanceFrameParser | BybitFrameParser]:
    out: list[BinanceFrameParser | BybitFrameParser] = []
    for market in MarketKey:
        ids = {SYMBOL: InstrumentId(market, SYMBOL)}
        if market.is_binance:
            out.append(BinanceFrameParser(market, ids, ids))
        else:
            out.append(BybitFrameParser(market, ids, ids, book_depth=50))
    return out


PARSERS = parsers()

# Values a hostile or broken exchange could put anywhere: wrong types, huge and negative numbers,
# floats, non-decimal and non-ASCII digit strings, nested containers.
nasty_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "NaN", "inf", "-1", "1e5", "0x10", " 1", "1.", ".5", "²", "٣٤", "1_000", "9" * 40]),
    st.from_regex(r"[0-9]{1,40}(\.[0-9]{0,40})?", fullmatch=True),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def binance_trade(futures: bool) -> dict[str, Any]:
    trade: dict[str, Any] = {
        "e": "trade",
        "E": 1_700_000_000_001,
        "s": SYMBOL,
        "t": 12345,
        "p": "65000.10",
        "q": "0.001",
        "T": 1_700_000_000_000,
        "m": True,
    }
    if futures:
        trade["X"] = "MARKET"
    return trade


def binance_depth(futures: bool) -> dict[str, Any]:
    depth: dict[str, Any] = {
        "e": "depthUpdate",
        "E": 1_700_000_000_001,
        "s": SYMBOL,
        "U": 100,
        "u": 102,
        "b": [["64999.90", "1.5"], ["64999.80", "0"]],
        "a": [["65000.10", "0.2"]],
    }
    if futures:
        depth.update(T=1_700_000_000_000, pu=99)
    return depth


def bybit_trades() -> dict[str, Any]:
    return {
        "topic": f"publicTrade.{SYMBOL}",
        "type": "snapshot",
        "ts": 1_700_000_000_001,
        "data": [
            {
                "T": 1_700_000_000_000,
                "s": SYMBOL,
                "S": "Buy",
                "v": "0.001",
                "p": "65000.10",
                "L": "PlusTick",
                "i": "a1b2c3",
                "BT": False,
                "RPI": False,
                "seq": 7,
            }
        ],
    }


def bybit_book() -> dict[str, Any]:
    return {
        "topic": f"orderbook.50.{SYMBOL}",
        "type": "delta",
        "ts": 1_700_000_000_001,
        "cts": 1_700_000_000_000,
        "data": {"s": SYMBOL, "b": [["64999.9", "1"]], "a": [["65000.1", "0"]], "u": 5, "seq": 9},
    }


def templates(parser: BinanceFrameParser | BybitFrameParser) -> list[dict[str, Any]]:
    if isinstance(parser, BinanceFrameParser):
        futures = parser._futures
        out = [binance_trade(futures), binance_depth(futures)]
        return out + [{"stream": f"{SYMBOL.lower()}@trade", "data": t} for t in out]
    return [bybit_trades(), bybit_book()]


def dumps(value: Any) -> str:
    # The stdlib encoder writes integers of any size, as a broken server could.
    return json.dumps(value)


def check(frame: Frame) -> None:
    """What a parsed frame promises to the rest of the collector."""
    assert isinstance(frame, Frame)
    for trade in frame.trades:
        assert ASCII_DECIMAL.match(trade.price) and ASCII_DECIMAL.match(trade.size), trade
        assert trade.side in (common_pb2.SIDE_BUY, common_pb2.SIDE_SELL)
        assert trade.trade_id
        trade.SerializeToString()
    if frame.kind is FrameKind.TRADES:
        assert frame.instrument is not None
    if frame.kind is FrameKind.BOOK:
        update = frame.book
        assert update is not None and frame.instrument is not None
        for value in (update.first_id, update.last_id, update.prev_id, update.exchange_time_ms):
            assert type(value) is int and value in INT64, update
        assert 0 <= update.first_id <= update.last_id
        assert type(update.bids) is list and type(update.asks) is list


def parse_or_refuse(parser: BinanceFrameParser | BybitFrameParser, text: str | bytes) -> None:
    try:
        frame = parser.parse(text, time.time_ns())
    except FrameError as exc:
        assert str(exc)  # the count and the log line say why
        return
    check(frame)


def mutate(template: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Replace, delete or add fields at the top level and one level down (`data` of a wrapper)."""
    out: dict[str, Any] = json.loads(json.dumps(template))
    for target in [out] + [v for v in out.values() if isinstance(v, dict)]:
        for key in data.draw(st.lists(st.sampled_from(sorted(target) or ["x"]), max_size=3, unique=True)):
            if data.draw(st.booleans()):
                target[key] = data.draw(json_values)
            else:
                target.pop(key, None)
        rows = [v for v in target.values() if isinstance(v, list)]
        for row in rows:
            for item in row:
                if isinstance(item, dict) and item and data.draw(st.booleans()):
                    item[data.draw(st.sampled_from(sorted(item)))] = data.draw(json_values)
    return out


@fuzz(400)
@given(index=st.integers(0, len(PARSERS) - 1), data=st.data())
def test_mutated_trade_and_depth_frames_are_parsed_exactly_or_refused(
    index: int, data: st.DataObject
) -> None:
    parser = PARSERS[index]
    template = data.draw(st.sampled_from(templates(parser)))
    parse_or_refuse(parser, dumps(mutate(template, data)))


@fuzz(200)
@given(index=st.integers(0, len(PARSERS) - 1), data=st.data())
def test_truncated_and_corrupted_frames_are_refused_or_parsed(index: int, data: st.DataObject) -> None:
    parser = PARSERS[index]
    raw = dumps(data.draw(st.sampled_from(templates(parser)))).encode()
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, max(0, len(raw) - 1)), st.integers(0, 255)), max_size=4)
    )
    corrupted = bytearray(raw[:cut])
    for position, byte in flips:
        if position < len(corrupted):
            corrupted[position] = byte
    parse_or_refuse(parser, bytes(corrupted))
    parse_or_refuse(parser, bytes(corrupted).decode("utf-8", "replace"))


@fuzz(200)
@given(
    index=st.integers(0, len(PARSERS) - 1), payload=st.one_of(st.binary(max_size=200), st.text(max_size=200))
)
def test_random_bytes_and_text(index: int, payload: bytes | str) -> None:
    parse_or_refuse(PARSERS[index], payload)


control_keys = st.sampled_from(
    [
        "result",
        "id",
        "error",
        "code",
        "msg",
        "op",
        "success",
        "ret_msg",
        "topic",
        "e",
        "data",
        "type",
        "req_id",
    ]
)


@fuzz(300)
@given(index=st.integers(0, len(PARSERS) - 1), message=st.dictionaries(control_keys, json_values, max_size=5))
def test_control_frames_of_any_shape(index: int, message: dict[str, Any]) -> None:
    """Acks, rejections, pongs, shutdown notices with fields of any type."""
    parse_or_refuse(PARSERS[index], dumps(message))


def test_known_crashers_are_refused() -> None:
    """Inputs fuzzing once found: each ended the connection instead of being counted and skipped."""
    spot, futures, _, linear = PARSERS
    trade = binance_trade(False)
    for field, value in [
        ("t", "²"),  # str.isdigit() accepts it, int() does not
        ("p", "٣٤"),  # a Unicode digit is not an exchange decimal
        ("T", 2**63),  # past int64: the Trade message cannot hold it
        ("X", 5),  # execution type not a string
    ]:
        bad = dict(trade, **{field: value})
        try:
            spot.parse(dumps(bad), 1)
        except FrameError:
            continue
        raise AssertionError(f"{field}={value!r} was accepted")
    assert spot.parse(dumps(dict(trade, s=[1])), 1).kind is FrameKind.IGNORED  # unhashable: not ours
    book = binance_depth(True)
    assert futures.parse(dumps(dict(book, u=2**64 - 1)), 1).kind is FrameKind.BOOK_INVALID
    bybit = bybit_trades()
    bybit["data"][0]["L"] = 1
    assert linear.parse(dumps(dict(bybit_trades(), topic=["x"])), 1).kind is FrameKind.IGNORED
    for frame in (bybit, dict(bybit_trades(), ts=2**63)):
        try:
            linear.parse(dumps(frame), 1)
        except FrameError:
            continue
        raise AssertionError(f"{frame} was accepted")


# --- REST bodies ----------------------------------------------------------------------------------


def rest_row_binance() -> dict[str, Any]:
    return {"id": 5, "price": "65000.10", "qty": "0.001", "time": 1_700_000_000_000, "isBuyerMaker": False}


def rest_body_bybit(row: dict[str, Any]) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [row]}}


def rest_row_bybit() -> dict[str, Any]:
    return {
        "execId": "e1",
        "symbol": SYMBOL,
        "price": "65000.10",
        "size": "0.001",
        "side": "Sell",
        "time": "1700000000000",
        "isBlockTrade": False,
        "seq": "4",
    }


def rest_outcome(parse: Any, body: Any) -> None:
    try:
        trades = parse(body)
    except FrameError as exc:
        assert str(exc)
        return
    for item in trades:
        trade = item[1] if isinstance(item, tuple) else item
        assert ASCII_DECIMAL.match(trade.price) and ASCII_DECIMAL.match(trade.size)
        trade.SerializeToString()


@fuzz(200)
@given(data=st.data())
def test_rest_trade_bodies_are_parsed_exactly_or_refused(data: st.DataObject) -> None:
    binance_row = mutate(rest_row_binance(), data)
    rest_outcome(lambda b: parse_rest_trades(MarketKey.BINANCE_SPOT, b, 1), [binance_row])
    rest_outcome(lambda b: parse_rest_trades(MarketKey.BINANCE_FUTURES, b, 1), data.draw(json_values))
    rest_outcome(lambda b: parse_recent_trades(b, 1), rest_body_bybit(mutate(rest_row_bybit(), data)))
    rest_outcome(lambda b: parse_recent_trades(b, 1), mutate(rest_body_bybit(rest_row_bybit()), data))
    rest_outcome(lambda b: parse_recent_trades(b, 1), data.draw(json_values))


@fuzz(200)
@given(data=st.data())
def test_depth_snapshot_bodies(data: st.DataObject) -> None:
    body = mutate({"lastUpdateId": 10, "E": 1, "T": 1, "bids": [["1.0", "2"]], "asks": [["1.1", "3"]]}, data)
    for candidate in (body, data.draw(json_values)):
        try:
            last, bids, asks, time_ms = parse_depth_snapshot(candidate)
        except FrameError:
            continue
        assert type(last) is int and last in INT64 and last >= 0
        assert type(bids) is list and type(asks) is list and type(time_ms) is int
