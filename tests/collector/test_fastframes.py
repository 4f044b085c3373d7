"""The C fast path (marketdata.collector._fastframes) against the Python parsers it stands in for.

Whenever a fast function returns a tuple, the Python parser must accept the same frame and build
exactly the same trades (the wire is compared byte for byte with Trade.SerializeToString()); whenever
the Python parser refuses a frame, the fast function must have declined it. On the frames exchanges
really send (recordings, the replay exchange's encoders) the fast path must not decline.
"""

from __future__ import annotations

import importlib.machinery
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketdata.bench.hotpath import SCENARIOS, build_frames
from marketdata.collector import _fastframes
from marketdata.collector.binance import BinanceFrameParser
from marketdata.collector.bybit import TOPIC_PREFIX, BybitFrameParser
from marketdata.collector.frames import Frame, FrameError, FrameKind
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.core.wire import length_delimited, varint
from marketdata.replay_exchange import binance as replay_binance
from marketdata.replay_exchange import bybit as replay_bybit
from marketdata.replay_exchange.generator import InstrumentWalk
from marketdata.replay_exchange.specs import spec_for
from marketdata.v1 import common_pb2

from ..conftest import FIXTURES
from ..fuzz.conftest import fuzz
from ..fuzz.test_frames import json_values

RECEIVE_NS = 1_790_000_000_123_456_789
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TRADE_KEY = 0x12  # TradeBatch.trades
T = TypeVar("T")


def python_wire(trades: Sequence[common_pb2.Trade]) -> bytes:
    return b"".join(length_delimited(TRADE_KEY, t.SerializeToString()) for t in trades)


def reference(market: MarketKey, symbol: str, text: str | bytes, receive_ns: int = RECEIVE_NS) -> Frame:
    """What the Python parser (`fast=False`: the reference) makes of a frame on a connection that
    carries `symbol`; FrameError propagates."""
    instruments = {symbol: InstrumentId(market, symbol)}
    if market.is_binance:
        return BinanceFrameParser(market, instruments, fast=False).parse(text, receive_ns)
    return BybitFrameParser(market, instruments, fast=False).parse(text, receive_ns)


def refused(market: MarketKey, text: str | bytes) -> bool:
    try:
        reference(market, "BTCUSDT", text)
    except FrameError:
        return True
    return False


def bybit_agrees(text: str | bytes, receive_ns: int = RECEIVE_NS) -> bool:
    """True if the fast path took the frame (and built what the Python parser builds), False if it
    declined (and then the Python parser may refuse it or not)."""
    fast = _fastframes.bybit_trades(text, receive_ns)
    if fast is None:
        return False
    topic, wire, ids, last_time_ms, last_offset = fast
    if not topic.startswith(TOPIC_PREFIX):
        # not a trade topic: the caller maps topics, the Python parser ignores it (and never refuses it)
        assert not refused(MarketKey.BYBIT_LINEAR, text)
        return True
    frame = reference(MarketKey.BYBIT_LINEAR, topic.removeprefix(TOPIC_PREFIX), text, receive_ns)
    trades = list(frame.trades)
    assert frame.kind is FrameKind.TRADES
    assert wire == python_wire(trades)
    assert len(ids) == len(trades) > 0
    assert ids == [t.trade_id for t in trades]
    assert last_time_ms == trades[-1].exchange_time_ms
    assert last_offset == len(wire) - len(length_delimited(TRADE_KEY, trades[-1].SerializeToString()))
    return True


def binance_agrees(text: str | bytes, receive_ns: int = RECEIVE_NS) -> bool:
    """As bybit_agrees, for one Binance trade or aggTrade event."""
    fast = _fastframes.binance_trade(text, receive_ns)
    if fast is None:
        return False
    symbol, wire, ids, time_ms, last_offset = fast
    frame = reference(MarketKey.BINANCE_FUTURES, symbol, text, receive_ns)
    assert frame.kind is FrameKind.TRADES
    (trade,) = frame.trades
    assert wire == python_wire([trade])
    assert [str(i) for i in ids] == [trade.trade_id] and type(ids[0]) is int
    assert time_ms == trade.exchange_time_ms and last_offset == 0
    return True


def taken(result: T | None) -> T:
    assert result is not None, "the fast path declined"
    return result


