"""The collector's fast paths normalize exactly as the plain reading of each exchange's fields does:
recorded and generated frames parse to the same Trade messages, and the trades that reach a
StreamTrades subscriber through reader, sequencer and bus are those trades, once each, in order."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from marketdata.bench import hotpath
from marketdata.collector.binance import BinanceFrameParser
from marketdata.collector.bus import TradeBus, instrument_field, stream_trades_response
from marketdata.collector.bybit import BybitFrameParser
from marketdata.collector.frames import KNOWN_DECIMALS_MAX, FrameError, FrameKind
from marketdata.collector.trade_runs import TradeRun
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange import binance as replay_binance
from marketdata.replay_exchange import bybit as replay_bybit
from marketdata.replay_exchange.generator import InstrumentWalk
from marketdata.replay_exchange.specs import spec_for
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2

from ..conftest import FIXTURES

Trade = common_pb2.Trade
RECEIVE_NS = 1_790_000_000_123_456_789


def binance_reference(data: dict[str, Any], receive_ns: int) -> Trade:
    """Every field of a Binance trade or aggTrade event, read the plain way."""
    aggregated = data["e"] == "aggTrade"
    return Trade(
        trade_id=str(data["a"] if aggregated else data["t"]),
        price=data["p"],
        size=data["q"],
        side=common_pb2.SIDE_SELL if data["m"] else common_pb2.SIDE_BUY,  # m: buyer is maker
        exchange_time_ms=data["T"],
        receive_time_ns=receive_ns,
        event_time_ms=data.get("E", 0),
        source=common_pb2.TRADE_SOURCE_WEBSOCKET,
        execution_type=data.get("X") or "",
        aggregated=aggregated,
    )


def bybit_reference(message: dict[str, Any], receive_ns: int) -> list[Trade]:
    return [
        Trade(
            trade_id=row["i"],
            price=row["p"],
            size=row["v"],
            side=common_pb2.SIDE_BUY if row["S"] == "Buy" else common_pb2.SIDE_SELL,  # S: taker side
            exchange_time_ms=row["T"],
            receive_time_ns=receive_ns,
            event_time_ms=message["ts"],
            source=common_pb2.TRADE_SOURCE_WEBSOCKET,
            block_trade=row.get("BT") is True,
            rpi=row.get("RPI") is True,
            cross_sequence=int(row.get("seq", 0)),
            tick_direction=row.get("L") or "",
        )
        for row in message["data"]
    ]


def generated_binance_frames(market: MarketKey, count: int) -> list[str]:
    walk = InstrumentWalk(spec_for(InstrumentId(market, "BTCUSDT")), 3)
    frames = []
    for n, trade in enumerate(walk.next_trades(count, 1_790_000_000_000)):
        if n % 2:
            payload = replay_binance.agg_trade_payload(market, "BTCUSDT", trade)
            stream = replay_binance.agg_trade_stream("BTCUSDT")
        else:
            payload = replay_binance.trade_payload(market, "BTCUSDT", trade)
            stream = replay_binance.trade_stream("BTCUSDT")
        frames.append(replay_binance.combined(stream, payload).decode())
    return frames


def generated_bybit_frames(market: MarketKey, frames: int, per_frame: int) -> list[str]:
    walk = InstrumentWalk(spec_for(InstrumentId(market, "BTCUSDT")), 3)
    return [
        replay_bybit.trade_frame(
            market, "BTCUSDT", walk.next_trades(per_frame, 1_790_000_000_000 + n), 1_790_000_000_000 + n
        ).decode()
        for n in range(frames)
    ]


def recorded_binance_frames(path: Path) -> list[str]:
    lines = path.read_text().splitlines()[1:]  # the first line is the connect URL
    return [line.split(": ", 1)[1] for line in lines if line.strip()]


@pytest.mark.parametrize(
    ("source", "market"),
    [
        ("cryptofeed-BINANCE.ws.1.0", MarketKey.BINANCE_SPOT),
        ("cryptofeed-BINANCE_FUTURES.ws.1.0", MarketKey.BINANCE_FUTURES),
        ("binance-trade-frames.jsonl", MarketKey.BINANCE_SPOT),
        ("generated", MarketKey.BINANCE_SPOT),
        ("generated", MarketKey.BINANCE_FUTURES),
    ],
)
def test_binance_trades_are_the_exchange_fields(recorded_dir: Path, source: str, market: MarketKey) -> None:
    if source == "generated":
        frames = generated_binance_frames(market, 400)
    elif source.endswith(".jsonl"):
        frames = [
            json.dumps(json.loads(line)["frame"]) for line in (FIXTURES / source).read_text().splitlines()
        ]
    else:
        frames = recorded_binance_frames(recorded_dir / source)
    payloads = [json.loads(f).get("data", json.loads(f)) for f in frames]
    symbols = {p.get("s") for p in payloads} - {None}
    parser = BinanceFrameParser(market, {s: InstrumentId(market, s) for s in symbols})
    checked = 0
    for text, data in zip(frames, payloads, strict=True):
        frame = parser.parse(text, RECEIVE_NS)
        if data.get("e") not in ("trade", "aggTrade"):
            continue
        assert frame.kind is FrameKind.TRADES and frame.instrument == InstrumentId(market, data["s"])
        (trade,) = frame.trades
        expected = binance_reference(data, RECEIVE_NS)
        assert trade == expected
        assert trade.SerializeToString() == expected.SerializeToString()
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("source", ["recorded", "linear", "spot"])
def test_bybit_trades_are_the_exchange_fields(recorded_dir: Path, source: str) -> None:
    if source == "recorded":
        market = MarketKey.BYBIT_LINEAR
        lines = (recorded_dir / "bybit-v5-linear-2025-09-25.jsonl").read_text().splitlines()
        frames = [line.split(" ", 1)[1] for line in lines]
    else:
        market = MarketKey.BYBIT_LINEAR if source == "linear" else MarketKey.BYBIT_SPOT
        frames = generated_bybit_frames(market, 20, 100)
    parser = BybitFrameParser(market, {"BTCUSDT": InstrumentId(market, "BTCUSDT")})
    checked = 0
    for text in frames:
        message = json.loads(text)
        frame = parser.parse(text, RECEIVE_NS)
        if not message.get("topic", "").startswith("publicTrade."):
            continue
        expected = bybit_reference(message, RECEIVE_NS)
        assert list(frame.trades) == expected
        checked += len(expected)
    assert checked >= 1


def test_remembered_decimals_never_let_a_bad_one_through() -> None:
    instrument = InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")
    parser = BinanceFrameParser(MarketKey.BINANCE_SPOT, {"BTCUSDT": instrument})

    def frame(trade_id: int, price: str, size: str) -> str:
        data = {
            "e": "trade",
            "E": 1,
            "s": "BTCUSDT",
            "t": trade_id,
            "p": price,
            "q": size,
            "T": 1,
            "m": False,
        }
        return json.dumps({"stream": "btcusdt@trade", "data": data})

    assert parser.parse(frame(1, "100.5", "2"), 0).trades[0].price == "100.5"
    assert parser.parse(frame(2, "100.5", "100.5"), 0).trades[0].size == "100.5"  # remembered, either field
    for bad in ("100.5 ", "1e5", "-1", "\u0661\u0660\u0660", "100.", ".5", "1" * 31):
        with pytest.raises(FrameError, match="is not a decimal string"):
            parser.parse(frame(3, bad, "2"), 0)
    # Past the bound the memory starts over and every string is checked again.
    for n in range(KNOWN_DECIMALS_MAX + 10):
        parser.parse(frame(4 + n, f"{n}.25", "2"), 0)
    with pytest.raises(FrameError):
        parser.parse(frame(9, "1e5", "2"), 0)
    assert parser.parse(frame(10, "100.5", "2"), 0).trades[0].price == "100.5"


def test_batch_bytes_are_what_protobuf_makes() -> None:
    instrument = InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT")
    trades = bybit_reference(json.loads(generated_bybit_frames(MarketKey.BYBIT_LINEAR, 1, 50)[0]), RECEIVE_NS)
    for batch in (trades[:1], trades, [*trades[:3], Trade(trade_id="x" * 5000, price="1", size="1")]):
        expected = collector_pb2.StreamTradesResponse(
            batch=common_pb2.TradeBatch(instrument=instrument.to_proto(), trades=batch)
        ).SerializeToString()
        run = TradeRun.of(batch, int_ids=False)
        assert stream_trades_response(instrument_field(instrument), run) == expected


@pytest.mark.parametrize("scenario", hotpath.SCENARIOS, ids=lambda s: s.instrument.key)
def test_subscriber_gets_every_frame_trade_once_in_order(scenario: hotpath.Scenario) -> None:
    """Through the real reader, sequencer and bus (only the socket is a stand-in handing out frames,
    several per event-loop turn)."""
    texts = hotpath.build_frames(scenario, 3000)
    _, delivered = asyncio.run(hotpath.through_collector([scenario.instrument], hotpath.messages(texts), 37))
    received = [
        trade
        for message in delivered
        for trade in collector_pb2.StreamTradesResponse.FromString(message).batch.trades
    ]
    expected: list[Trade] = []
    for text in texts:
        message = json.loads(text)
        if scenario.instrument.market.is_binance:
            expected.append(binance_reference(message["data"], 0))
        else:
            expected.extend(bybit_reference(message, 0))
    assert all(t.receive_time_ns > 0 for t in received)
    for trade in received:
        trade.ClearField("receive_time_ns")  # the reader's clock
    assert received == expected
    assert len(delivered) < len(texts)  # batched: fewer messages than frames


def test_interleaved_instruments_of_one_connection_stay_apart_and_in_order() -> None:
    market = MarketKey.BINANCE_SPOT
    walks = {
        symbol: InstrumentWalk(spec_for(InstrumentId(market, symbol)), 5) for symbol in ("BTCUSDT", "ETHUSDT")
    }
    texts: list[str] = []
    expected: dict[str, list[Trade]] = {symbol: [] for symbol in walks}
    # Runs of one symbol of varying length, so that a turn's batch switches instrument mid-way.
    for n in range(600):
        symbol = "ETHUSDT" if (n // 7) % 3 == 1 or n % 11 == 0 else "BTCUSDT"
        (trade,) = walks[symbol].next_trades(1, 1_790_000_000_000 + n)
        payload = replay_binance.trade_payload(market, symbol, trade)
        texts.append(replay_binance.combined(replay_binance.trade_stream(symbol), payload).decode())
        expected[symbol].append(binance_reference(json.loads(payload), 0))
    instruments = [InstrumentId(market, symbol) for symbol in walks]
    _, delivered = asyncio.run(hotpath.through_collector(instruments, hotpath.messages(texts), 25))
    received: dict[str, list[Trade]] = {symbol: [] for symbol in walks}
    for message in delivered:
        batch = collector_pb2.StreamTradesResponse.FromString(message).batch
        for got in batch.trades:
            got.ClearField("receive_time_ns")
            received[batch.instrument.symbol].append(got)
    assert received == expected


def test_bybit_trades_resent_or_repeated_in_a_frame_are_delivered_once() -> None:
    market = MarketKey.BYBIT_LINEAR
    texts = generated_bybit_frames(market, 30, 20)
    repeated = json.loads(texts[5])
    repeated["data"].insert(3, repeated["data"][2])  # the same trade twice in one frame
    frames = [*texts[:5], json.dumps(repeated), *texts[6:20], texts[12], *texts[20:]]  # frame 12 resent
    expected = [t for text in texts for t in bybit_reference(json.loads(text), 0)]
    _, delivered = asyncio.run(
        hotpath.through_collector([InstrumentId(market, "BTCUSDT")], hotpath.messages(frames), 4)
    )
    received = []
    for message in delivered:
        for trade in collector_pb2.StreamTradesResponse.FromString(message).batch.trades:
            trade.ClearField("receive_time_ns")
            received.append(trade)
    assert received == expected


def test_bus_batches_never_exceed_the_largest_batch() -> None:
    """A reader hands over a whole event-loop turn of trades at once; the bus still cuts batches of
    at most MARKETDATA_BATCH_MAX_TRADES, in order."""
    instrument = InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")
    trades = [Trade(trade_id=str(n), price="1", size="1") for n in range(52)]

    async def publish() -> list[list[str]]:
        bus = TradeBus(CollectorRegistry(), max_batch=20, subscriber_capacity=100)
        subscription = bus.subscribe(None)
        # two full batches go at once, 5 wait for the turn
        bus.publish(instrument, TradeRun.of(trades[:45], int_ids=True))
        bus.publish(instrument, TradeRun.of(trades[45:], int_ids=True))
        await asyncio.sleep(0)
        return [_ids(m) for m in subscription.drain()]  # the bus's batches, as a live reader gets them

    batches = asyncio.run(publish())
    assert [len(b) for b in batches] == [20, 20, 12]
    assert [i for b in batches for i in b] == [str(n) for n in range(52)]


def test_bus_gathers_a_busy_feed_and_sends_a_quiet_one_at_once() -> None:
    """MARKETDATA_STREAM_MIN_INTERVAL_MS: the first trade after a quiet spell is its own message at the
    end of its turn; trades of the following turns within the interval share the next message."""
    instrument = InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")

    def run_of(n: int) -> TradeRun:
        return TradeRun.of([Trade(trade_id=str(n), price="1", size="1")], int_ids=True)

    async def publish() -> tuple[list[list[str]], list[list[str]]]:
        bus = TradeBus(CollectorRegistry(), max_batch=1000, subscriber_capacity=100, min_interval_s=1.0)
        subscription = bus.subscribe(None)
        bus.publish(instrument, run_of(1))
        await asyncio.sleep(0)
        at_once = [_ids(m) for m in subscription.drain()]
        for n in range(2, 12):  # ten turns, well inside the interval
            bus.publish(instrument, run_of(n))
            await asyncio.sleep(0)
        held = [_ids(m) for m in subscription.drain()]
        await asyncio.sleep(1.2)
        subscription.close()
        return at_once, held + [_ids(m) async for m in subscription.messages()]

    at_once, later = asyncio.run(publish())
    assert at_once == [["1"]]
    assert later == [[str(n) for n in range(2, 12)]]


def _ids(message: bytes) -> list[str]:
    return [t.trade_id for t in collector_pb2.StreamTradesResponse.FromString(message).batch.trades]


def test_a_subscriber_behind_gets_its_backlog_as_one_message_per_instrument() -> None:
    """Batches that queued while a StreamTrades subscriber was not reading reach it as one message
    per instrument, each holding that instrument's trades in order (and nothing is lost)."""
    spot, futures = (InstrumentId(m, "BTCUSDT") for m in (MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES))

    async def publish() -> list[tuple[str, list[str]]]:
        bus = TradeBus(CollectorRegistry(), max_batch=1000, subscriber_capacity=100)
        subscription = bus.subscribe(None)
        for n in range(1, 9):  # eight turns alternating instruments, nobody reading
            bus.publish(spot if n % 2 else futures, TradeRun.of([Trade(trade_id=str(n))], int_ids=True))
            await asyncio.sleep(0)
        subscription.close()
        out = []
        async for message in subscription.messages():
            batch = collector_pb2.StreamTradesResponse.FromString(message).batch
            out.append((InstrumentId.from_proto(batch.instrument).key, [t.trade_id for t in batch.trades]))
        return out

    assert asyncio.run(publish()) == [
        (spot.key, ["1", "3", "5", "7"]),
        (futures.key, ["2", "4", "6", "8"]),
    ]
