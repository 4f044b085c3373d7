"""The health monitor: once a second it samples every feed's counters, scores the feeds, compares
prices across exchanges and moves the failover composites. Nothing here runs per trade except
`on_trades` (one assignment per flushed batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector as PromCollector

from marketdata.collector.books import BookManager, BookUnavailable
from marketdata.collector.health.breaker import OPEN, STATE_NAMES, Breakers
from marketdata.collector.health.failover import Composite, composites_of
from marketdata.collector.health.latency import BOUNDS_MS, quantile_ms
from marketdata.collector.health.score import HealthInputs, Score, score
from marketdata.collector.stats import FeedStats
from marketdata.collector.trade_runs import TradeRun
from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2

log = logging.getLogger(__name__)

TICK_S = 1.0
RATE_WINDOW_S = 5.0  # the "now" message rate
LATENCY_WINDOW_S = 10.0  # latency quantiles: short, so a lagging feed shows within seconds


@dataclass(slots=True)
class _Sample:
    t: float
    messages: int
    reconnects: int
    gaps: int
    unrepaired: int
    resyncs: int
    latency: list[int]
    min_latency_ms: int | None


@dataclass(slots=True)
class FeedHealthState:
    market: MarketKey
    samples: deque[_Sample] = field(default_factory=deque)
    normal_rate: float = 0.0
    rate: float = 0.0
    inputs: HealthInputs = field(default_factory=HealthInputs)
    result: Score = field(default_factory=lambda: Score(0, "starting", {}))
    p50_ms: float = -1.0
    p99_ms: float = -1.0
    window_min_ms: int | None = None


@dataclass(slots=True)
class _Pair:
    instrument: InstrumentId
    reference: InstrumentId
    history: deque[tuple[float, float, float]] = field(default_factory=deque)  # (t, trade bps, mid bps)
    trade_bps: float = -1.0
    mid_bps: float = -1.0
    offset_ms: int = 0
    flagged: bool = False


def exchange_name(market: MarketKey) -> str:
    return "binance" if market.is_binance else "bybit"


def bps(a: float, b: float) -> float:
    return abs(a - b) / ((a + b) / 2) * 10_000 if a > 0 and b > 0 else -1.0


def reference_of(instruments: list[InstrumentId]) -> InstrumentId:
    """Binance is the market's reference: binance-spot, else binance-futures, else the first."""
    for market in (MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES):
        for i in instruments:
            if i.market == market:
                return i
    return instruments[0]