def both_forms(text: str | bytes) -> list[str | bytes]:
    """The frame as aiohttp hands out text frames (str) and as bytes."""
    return [text, text.encode()] if isinstance(text, str) else [text, text.decode()]


# ---- the extension is there -------------------------------------------------------------------------


def test_the_extension_is_built() -> None:
    """CI builds the extension; a broken build must fail here, not silently fall back to Python."""
    assert _fastframes.__file__ is not None
    assert _fastframes.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


# ---- real shapes: recordings and the replay exchange's encoders ---------------------------------------


def _cryptofeed_frames(path: Path) -> list[str]:
    return [line.split(": ", 1)[1] for line in path.read_text().splitlines()[1:] if line.strip()]


@pytest.mark.parametrize(
    ("name", "trades"), [("cryptofeed-BINANCE.ws.1.0", 2), ("cryptofeed-BINANCE_FUTURES.ws.1.0", 91)]
)
def test_recorded_binance_agg_trades_take_the_fast_path(recorded_dir: Path, name: str, trades: int) -> None:
    taken = 0
    for text in _cryptofeed_frames(recorded_dir / name):
        is_trade = json.loads(text)["data"].get("e") == "aggTrade"
        for form in both_forms(text):
            # depth, bookTicker and kline frames are declined: the Python parser handles them
            assert binance_agrees(form) is is_trade
        taken += is_trade
    assert taken == trades


def test_binance_trade_fixtures_spot_and_futures_take_the_fast_path() -> None:
    for line in (FIXTURES / "binance-trade-frames.jsonl").read_text().splitlines():
        frame = json.loads(line)["frame"]
        for text in (json.dumps(frame), json.dumps(frame["data"]), json.dumps(frame, separators=(",", ":"))):
            assert all(binance_agrees(form) for form in both_forms(text))


def test_recorded_bybit_public_trade_takes_the_fast_path(recorded_dir: Path) -> None:
    kinds = []
    for line in (recorded_dir / "bybit-v5-linear-2025-09-25.jsonl").read_text().splitlines():
        receive_ns, text = line.split(" ", 1)
        kinds.append([bybit_agrees(form, int(receive_ns)) for form in both_forms(text)])
    # the order-book frames (`data` is an object) are declined
    assert kinds == [[False, False], [True, True], [False, False]]


def _walk(market: MarketKey, count: int) -> list[Any]:
    instrument = InstrumentId(market, "BTCUSDT")
    return InstrumentWalk(spec_for(instrument), 11).next_trades(count, 1_790_000_000_000)


@pytest.mark.parametrize("market", [MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES])
def test_replay_exchange_binance_frames_take_the_fast_path(market: MarketKey) -> None:
    stream, agg_stream = replay_binance.trade_stream("BTCUSDT"), replay_binance.agg_trade_stream("BTCUSDT")
    for trade in _walk(market, 200):
        for payload, name in (
            (replay_binance.trade_payload(market, "BTCUSDT", trade), stream),
            (replay_binance.agg_trade_payload(market, "BTCUSDT", trade), agg_stream),
        ):
            assert binance_agrees(payload)
            assert binance_agrees(replay_binance.combined(name, payload).decode())


@pytest.mark.parametrize("market", [MarketKey.BYBIT_SPOT, MarketKey.BYBIT_LINEAR])
def test_replay_exchange_bybit_frames_take_the_fast_path(market: MarketKey) -> None:
    trades = _walk(market, 1024 + 300)
    for start, size in ((0, 1), (1, 7), (8, 1024), (1032, 292)):
        text = replay_bybit.trade_frame(market, "BTCUSDT", trades[start : start + size], 1_790_000_000_005)
        assert all(bybit_agrees(form) for form in both_forms(text))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_hot_path_bench_frames_take_the_fast_path(scenario: Any) -> None:
    agrees = binance_agrees if scenario.instrument.market.is_binance else bybit_agrees
    assert all(agrees(text) for text in build_frames(scenario, 2000))


# ---- generated frames -----------------------------------------------------------------------------------

