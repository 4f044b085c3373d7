"""Everything one replay exchange holds at run time; the aiohttp app owns one ReplayState."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from marketdata.core.instruments import InstrumentId, MarketKey, parse_symbol
from marketdata.replay_exchange import bybit
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.replay_exchange.depth import DepthHub
from marketdata.replay_exchange.faults import FaultBook
from marketdata.replay_exchange.feeds import MarketFeed
from marketdata.replay_exchange.firehose import Firehose
from marketdata.replay_exchange.generator import InstrumentWalk, TradeGenerator
from marketdata.replay_exchange.peers import Hub, Outbox
from marketdata.replay_exchange.recordings import RecordingTimeline, play, scan
from marketdata.replay_exchange.specs import spec_for
from marketdata.replay_exchange.trades import Tape

log = logging.getLogger(__name__)

IDLE_TICK_S = 0.02


class WeightMeter:
    """Binance REST request weight in the current UTC minute (X-MBX-USED-WEIGHT-1M)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.minute = 0
        self.used = 0

    def add(self, weight: int) -> int:
        minute = int(time.time() // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        self.used += weight
        return self.used

    def over(self) -> bool:
        return self.limit > 0 and self.used > self.limit

    def seconds_to_reset(self) -> int:
        return max(1, 60 - int(time.time() % 60))


class ReplayState:
    def __init__(self, config: ReplayConfig) -> None:
        self.config = config
        self.outbox = Outbox()
        self.faults = FaultBook()
        self.hubs: dict[MarketKey, Hub] = {m: Hub(m) for m in MarketKey}
        self.tapes: dict[InstrumentId, Tape] = {}
        self.feeds: dict[MarketKey, MarketFeed] = {
            m: MarketFeed(m, self.hubs[m], self.tape_for, self.faults, config.trades_per_frame)
            for m in MarketKey
        }
        for instrument in config.instruments:
            self.tape_for(instrument)
        for market, symbols in config.extra_symbols.items():
            for symbol in symbols:
                self.tape_for(InstrumentId(market, parse_symbol(symbol)))
        self.timelines: list[RecordingTimeline] = [t for s in config.recordings for t in scan(s)]
        for timeline in self.timelines:
            for symbol in timeline.symbols:
                self.tape_for(InstrumentId(timeline.market, symbol))
        # An instrument a recording carries is replayed, not generated: two sources on one tape
        # would mix their trade ids.
        recorded = {InstrumentId(t.market, s) for t in self.timelines for s in t.symbols}
        generated = [i for i in config.instruments if i not in recorded]
        self.generator: TradeGenerator | None = None
        self.firehose: Firehose | None = None
        if generated and config.firehose:
            self.firehose = Firehose(self.hubs, config.trades_per_frame, config.max_trades)
            for instrument in generated:
                self.firehose.add(InstrumentWalk(self.tapes[instrument].spec, config.seed))
        elif generated:
            self.generator = TradeGenerator(
                [self.tapes[i].spec for i in generated],
                rate=config.rate,
                seed=config.seed,
                max_trades=config.max_trades,
            )
        self.depth = DepthHub(self)
        for market, symbol in self.depth.recorded.symbols():
            self.tape_for(InstrumentId(market, symbol))  # listed, so its REST snapshot is served
        for market, hub in self.hubs.items():
            hub.on_subscribe = self._subscribed_hook(market)
            hub.on_peer_subscribe = self.depth.on_peer_subscribe
        self.weights: dict[MarketKey, WeightMeter] = {
            m: WeightMeter(config.weight_per_minute(m)) for m in MarketKey if m.is_binance
        }
        self.rest_calls: Counter[str] = Counter()
        self.started_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lookups ------------------------------------------------------------------------------------

    def tape_for(self, instrument: InstrumentId) -> Tape:
        tape = self.tapes.get(instrument)
        if tape is None:
            tape = self.tapes[instrument] = Tape(spec_for(instrument), self.config.history_size)
        return tape

    def symbols(self, market: MarketKey) -> list[str]:
        """The symbols this exchange lists on a market (generated, recorded or extra)."""
        return sorted(i.symbol for i in self.tapes if i.market == market)

    def find_tape(self, market: MarketKey, symbol: str) -> Tape | None:
        try:
            return self.tapes.get(InstrumentId(market, parse_symbol(symbol)))
        except ValueError:
            return None

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def uptime(self) -> float:
        return self.now() - self.started_at

    def flush(self) -> None:
        self.outbox.flush(self.now())

    # -- lifecycle ----------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("replay exchange task %s failed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        # Imported here: these modules act on the state and import this one.
        from marketdata.replay_exchange.fault_actions import schedule_faults
        from marketdata.replay_exchange.keepalive import keep_connections

        self.started_at = self.now()
        if self.generator is not None:
            if not self.config.start_on_subscribe:
                for instrument in self.generator.slots:
                    self.generator.start(instrument, self.started_at)
            self.spawn(self._run_generator(), "replay-generator")
        if self.firehose is not None and not self.config.start_on_subscribe:
            for instrument in self.firehose.instruments:
                self.firehose.start(instrument, self.tapes[instrument], 0.0)
        for timeline in self.timelines:
            self.spawn(
                play(
                    timeline,
                    self.feeds[timeline.market],
                    speed=self.config.speed,
                    loop=self.config.loop,
                    start_delay=self.config.start_delay_s,
                    flush=self.flush,
                ),
                f"replay-recording-{timeline.market}",
            )
        self.spawn(keep_connections(self), "replay-keepalive")
        self.spawn(self.depth.run(), "replay-books")
        schedule_faults(self, self.config.faults)

    async def stop(self) -> None:
        if self.firehose is not None:
            await self.firehose.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run_generator(self) -> None:
        assert self.generator is not None
        generator = self.generator
        interval = self.config.tick_interval_s
        clock = asyncio.get_running_loop()
        while True:
            # Idle (paused, finished or nothing subscribed yet): wake less often.
            await asyncio.sleep(interval if generator.busy() else max(interval, IDLE_TICK_S))
            now = clock.time()
            for instrument, trades in generator.tick(now):
                self.feeds[instrument.market].publish_trades(self.tapes[instrument], trades)
                self.depth.on_trades(instrument, trades)
            self.outbox.flush(now)

    def _subscribed_hook(self, market: MarketKey) -> Callable[[str], None]:
        """Starts a generated instrument when its trade (or aggTrade) stream is first subscribed (any route)."""

        def hook(name: str) -> None:
            if (self.generator is None and self.firehose is None) or not self.config.start_on_subscribe:
                return
            if market.is_binance:
                symbol = name.partition("@")[0] if name.endswith(("@trade", "@aggTrade")) else ""
            else:
                symbol = bybit.topic_symbol(name) if name.startswith("publicTrade.") else ""
            tape = self.find_tape(market, symbol) if symbol else None
            if tape is None:
                return
            if self.firehose is not None:
                self.firehose.start(tape.instrument, tape, self.config.start_delay_s)
            elif self.generator is not None:
                self.generator.start(tape.instrument, self.now() + self.config.start_delay_s)

        return hook
