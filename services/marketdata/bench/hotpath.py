"""`marketdata bench hotpath`: CPU cost per trade of the collector's hot path, in process.

Pre-built frames (Binance spot `@trade` frames of one trade each, Bybit linear publicTrade frames of
100 trades each, made by the replay exchange's own generator and encoders) are fed through the real
FeedConnection reader -> parser -> sequencer -> TradeBus -> one serialized StreamTradesResponse per
batch, read by a StreamTrades-like subscriber. Only the socket is replaced: a stand-in hands out the
frames and yields to the event loop once per simulated socket read (`read_bytes` of frames), which
is where the bus flushes its micro-batches, as with a real connection that is behind.

The figure is process CPU time (time.process_time) per trade, the best of several repetitions, so
it barely moves with the load other processes put on the machine. The same frames through a loop
that only decodes their JSON give the in-process floor ("bare"), and the ratio bare / ours is the
hot path's share of the bare loop's speed with the socket cost left out.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import orjson
from prometheus_client import CollectorRegistry

from marketdata.collector.collector import Collector
from marketdata.collector.connection import FeedConnection
from marketdata.collector.feed import connection_plans
from marketdata.collector.rest import ExchangeRest
from marketdata.core.config import Settings, load_settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange import binance as replay_binance
from marketdata.replay_exchange import bybit as replay_bybit
from marketdata.replay_exchange.generator import InstrumentWalk
from marketdata.replay_exchange.specs import spec_for
from marketdata.v1 import collector_service_pb2 as collector_pb2

SEED = 7
_TEXT = aiohttp.WSMsgType.TEXT
_CLOSED_MESSAGE = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)


@dataclass(frozen=True)
class Scenario:
    name: str
    instrument: InstrumentId
    trades_per_frame: int


SCENARIOS = (
    Scenario("binance-spot @trade, 1 trade/frame", InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT"), 1),
    Scenario(
        "bybit-linear publicTrade, 100 trades/frame", InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT"), 100
    ),
)


@dataclass
class Result:
    scenario: str
    frames: int
    trades: int
    frames_per_read: int
    repeats: int
    us_per_trade: float  # our hot path, best repetition
    bare_us_per_trade: float  # the same frames, JSON decode only
    share_of_bare: float  # bare / ours
    trades_per_cpu_s: float
    batches: int
    delivered_trades: int


def build_frames(scenario: Scenario, trades: int) -> list[str]:
    """Frames as the collector's connection receives them (the combined-stream form for Binance)."""
    instrument = scenario.instrument
    walk = InstrumentWalk(spec_for(instrument), SEED)
    time_ms = 1_790_000_000_000
    frames: list[str] = []
    per_frame = scenario.trades_per_frame
    for _ in range(max(1, trades // per_frame)):
        time_ms += 1
        batch = walk.next_trades(per_frame, time_ms)
        if instrument.market.is_binance:
            stream = replay_binance.trade_stream(instrument.symbol)
            payload = replay_binance.trade_payload(instrument.market, instrument.symbol, batch[0])
            frames.append(replay_binance.combined(stream, payload).decode())
        else:
            frames.append(
                replay_bybit.trade_frame(instrument.market, instrument.symbol, batch, time_ms).decode()
            )
    return frames


class ReplayedSocket:
    """Stands in for aiohttp's ClientWebSocketResponse: the frames, then CLOSED; it yields to the
    event loop before every `per_read`-th frame, as a reader does when the socket buffer runs dry."""

    close_code = 1000

    def __init__(self, messages: Sequence[aiohttp.WSMessage], per_read: int) -> None:
        self._messages = messages
        self._per_read = per_read
        self._next = 0

    async def receive(self) -> aiohttp.WSMessage:
        index = self._next
        if index >= len(self._messages):
            return _CLOSED_MESSAGE
        self._next = index + 1
        if index % self._per_read == 0:
            await asyncio.sleep(0)
        return self._messages[index]

    async def pong(self, data: bytes) -> None:
        pass


def settings_for(instruments: Sequence[InstrumentId]) -> Settings:
    return load_settings(
        {"MARKETDATA_INSTRUMENTS": ",".join(i.key for i in instruments), "MARKETDATA_LOG_LEVEL": "WARNING"}
    )


def messages(frames: Sequence[str]) -> list[aiohttp.WSMessage]:
    return [aiohttp.WSMessage(_TEXT, text, None) for text in frames]


async def through_collector(
    instruments: Sequence[InstrumentId], frames: Sequence[aiohttp.WSMessage], per_read: int
) -> tuple[float, list[bytes]]:
    """CPU seconds to take `frames` (of `instruments`, all of one market) through the collector's
    path, from one connection to a subscriber of every instrument; the serialized batches."""
    settings = settings_for(instruments)
    collector = Collector(settings, CollectorRegistry())
    market = instruments[0].market
    async with aiohttp.ClientSession() as session:
        collector.use_rest(ExchangeRest(session, settings, collector.breakers))
        (plan,) = connection_plans(market, instruments, settings)
        connection = FeedConnection(
            plan, session, collector.stats[market], collector.on_trades, settings.stale_timeout_s
        )
        connection._ws = ReplayedSocket(frames, per_read)  # type: ignore[assignment]
        subscription = collector.bus.subscribe(None)
        delivered: list[bytes] = []

        async def subscriber() -> None:
            append = delivered.append
            async for message in subscription.messages():
                append(message)

        started = time.process_time()
        reader = asyncio.create_task(subscriber())
        await connection._read()
        collector.bus.flush()
        subscription.close()
        await reader
        spent = time.process_time() - started
        for sequencer in collector._sequencers.values():
            await sequencer.close()
    return spent, delivered


async def bare_loop(frames: Sequence[aiohttp.WSMessage], per_read: int) -> float:
    socket = ReplayedSocket(frames, per_read)
    loads = orjson.loads
    started = time.process_time()
    count = 0
    while True:
        message = await socket.receive()
        if message.type is not _TEXT:
            break
        frame = loads(message.data)
        count += len(frame["data"]) if "topic" in frame else 1
    return time.process_time() - started


def frames_per_read(frames: Sequence[aiohttp.WSMessage], read_bytes: int) -> int:
    mean = sum(len(f.data) for f in frames) / len(frames)
    return max(1, int(read_bytes // (mean + 4)))  # + the WebSocket frame header


def run_scenario(scenario: Scenario, trades: int, repeats: int, read_bytes: int) -> Result:
    frames = messages(build_frames(scenario, trades))
    per_read = frames_per_read(frames, read_bytes)
    total = len(frames) * scenario.trades_per_frame
    best = bare = float("inf")
    delivered: list[bytes] = []
    # The frames stay alive throughout: frozen, the garbage collector does not walk them again and
    # again, which a collector's heap would not make it do either.
    gc.collect()
    gc.freeze()
    try:
        for _ in range(repeats):
            delivered = []
            gc.collect()
            spent, delivered = asyncio.run(through_collector([scenario.instrument], frames, per_read))
            best = min(best, spent)
            gc.collect()
            bare = min(bare, asyncio.run(bare_loop(frames, per_read)))
    finally:
        gc.unfreeze()
    delivered_trades = sum(
        len(collector_pb2.StreamTradesResponse.FromString(m).batch.trades) for m in delivered
    )
    return Result(
        scenario=scenario.name,
        frames=len(frames),
        trades=total,
        frames_per_read=per_read,
        repeats=repeats,
        us_per_trade=best / total * 1e6,
        bare_us_per_trade=bare / total * 1e6,
        share_of_bare=bare / best,
        trades_per_cpu_s=total / best,
        batches=len(delivered),
        delivered_trades=delivered_trades,
    )


def main(trades: int, repeats: int, read_bytes: int) -> list[Result]:
    return [run_scenario(s, trades, repeats, read_bytes) for s in SCENARIOS]


def table(results: list[Result]) -> str:
    lines = [
        f"{'scenario':<44} {'trades':>8} {'us/trade':>9} {'bare us':>8} {'share':>6} {'trades/cpu-s':>13} {'batches':>8}",
    ]
    for r in results:
        lines.append(
            f"{r.scenario:<44} {r.trades:>8} {r.us_per_trade:>9.2f} {r.bare_us_per_trade:>8.2f} "
            f"{r.share_of_bare:>6.0%} {r.trades_per_cpu_s:>13,.0f} {r.batches:>8}"
        )
        if r.delivered_trades != r.trades:
            lines.append(f"  !! delivered {r.delivered_trades} of {r.trades} trades")
    return "\n".join(lines)


def as_json(results: list[Result]) -> dict[str, Any]:
    return {"hotpath": [asdict(r) for r in results]}