int64s = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([0, 1, -1, 127, 128, INT64_MIN, INT64_MAX, 1_790_000_000_000]),
)
decimals = st.from_regex(r"[0-9]{1,30}(\.[0-9]{1,30})?", fullmatch=True)
# Keys a frame may carry beside the used ones (some are used at the other level or by the other exchange).
extra_keys = st.one_of(
    st.sampled_from(["s", "type", "cts", "M", "f", "l", "stream", "é", "data2"]),
    st.text(st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters='"\\'), max_size=6),
    st.text(max_size=6),
)
# Mostly what exchanges send; sometimes any text (then often escaped when written, and declined).
trade_ids = st.one_of(
    st.from_regex(r"[0-9]{1,19}", fullmatch=True),
    st.uuids().map(str),
    st.text(
        st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters='"\\'), min_size=1, max_size=40
    ),
    st.text(min_size=1, max_size=40),
)
tick_directions = st.one_of(
    st.none(),
    st.sampled_from(["PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick", ""]),
    st.text(max_size=14),
)


class Raw:
    """A value already written as JSON text."""

    def __init__(self, raw: str) -> None:
        self.raw = raw


def _object(members: list[tuple[str, Any]], data: st.DataObject) -> str:
    """A JSON object of the members in a drawn order, spacing and escaping, as raw text (so that nested
    texts, which are already JSON, go in unchanged)."""
    members = data.draw(st.permutations(members))
    ascii_only = data.draw(st.sampled_from([False, False, True]))  # True: non-ASCII text is escaped
    space = data.draw(st.sampled_from(["", " ", "\n  ", "\t"]))
    parts = []
    for key, value in members:
        text = value.raw if isinstance(value, Raw) else json.dumps(value, ensure_ascii=ascii_only)
        parts.append(f"{json.dumps(key, ensure_ascii=ascii_only)}{space}:{space}{text}")
    return "{" + space + f"{space},{space}".join(parts) + space + "}"


def _optional(
    data: st.DataObject, members: list[tuple[str, Any]], key: str, values: st.SearchStrategy[Any]
) -> None:
    if data.draw(st.booleans()):
        members.append((key, data.draw(values)))


def _extras(data: st.DataObject, members: list[tuple[str, Any]], used: set[str]) -> None:
    for key in data.draw(st.lists(extra_keys, max_size=3, unique=True)):
        if key not in used:
            members.append((key, data.draw(json_values)))


def bybit_row(data: st.DataObject) -> str:
    members: list[tuple[str, Any]] = [
        ("S", data.draw(st.sampled_from(["Buy", "Sell"]))),
        ("i", data.draw(trade_ids)),
        ("p", data.draw(decimals)),
        ("v", data.draw(decimals)),
        ("T", data.draw(int64s)),
    ]
    _optional(data, members, "seq", int64s)
    _optional(data, members, "L", tick_directions)
    _optional(data, members, "BT", st.one_of(st.booleans(), json_values))
    _optional(data, members, "RPI", st.one_of(st.booleans(), json_values))
    _extras(data, members, {"S", "i", "p", "v", "T", "seq", "L", "BT", "RPI"})
    return _object(members, data)


def bybit_frame(data: st.DataObject) -> str:
    rows = [bybit_row(data) for _ in range(data.draw(st.integers(1, 4)))]
    members: list[tuple[str, Any]] = [
        ("topic", "publicTrade." + data.draw(st.sampled_from(["BTCUSDT", "ETHUSDT", "1000PEPE-USDT"]))),
        ("ts", data.draw(int64s)),
        ("data", Raw("[" + ",".join(rows) + "]")),
    ]
    _extras(data, members, {"topic", "ts", "data"})
    return _object(members, data)


def binance_event(data: st.DataObject) -> str:
    aggregated = data.draw(st.booleans())
    members: list[tuple[str, Any]] = [
        ("e", "aggTrade" if aggregated else "trade"),
        ("s", data.draw(st.sampled_from(["BTCUSDT", "ethbtc", "ÄBC"]))),
        ("a" if aggregated else "t", data.draw(int64s)),
        ("p", data.draw(decimals)),
        ("q", data.draw(decimals)),
        ("T", data.draw(int64s)),
        ("m", data.draw(st.booleans())),
    ]
    _optional(data, members, "E", int64s)
    _optional(data, members, "X", st.one_of(st.none(), st.sampled_from(["MARKET", "ADL", "", "NA"])))
    # the id field of the other event kind is skipped
    _optional(data, members, "t" if aggregated else "a", json_values)
    _extras(data, members, {"e", "s", "a", "t", "p", "q", "T", "m", "E", "X", "data"})
    payload = _object(members, data)
    if not data.draw(st.booleans()):
        return payload
    wrapper: list[tuple[str, Any]] = [("data", Raw(payload))]
    _optional(data, wrapper, "stream", st.just("btcusdt@trade"))
    _extras(data, wrapper, {"data", "e", "s", "a", "t", "p", "q", "T", "m", "E", "X"})
    return _object(wrapper, data)