class HealthMonitor:
    def __init__(
        self,
        settings: Settings,
        stats: Mapping[MarketKey, FeedStats],
        books: BookManager | None,
        breakers: Breakers,
        instruments: tuple[InstrumentId, ...],
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.books = books
        self.breakers = breakers
        self.feeds = {m: FeedHealthState(m) for m in stats}
        # The last delivered run of each instrument; its last trade is parsed when a tick needs it.
        self._last_runs: dict[InstrumentId, TradeRun] = {}
        self.composites: dict[str, Composite] = composites_of(instruments)
        by_symbol: dict[str, list[InstrumentId]] = {}
        for i in instruments:
            by_symbol.setdefault(i.symbol, []).append(i)
        self.pairs: list[_Pair] = []
        for group in by_symbol.values():
            if len(group) > 1:
                ref = reference_of(group)
                self.pairs += [_Pair(i, ref) for i in group if i != ref]
        self.skew_ms: dict[str, float] = {}
        self.tick_s = TICK_S
        self._task: asyncio.Task[None] | None = None

    # -- inputs --------------------------------------------------------------------------------
    def on_trades(self, instrument: InstrumentId, run: TradeRun) -> None:
        """Bus sink: remember the last run of each instrument (one dict store per batch)."""
        self._last_runs[instrument] = run

    def last_trade(self, instrument: InstrumentId) -> common_pb2.Trade | None:
        run = self._last_runs.get(instrument)
        return run.last() if run is not None and run.ids else None

    def _book_resyncs(self, market: MarketKey) -> int:
        if self.books is None:
            return 0
        return sum(s.stats.total_resyncs for i, s in self.books.syncs.items() if i.market == market)

    # -- the loop ------------------------------------------------------------------------------
    def start(self) -> None:
        self.tick()
        self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.tick()
            except Exception:
                log.exception("health tick failed")

    def tick(self, now: float | None = None, now_ns: int | None = None) -> None:
        now = time.monotonic() if now is None else now
        now_ns = time.time_ns() if now_ns is None else now_ns
        window = self.settings.health_window_s
        for market, state in self.feeds.items():
            self._sample(state, self.stats[market], now, now_ns, window)
        self._skew()
        self._consistency(now)
        for state in self.feeds.values():
            state.inputs.diverging = sorted(
                {
                    p.reference.market.value
                    for p in self.pairs
                    if p.flagged and p.instrument.market == state.market
                }
                | {
                    p.instrument.market.value
                    for p in self.pairs
                    if p.flagged and p.reference.market == state.market
                }
            )
            previous = state.result
            state.result = score(state.inputs)
            if previous.reason != state.result.reason and (state.result.score < 80 or previous.score < 80):
                log.info(
                    "feed health changed",
                    extra={
                        "feed": state.market.value,
                        "score": state.result.score,
                        "reason": state.result.reason,
                    },
                )
        scores = {m: s.result.score for m, s in self.feeds.items()}
        reasons = {m: s.result.reason for m, s in self.feeds.items()}
        for composite in self.composites.values():
            before = composite.selected
            composite.update(
                scores, reasons, self.settings.failover_margin, self.settings.failover_hold_s, now
            )
            if composite.selected != before and before is not None:
                log.warning(
                    "failover switch",
                    extra={"composite": composite.key, "switch": str(composite.switches[-1])},
                )

    def _sample(
        self, state: FeedHealthState, stats: FeedStats, now: float, now_ns: int, window: float
    ) -> None:
        totals = stats.totals()
        hist = stats.latency
        sample = _Sample(
            now,
            stats.messages,
            stats.reconnects,
            totals["gaps_detected"],
            totals["gaps_unrepaired"],
            self._book_resyncs(state.market),
            list(hist.counts),
            hist.take_min(),
        )
        samples = state.samples
        samples.append(sample)
        while len(samples) > 2 and now - samples[1].t >= window:
            samples.popleft()
        oldest = samples[0]

        def since(seconds: float) -> _Sample:
            for s in samples:
                if now - s.t <= seconds:
                    return s
            return sample

        recent = since(RATE_WINDOW_S)
        if recent is sample and len(samples) > 1:
            recent = samples[-2]
        dt = sample.t - recent.t
        if dt > 0:
            state.rate = (sample.messages - recent.messages) / dt
            if state.normal_rate == 0.0 and dt >= RATE_WINDOW_S * 0.8:
                state.normal_rate = state.rate
            elif state.normal_rate:
                # The feed's own recent normal: a slow average, slower still while the rate is low
                # (a stall must not become the new normal within the window).
                alpha = min(1.0, self.tick_s / window)
                if state.rate < state.normal_rate * 0.5:
                    alpha /= 10
                state.normal_rate += alpha * (state.rate - state.normal_rate)
        lat = since(LATENCY_WINDOW_S)
        delta = [a - b for a, b in zip(sample.latency, lat.latency, strict=True)]
        p50, p99 = quantile_ms(delta, 0.5), quantile_ms(delta, 0.99)
        state.p50_ms = -1.0 if p50 is None else p50
        state.p99_ms = -1.0 if p99 is None else p99
        mins = [s.min_latency_ms for s in samples if s.min_latency_ms is not None]
        state.window_min_ms = min(mins) if mins else None
        age_s = -1.0 if not stats.last_frame_ns else max(0.0, (now_ns - stats.last_frame_ns) / 1e9)
        breakers = self.breakers.of(state.market)
        for b in breakers:
            b.wait_s()  # moves an open breaker past its period to half-open
        state.inputs = HealthInputs(
            connected=stats.state == collector_pb2.FEED_STATE_CONNECTED,
            message_rate=state.rate,
            normal_rate=state.normal_rate,
            last_message_age_s=age_s,
            reconnects=sample.reconnects - oldest.reconnects,
            gaps=sample.gaps - oldest.gaps,
            unrepaired_gaps=sample.unrepaired - oldest.unrepaired,
            book_resyncs=sample.resyncs - oldest.resyncs,
            latency_p50_ms=state.p50_ms,
            open_circuits=[b.call for b in breakers if b.state == OPEN],
        )

    def _skew(self) -> None:
        by_exchange: dict[str, list[int]] = {}
        for state in self.feeds.values():
            if state.window_min_ms is not None:
                by_exchange.setdefault(exchange_name(state.market), []).append(state.window_min_ms)
        self.skew_ms = {e: float(min(v)) for e, v in by_exchange.items()}

    def _mid(self, instrument: InstrumentId) -> float:
        books = self.books
        if books is None or not books.has_book(instrument):
            return 0.0
        try:
            mid = books.view(instrument, 5).summary.mid
        except BookUnavailable:
            return 0.0
        return float(mid) if mid else 0.0

    def _consistency(self, now: float) -> None:
        window = self.settings.divergence_window_s
        threshold = self.settings.divergence_threshold_bps
        for pair in self.pairs:
            a, b = self.last_trade(pair.instrument), self.last_trade(pair.reference)
            trade = bps(float(a.price), float(b.price)) if a is not None and b is not None else -1.0
            mid = bps(self._mid(pair.instrument), self._mid(pair.reference))
            if a is not None and b is not None:
                pair.offset_ms = a.exchange_time_ms - b.exchange_time_ms
            pair.history.append((now, trade, mid))
            while pair.history and now - pair.history[0][0] > window:
                pair.history.popleft()
            pair.trade_bps = max(h[1] for h in pair.history)
            pair.mid_bps = max(h[2] for h in pair.history)
            pair.flagged = pair.trade_bps > threshold or pair.mid_bps > threshold

    # -- outputs -------------------------------------------------------------------------------
    def feed_health(self, market: MarketKey, now_ns: int) -> collector_pb2.FeedHealth:
        state = self.feeds[market]
        inputs = state.inputs
        stats = self.stats[market]
        now = time.monotonic()
        circuits = []
        for b in self.breakers.of(market):
            wait = b.wait_s() if b.state == OPEN else 0.0
            circuits.append(
                collector_pb2.CircuitStatus(
                    call=b.call,
                    state=STATE_NAMES[b.state],
                    reason=b.reason,
                    retry_in_ms=int(max(0.0, b.open_until - now) * 1000) if wait else 0,
                    opened=b.opened,
                    rejected=b.rejected,
                    weight_used=b.weight_used,
                )
            )
        divergences = []
        for p in self.pairs:
            if market not in (p.instrument.market, p.reference.market):
                continue
            other = p.reference if p.instrument.market == market else p.instrument
            divergences.append(
                collector_pb2.Divergence(
                    symbol=p.instrument.symbol,
                    other_feed=other.market.value,
                    last_trade_bps=round(p.trade_bps, 2),
                    mid_bps=round(p.mid_bps, 2),
                    flagged=p.flagged,
                    trade_time_offset_ms=p.offset_ms if p.instrument.market == market else -p.offset_ms,
                )
            )
        return collector_pb2.FeedHealth(
            score=state.result.score,
            reason=state.result.reason,
            message_rate=round(state.rate, 2),
            normal_rate=round(state.normal_rate, 2),
            last_message_age_ms=-1
            if not stats.last_frame_ns
            else max(0, (now_ns - stats.last_frame_ns) // 1_000_000),
            window_reconnects=inputs.reconnects,
            window_gaps=inputs.gaps,
            window_unrepaired_gaps=inputs.unrepaired_gaps,
            window_book_resyncs=inputs.book_resyncs,
            latency_p50_ms=state.p50_ms,
            latency_p99_ms=state.p99_ms,
            clock_skew_ms=self.skew_ms.get(exchange_name(market), 0.0),
            circuits=circuits,
            divergences=divergences,
            penalties=[f"{k}={v:g}" for k, v in state.result.penalties.items()],
        )


class HealthExporter(PromCollector):
    """Scrape-time metrics: scores, latency histograms, circuit states, divergences, failover."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self._m = monitor

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        m = self._m
        prefix = "marketdata_collector_"
        health = GaugeMetricFamily(prefix + "feed_health_score", "Feed health score 0-100", labels=["feed"])
        for market, state in m.feeds.items():
            health.add_metric([market.value], state.result.score)
        yield health
        latency = HistogramMetricFamily(
            prefix + "exchange_latency_seconds",
            "Exchange time -> receive time, one sample per trade frame",
            labels=["feed"],
        )
        for market, stats in m.stats.items():
            hist = stats.latency
            buckets = []
            cumulative = 0
            for bound, n in zip(BOUNDS_MS, hist.counts, strict=False):
                cumulative += n
                buckets.append((str(bound / 1000), cumulative))
            buckets.append(("+Inf", hist.count))
            latency.add_metric([market.value], buckets, hist.sum_ms / 1000)
        yield latency
        skew = GaugeMetricFamily(
            prefix + "clock_skew_estimate_seconds",
            "Smallest exchange -> receive difference over the health window (network delay + clock offset)",
            labels=["exchange"],
        )
        for exchange, value in m.skew_ms.items():
            skew.add_metric([exchange], value / 1000)
        yield skew
        circuit = GaugeMetricFamily(
            prefix + "circuit_state",
            "Circuit breaker state (0 closed, 1 open, 2 half-open)",
            labels=["feed", "call"],
        )
        weight = CounterMetricFamily(
            prefix + "rest_weight_used",
            "REST request weight drawn from the exchange's budget (documented weight per request)",
            labels=["feed", "call"],
        )
        for b in m.breakers.all.values():
            circuit.add_metric([b.feed, b.call], b.state)
            if b.call != "ws_connect":
                weight.add_metric([b.feed, b.call], b.weight_used)
        yield circuit
        yield weight
        divergence = GaugeMetricFamily(
            prefix + "divergence_bps",
            "Largest price divergence from the reference feed over the window, basis points",
            labels=["symbol", "feed", "reference", "kind"],
        )
        flagged = GaugeMetricFamily(
            prefix + "divergence_flagged",
            "1 when the divergence is past MARKETDATA_DIVERGENCE_THRESHOLD_BPS",
            labels=["symbol", "feed", "reference"],
        )
        for p in m.pairs:
            labels = [p.instrument.symbol, p.instrument.market.value, p.reference.market.value]
            if p.trade_bps >= 0:
                divergence.add_metric([*labels, "last_trade"], p.trade_bps)
            if p.mid_bps >= 0:
                divergence.add_metric([*labels, "mid"], p.mid_bps)
            flagged.add_metric(labels, 1.0 if p.flagged else 0.0)
        yield divergence
        yield flagged
        switches = GaugeMetricFamily(
            prefix + "failover_switches", "Switches of a failover composite key so far", labels=["composite"]
        )
        for c in m.composites.values():
            switches.add_metric([c.key], max(0, c.version - 1))
        yield switches
