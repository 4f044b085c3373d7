"""Real recorded exchange frames parse to exactly the values they carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketdata.collector.binance import BinanceFrameParser, parse_rest_trades
from marketdata.collector.bybit import BybitFrameParser, parse_recent_trades
from marketdata.collector.frames import FrameError, FrameKind
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import common_pb2

from ..conftest import FIXTURES

BUY, SELL = common_pb2.SIDE_BUY, common_pb2.SIDE_SELL


def _cryptofeed_frames(path: Path) -> list[str]:
    """Frames of a cryptofeed capture: skip the connect line, strip `<ts>: `."""
    lines = path.read_text().splitlines()[1:]
    return [line.split(": ", 1)[1] for line in lines if line.strip()]


def _parser_for_all_symbols(market: MarketKey, frames: list[str]) -> BinanceFrameParser:
    symbols = {json.loads(f)["data"].get("s") for f in frames} - {None}
    return BinanceFrameParser(market, {s: InstrumentId(market, s) for s in symbols})


@pytest.mark.parametrize(
    ("name", "market"),
    [
        ("cryptofeed-BINANCE.ws.1.0", MarketKey.BINANCE_SPOT),
        ("cryptofeed-BINANCE_FUTURES.ws.1.0", MarketKey.BINANCE_FUTURES),
    ],
)
def test_binance_recorded_agg_trades_keep_exact_values(
    recorded_dir: Path, name: str, market: MarketKey
) -> None:
    frames = _cryptofeed_frames(recorded_dir / name)
    parser = _parser_for_all_symbols(market, frames)
    checked = 0
    for text in frames:
        raw = json.loads(text)["data"]
        frame = parser.parse(text, 123)
        if raw.get("e") != "aggTrade":
            # depth, bookTicker and kline are valid frames the trade path does not use
            assert frame.kind is FrameKind.IGNORED
            continue
        (trade,) = frame.trades
        assert frame.instrument == InstrumentId(market, raw["s"])
        assert trade.trade_id == str(raw["a"]) and trade.aggregated
        assert trade.price == raw["p"] and trade.size == raw["q"]  # the exchange's text, not a float
        assert trade.side == (SELL if raw["m"] else BUY)
        assert trade.exchange_time_ms == raw["T"] and trade.event_time_ms == raw["E"]
        assert trade.receive_time_ns == 123
        checked += 1
    assert checked == {"cryptofeed-BINANCE.ws.1.0": 2, "cryptofeed-BINANCE_FUTURES.ws.1.0": 91}[name]


def test_binance_spot_agg_trade_example(recorded_dir: Path) -> None:
    frames = [f for f in _cryptofeed_frames(recorded_dir / "cryptofeed-BINANCE.ws.1.0") if "aggTrade" in f]
    frame = _parser_for_all_symbols(MarketKey.BINANCE_SPOT, frames).parse(frames[0], 1)
    trade = frame.trades[0]
    assert (trade.trade_id, trade.price, trade.size, trade.side) == (
        "15683430",
        "0.35280000",
        "58.00000000",
        BUY,
    )


def test_binance_raw_trade_frames_spot_and_futures() -> None:
    rows = [json.loads(line) for line in (FIXTURES / "binance-trade-frames.jsonl").read_text().splitlines()]
    spot, futures = rows
    parser = BinanceFrameParser(
        MarketKey.BINANCE_SPOT, {"BTCUSDT": InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")}
    )
    trade = parser.parse(json.dumps(spot["frame"]), 5).trades[0]
    assert (trade.trade_id, trade.price, trade.size) == ("6739446511", "86104.02000000", "0.00011000")
    assert trade.side == SELL  # m=true: the buyer was the maker, so the taker sold
    assert (trade.exchange_time_ms, trade.event_time_ms) == (1791284980614, 1791284980615)
    assert trade.execution_type == ""

    parser = BinanceFrameParser(
        MarketKey.BINANCE_FUTURES, {"BTCUSDT": InstrumentId(MarketKey.BINANCE_FUTURES, "BTCUSDT")}
    )
    trade = parser.parse(json.dumps(futures["frame"]), 5).trades[0]
    assert (trade.trade_id, trade.price, trade.size, trade.side) == ("2691833663", "24670.90", "0.022", SELL)
    assert trade.execution_type == "MARKET"


def test_bybit_recorded_public_trade(recorded_dir: Path) -> None:
    lines = (recorded_dir / "bybit-v5-linear-2025-09-25.jsonl").read_text().splitlines()
    instrument = InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT")
    parser = BybitFrameParser(MarketKey.BYBIT_LINEAR, {"BTCUSDT": instrument})
    kinds = []
    for line in lines:
        receive_ns, text = line.split(" ", 1)
        frame = parser.parse(text, int(receive_ns))
        kinds.append(frame.kind)
        if frame.kind is FrameKind.TRADES:
            (trade,) = frame.trades
            assert frame.instrument == instrument
            assert trade.trade_id == "2a74ac78-691c-5b54-9dbe-5aafe8364627"
            assert (trade.price, trade.size, trade.side) == ("109378.90", "0.020", BUY)
            assert (trade.exchange_time_ms, trade.event_time_ms) == (1758841135823, 1758841135824)
            assert trade.receive_time_ns == 1758841138293664629
            assert (trade.cross_sequence, trade.rpi, trade.block_trade) == (457514743450, False, False)
            assert trade.tick_direction == "ZeroPlusTick"
    # the two order-book frames are valid but not trades
    assert kinds == [FrameKind.IGNORED, FrameKind.TRADES, FrameKind.IGNORED]


def test_bybit_acks_pongs_and_rejections() -> None:
    parser = BybitFrameParser(MarketKey.BYBIT_SPOT, {})
    ack = '{"success":true,"ret_msg":"subscribe","conn_id":"c1","req_id":"sub-1","op":"subscribe"}'
    assert parser.parse(ack, 0).kind is FrameKind.SUBSCRIBED
    pong = '{"success":true,"ret_msg":"pong","conn_id":"c1","op":"ping"}'
    assert parser.parse(pong, 0).kind is FrameKind.PONG
    refused = '{"success":false,"ret_msg":"args size >10","conn_id":"c1","req_id":"sub-1","op":"subscribe"}'
    frame = parser.parse(refused, 0)
    assert frame.kind is FrameKind.REJECTED and "args size >10" in frame.detail


def test_binance_server_shutdown_both_forms() -> None:
    parser = BinanceFrameParser(MarketKey.BINANCE_SPOT, {})
    assert parser.parse('{"e":"serverShutdown","E":1770123456789}', 0).kind is FrameKind.SHUTDOWN
    combined = '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}'
    assert parser.parse(combined, 0).kind is FrameKind.SHUTDOWN


@pytest.mark.parametrize(
    "text",
    [
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.0","T":1,"m":true}',
        "not json at all",
        "[1, 2, 3]",
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.0","T":1,"m":true}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1e5","q":"1","T":1,"m":true}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"-1","q":"1","T":1,"m":true}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":"x","p":"1","q":"1","T":1,"m":true}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1,"m":"yes"}}',
    ],
)
def test_binance_malformed_frames_are_refused_with_a_reason(text: str) -> None:
    parser = BinanceFrameParser(
        MarketKey.BINANCE_SPOT, {"BTCUSDT": InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")}
    )
    with pytest.raises(FrameError) as info:
        parser.parse(text, 0)
    assert str(info.value)


@pytest.mark.parametrize(
    "row",
    [
        '{"T":1,"s":"BTCUSDT","S":"Hold","v":"1","p":"1","i":"a"}',
        '{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"NaN","i":"a"}',
        '{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","i":"a"}',
        '{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"1","i":""}',
    ],
)
def test_bybit_malformed_trade_rows_are_refused(row: str) -> None:
    parser = BybitFrameParser(
        MarketKey.BYBIT_LINEAR, {"BTCUSDT": InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT")}
    )
    with pytest.raises(FrameError):
        parser.parse('{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[' + row + "]}", 0)


def test_unknown_fields_and_streams_are_ignored_not_errors() -> None:
    parser = BinanceFrameParser(
        MarketKey.BINANCE_SPOT, {"BTCUSDT": InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")}
    )
    extra = '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"1.5","q":"2","T":1,"m":false,"st":1,"new":{"x":1}}}'
    assert parser.parse(extra, 0).trades[0].trade_id == "7"
    assert (
        parser.parse('{"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT"}}', 0).kind
        is FrameKind.IGNORED
    )
    assert parser.parse('{"stream":"x","data":{"e":"somethingNew"}}', 0).kind is FrameKind.IGNORED


def test_rest_rows_parse_exactly() -> None:
    rows = [
        {
            "id": 11,
            "price": "4.00000100",
            "qty": "12.00000000",
            "quoteQty": "48.000012",
            "time": 1499865549590,
            "isBuyerMaker": True,
            "isBestMatch": True,
        },
        {
            "id": 10,
            "price": "4.00000200",
            "qty": "1.00000000",
            "quoteQty": "4.000002",
            "time": 1499865549589,
            "isBuyerMaker": False,
            "isBestMatch": True,
        },
    ]
    parsed = parse_rest_trades(MarketKey.BINANCE_SPOT, rows, 9)
    assert [i for i, _ in parsed] == [10, 11]
    assert parsed[1][1].price == "4.00000100" and parsed[1][1].side == SELL
    assert parsed[0][1].source == common_pb2.TRADE_SOURCE_REST_BACKFILL

    body = {
        "retCode": 0,
        "retMsg": "OK",
        "result": {
            "category": "spot",
            "list": [
                {
                    "execId": "2100000000007764264",
                    "symbol": "BTCUSDT",
                    "price": "16618.50",
                    "size": "0.1",
                    "side": "Sell",
                    "time": "1672052955759",
                    "isBlockTrade": False,
                    "isRPITrade": True,
                    "seq": "5",
                },
                {
                    "execId": "2100000000007764263",
                    "symbol": "BTCUSDT",
                    "price": "16618.49",
                    "size": "0.00012",
                    "side": "Buy",
                    "time": "1672052955758",
                    "isBlockTrade": False,
                },
            ],
        },
        "retExtInfo": {},
        "time": 1672053054358,
    }
    trades = parse_recent_trades(body, 9)
    assert [t.trade_id for t in trades] == ["2100000000007764263", "2100000000007764264"]  # oldest first
    assert trades[1].rpi and trades[1].side == SELL and trades[0].size == "0.00012"
    with pytest.raises(FrameError, match="10001"):
        parse_recent_trades({"retCode": 10001, "retMsg": "params error"}, 0)