@fuzz(300)
@given(data=st.data())
def test_generated_bybit_frames_agree_with_the_python_parser(data: st.DataObject) -> None:
    text = bybit_frame(data)
    for form in both_forms(text):
        bybit_agrees(form, data.draw(int64s))


@fuzz(300)
@given(data=st.data())
def test_generated_binance_frames_agree_with_the_python_parser(data: st.DataObject) -> None:
    text = binance_event(data)
    for form in both_forms(text):
        binance_agrees(form, data.draw(int64s))


def test_generated_valid_frames_mostly_take_the_fast_path() -> None:
    """The generators above make mostly simple frames: a fast path that declines them all is broken."""
    taken = {"bybit": 0, "binance": 0}

    @fuzz(100)
    @given(data=st.data())
    def count(data: st.DataObject) -> None:
        taken["bybit"] += bybit_agrees(bybit_frame(data))
        taken["binance"] += binance_agrees(binance_event(data))

    count()
    assert taken["bybit"] > 20 and taken["binance"] > 20, taken


def _mutate(text: bytes, data: st.DataObject) -> bytes:
    """Cut, overwrite, insert or duplicate bytes of a valid frame."""
    out = bytearray(text)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(0, len(out)))
        how = data.draw(st.sampled_from(["cut", "flip", "insert", "repeat"]))
        if how == "cut":
            del out[where:]
        elif how == "flip" and where < len(out):
            out[where] = data.draw(
                st.sampled_from(list(b'"\\{}[],:0-.eE tfn\x00\x1f\x80\xc3\xed\xff')) | st.integers(0, 255)
            )
        elif how == "insert":
            out[where:where] = data.draw(
                st.sampled_from([b",", b'"x":1,', b'"T":1,', b'"i":"y",', b"\\", b" ", b"-0"])
            )
        else:
            span = data.draw(st.integers(0, 40))
            out[where:where] = out[where : where + span]
    return bytes(out)


@fuzz(400)
@given(data=st.data())
def test_mutated_frames_are_declined_or_agree(data: st.DataObject) -> None:
    bybit = _mutate(bybit_frame(data).encode(), data)
    binance = _mutate(binance_event(data).encode(), data)
    bybit_agrees(bybit)
    binance_agrees(binance)
    bybit_agrees(bybit.decode("utf-8", "replace"))
    binance_agrees(binance.decode("utf-8", "replace"))


@fuzz(200)
@given(payload=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_random_bytes_and_text_never_crash(payload: bytes | str) -> None:
    bybit_agrees(payload)
    binance_agrees(payload)


# ---- what is declined ------------------------------------------------------------------------------------

BYBIT_ROW = '{"T":1790000000001,"s":"BTCUSDT","S":"Sell","v":"0.003","p":"64997.60","L":"MinusTick","i":"e29e","BT":false,"RPI":false,"seq":34343182056}'
BYBIT = '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1790000000001,"data":[' + BYBIT_ROW + "]}"
BINANCE = '{"stream":"btcusdt@trade","data":{"e":"trade","E":123,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100","T":123,"m":true,"M":true}}'


def _bybit_with(**row: Any) -> str:
    fields = json.loads(BYBIT_ROW)
    fields.update(row)
    row_text = json.dumps({k: v for k, v in fields.items() if v is not Ellipsis}, ensure_ascii=False)
    return BYBIT.replace(BYBIT_ROW, row_text)


def test_the_samples_are_taken() -> None:
    assert bybit_agrees(BYBIT) and binance_agrees(BINANCE)
    assert bybit_agrees('{"data":[' + BYBIT_ROW + '],"ts":5,"topic":"publicTrade.BTCUSDT"}')  # topic last


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "[]",
        BYBIT + "x",
        BYBIT + "{}",
        "\ufeff" + BYBIT,
        BYBIT.replace('"ts":1790000000001,', ""),  # Python: ts 0; not the simple case
        BYBIT.replace('"ts":1790000000001', '"ts":"1790000000001"'),
        BYBIT.replace('"ts":1790000000001', '"ts":1.5'),
        BYBIT.replace('"topic":"publicTrade.BTCUSDT"', '"topic":5'),
        BYBIT.replace('"topic":"publicTrade.BTCUSDT"', '"topic":"public\\u0054rade.BTCUSDT"'),
        BYBIT.replace('"topic":"publicTrade.BTCUSDT",', '"topic":"publicTrade.BTCUSDT","topic":"x",'),
        BYBIT.replace('"data":[' + BYBIT_ROW + "]", '"data":[]'),
        BYBIT.replace('"data":[' + BYBIT_ROW + "]", '"data":{}'),
        BYBIT.replace('"data":[' + BYBIT_ROW + "]", '"data":[1]'),
        BYBIT.replace('"type"', '"t\\u0079pe"'),  # an escaped key could spell a used one
        _bybit_with(T="1790000000001"),
        _bybit_with(T=1e3),
        _bybit_with(T=2**63),
        _bybit_with(T=...),
        _bybit_with(S="buy"),
        _bybit_with(S=...),
        _bybit_with(i=""),
        _bybit_with(i=5),
        _bybit_with(i="a\nb"),
        _bybit_with(i="a\\b"),
        _bybit_with(p="1e5"),
        _bybit_with(p="-1"),
        _bybit_with(p="1."),
        _bybit_with(v="1" * 31),
        _bybit_with(v="0." + "1" * 31),
        _bybit_with(v="\u0661"),  # a Unicode digit (written escaped: a decline either way)
        _bybit_with(seq=None),
        _bybit_with(seq="5"),
        _bybit_with(seq=-0.0),
        _bybit_with(L=5),
        _bybit_with(L=["x"]),
        BYBIT.replace('"T":1790000000001', '"T":-0'),
        BYBIT.replace('"T":1790000000001', '"T":01'),
        BYBIT.replace('"T":1790000000001', '"T":1790000000001,"T":1790000000001'),
        BYBIT.replace('"s":"BTCUSDT"', '"s":"\\ud800"'),  # a lone surrogate in a skipped string
        BYBIT.replace('"s":"BTCUSDT"', '"s":"\\udc00"'),
        BYBIT.replace('"s":"BTCUSDT"', '"s":"\\ud800\\u0041"'),
        BYBIT.replace('"s":"BTCUSDT"', '"s":"\\x41"'),
        BYBIT.replace('"s":"BTCUSDT"', '"s":1e400'),
        BYBIT.replace('"s":"BTCUSDT"', '"s":tru'),
        BYBIT.replace('"s":"BTCUSDT"', '"s":[1,]'),
        BYBIT.replace('"s":"BTCUSDT"', '"s":{"a"}'),
    ],
)
def test_bybit_frames_outside_the_simple_case_are_declined(text: str) -> None:
    for form in both_forms(text):
        assert _fastframes.bybit_trades(form, RECEIVE_NS) is None


def _binance_with(**fields: Any) -> str:
    payload = json.loads(BINANCE)["data"]
    payload.update(fields)
    data = {k: v for k, v in payload.items() if v is not Ellipsis}
    return json.dumps({"stream": "btcusdt@trade", "data": data}, ensure_ascii=False)


@pytest.mark.parametrize(
    "text",
    [
        '{"stream":"btcusdt@trade","data":null}',
        '{"stream":"btcusdt@trade","data":[]}',
        BINANCE.replace('"data":{', '"data":{"data":1,').replace("}}", '},"data":{}}'),
        _binance_with(e="depthUpdate"),
        _binance_with(e="Trade"),
        _binance_with(s=None),
        _binance_with(t="12345"),
        _binance_with(t=12.0),
        _binance_with(t=...),
        _binance_with(e="aggTrade"),  # no `a`
        _binance_with(E="1"),
        _binance_with(E=None),
        _binance_with(T=...),
        _binance_with(m=1),
        _binance_with(m=None),
        _binance_with(m=...),
        _binance_with(X=5),
        _binance_with(X="MAR\\u004bET"),
        _binance_with(p=" 1"),
        _binance_with(q=...),
        BINANCE.replace('"t":12345', '"t":12345,"t":12345'),
        BINANCE[:-1],
        BINANCE + " x",
    ],
)
def test_binance_frames_outside_the_simple_case_are_declined(text: str) -> None:
    for form in both_forms(text):
        assert _fastframes.binance_trade(form, RECEIVE_NS) is None


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (_bybit_with(BT=True, RPI=True), {"block_trade": True, "rpi": True}),
        (_bybit_with(BT="true", RPI=1), {"block_trade": False, "rpi": False}),  # Python: `is True`
        (_bybit_with(L=None, seq=...), {"tick_direction": "", "cross_sequence": 0}),
        (_bybit_with(L="", seq=-5), {"tick_direction": "", "cross_sequence": -5}),
        (_bybit_with(T=INT64_MIN, i="é"), {"exchange_time_ms": INT64_MIN, "trade_id": "é"}),
    ],
)
def test_bybit_optional_fields(text: str, fields: dict[str, Any]) -> None:
    assert bybit_agrees(text)
    wire = taken(_fastframes.bybit_trades(text, RECEIVE_NS))[1]
    trade = common_pb2.TradeBatch.FromString(wire).trades[0]
    assert {name: getattr(trade, name) for name in fields} == fields


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (_binance_with(X="MARKET"), {"execution_type": "MARKET"}),
        (_binance_with(X=None, E=...), {"execution_type": "", "event_time_ms": 0}),
        (_binance_with(e="aggTrade", a=-5, t="ignored"), {"trade_id": "-5", "aggregated": True}),
        (_binance_with(m=False), {"side": common_pb2.SIDE_BUY}),
        ('{"e":"trade","s":"X","t":1,"p":"1","q":"2","T":3,"m":true,"data2":{"e":"x"}}', {"trade_id": "1"}),
    ],
)
def test_binance_optional_fields(text: str, fields: dict[str, Any]) -> None:
    assert binance_agrees(text)
    wire = taken(_fastframes.binance_trade(text, RECEIVE_NS))[1]
    trade = common_pb2.TradeBatch.FromString(wire).trades[0]
    assert {name: getattr(trade, name) for name in fields} == fields


def test_wrong_argument_types_raise_type_error() -> None:
    for function in (_fastframes.bybit_trades, _fastframes.binance_trade):
        with pytest.raises(TypeError, match="text must be bytes or str"):
            function(bytearray(BYBIT.encode()), 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="receive_ns must be int"):
            function(BYBIT, 1.0)  # type: ignore[arg-type]
        with pytest.raises(OverflowError):
            function(BYBIT, 2**63)
    with pytest.raises(TypeError):
        _fastframes.wire_offset("text", 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sequence",
    [
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"\x80",
        b"\xf0\x8f\xbf\xbf",
        b"\xe0\x9f\xbf",
        b"\xc3\x28",
    ],
)
@pytest.mark.parametrize("field", ["s", "i", "L"])
def test_invalid_utf8_is_declined(sequence: bytes, field: str) -> None:
    """In a skipped string as in a copied one: orjson refuses the frame, so the fast path declines."""
    text = (
        _bybit_with(**{field: "x"})
        .encode()
        .replace(f'"{field}": "x"'.encode(), f'"{field}": "'.encode() + sequence + b'"')
    )
    assert refused(MarketKey.BYBIT_LINEAR, text)
    assert _fastframes.bybit_trades(text, RECEIVE_NS) is None


def test_valid_utf8_and_surrogate_pairs_in_strings_are_taken() -> None:
    row = _bybit_with(s="é€😀\U0010ffff", L="é€")
    assert bybit_agrees(row.encode()) and bybit_agrees(row)
    assert bybit_agrees(
        BYBIT.replace('"s":"BTCUSDT"', '"s":"\\ud83d\\ude00\\u00e9\\"\\\\\\/\\b\\f\\n\\r\\t"')
    )


def test_a_str_without_utf8_form_is_declined() -> None:
    text = BYBIT.replace("e29e", "\ud800")
    assert refused(MarketKey.BYBIT_LINEAR, text)
    assert _fastframes.bybit_trades(text, RECEIVE_NS) is None


# ---- robustness --------------------------------------------------------------------------------------------


def test_every_truncation_is_declined() -> None:
    bybit = replay_bybit.trade_frame(MarketKey.BYBIT_LINEAR, "BTCUSDT", _walk(MarketKey.BYBIT_LINEAR, 3), 1)
    binance = replay_binance.combined(
        "btcusdt@trade",
        replay_binance.trade_payload(
            MarketKey.BINANCE_FUTURES, "BTCUSDT", _walk(MarketKey.BINANCE_FUTURES, 1)[0]
        ),
    )
    for frame, function in ((bybit, _fastframes.bybit_trades), (binance, _fastframes.binance_trade)):
        for cut in range(len(frame)):
            assert function(frame[:cut], RECEIVE_NS) is None
        assert function(frame + b" \r\n\t", RECEIVE_NS) is not None


@pytest.mark.parametrize(
    ("depth", "taken"), [(1, True), (60, True), (64, False), (1000, False), (200_000, False)]
)
def test_deep_nesting_is_bounded(depth: int, taken: bool) -> None:
    nested = "[" * depth + "]" * depth
    bybit = BYBIT.replace('"type":"snapshot"', f'"type":{nested}')
    binance = BINANCE.replace('"M":true', f'"M":{nested}')
    row = BYBIT.replace('"s":"BTCUSDT"', f'"s":{nested}')
    assert bybit_agrees(bybit) is taken
    assert binance_agrees(binance) is taken
    assert bybit_agrees(row) is (depth <= 60)


def test_huge_strings_and_many_rows() -> None:
    assert bybit_agrees(_bybit_with(i="x" * 1_000_000, L="é" * 100_000))
    assert bybit_agrees(BYBIT.replace('"s":"BTCUSDT"', '"s":"' + "\\n\\u00e9" * 200_000 + '"'))
    # rows whose Trade is longer than their text: the output buffer grows
    small = '{"S":"Buy","i":"x","p":"1","v":"1","T":-1,"seq":-1}'
    text = '{"topic":"publicTrade.X","ts":-1,"data":[' + ",".join([small] * 5000) + "]}"
    assert len(taken(_fastframes.bybit_trades(text, -1))[1]) > len(text)
    assert bybit_agrees(text, -1)


# ---- wire_offset ------------------------------------------------------------------------------------------------


@fuzz(100)
@given(st.lists(st.binary(max_size=300), max_size=20), st.sampled_from([bytes, bytearray, memoryview]))
def test_wire_offset_follows_the_entry_lengths(bodies: list[bytes], kind: type) -> None:
    entries = [length_delimited(TRADE_KEY, body) for body in bodies]
    wire = b"".join(entries)
    offset = 0
    for n, entry in enumerate(entries):
        assert _fastframes.wire_offset(kind(wire), n) == offset
        offset += len(entry)
    assert _fastframes.wire_offset(kind(wire), len(entries)) == len(wire)
    for n in (-1, len(entries) + 1, 2**70):
        with pytest.raises(ValueError, match="out of range"):
            _fastframes.wire_offset(kind(wire), n)


def test_wire_offset_of_a_fast_run() -> None:
    (frame,) = build_frames(SCENARIOS[1], 100)[:1]
    _, wire, ids, _, last_offset = taken(_fastframes.bybit_trades(frame, RECEIVE_NS))
    count = len(ids)
    assert _fastframes.wire_offset(wire, count - 1) == last_offset
    assert _fastframes.wire_offset(wire, count) == len(wire)


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        (b"\x0a\x00", "does not start with the 0x12 key"),
        (b"\x12\x00\x13", "does not start with the 0x12 key"),
        (b"\x12", "length is cut off"),
        (b"\x12\x80", "length is cut off"),
        (b"\x12" + b"\xff" * 10 + b"\x01", "varint is too long"),
        (b"\x12\x05abc", "longer than the rest"),
        (b"\x12" + varint(2**64 - 1), "longer than the rest"),
    ],
)
def test_wire_offset_refuses_a_malformed_wire(wire: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _fastframes.wire_offset(wire, 0)


def test_an_empty_wire_has_one_offset() -> None:
    assert _fastframes.wire_offset(b"", 0) == 0
    with pytest.raises(ValueError, match="out of range"):
        _fastframes.wire_offset(b"", 1)


def test_shuffled_row_members_give_the_same_trade() -> None:
    """Key order does not change the encoding (fields go out in field-number order)."""
    row = json.loads(BYBIT_ROW)
    rng = random.Random(3)
    wires = set()
    for _ in range(20):
        keys = list(row)
        rng.shuffle(keys)
        text = BYBIT.replace(BYBIT_ROW, json.dumps({k: row[k] for k in keys}))
        assert bybit_agrees(text)
        wires.add(taken(_fastframes.bybit_trades(text, RECEIVE_NS))[1])
    assert len(wires) == 1
