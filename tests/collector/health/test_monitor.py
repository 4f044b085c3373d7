"""The health monitor without an exchange: a lagging feed and drifting prices show in score, reason,
status and metrics; the skew estimate goes negative when an exchange's clock runs ahead."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest

from marketdata.collector.health.breaker import Breakers
from marketdata.collector.health.monitor import HealthExporter, HealthMonitor
from marketdata.collector.stats import FeedStats
from marketdata.collector.trade_runs import TradeRun
from marketdata.core.config import load_settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2

CLOCK = [time.monotonic()]  # simulated monotonic seconds, one tick each
BS = InstrumentId.parse("binance-spot:BTCUSDT")
YS = InstrumentId.parse("bybit-spot:BTCUSDT")


def monitor() -> tuple[HealthMonitor, dict[MarketKey, FeedStats]]:
    settings = load_settings(
        {"MARKETDATA_INSTRUMENTS": f"{BS.key},{YS.key}", "MARKETDATA_DIVERGENCE_THRESHOLD_BPS": "20"}
    )
    stats = {m: FeedStats(m) for m in (BS.market, YS.market)}
    for s in stats.values():
        s.state = collector_pb2.FEED_STATE_CONNECTED
    return HealthMonitor(settings, stats, None, Breakers(), (BS, YS)), stats


def run(
    m: HealthMonitor, stats: dict[MarketKey, FeedStats], seconds: int, lag_ms: dict[MarketKey, int]
) -> None:
    t0 = CLOCK[0]
    CLOCK[0] += seconds
    for n in range(seconds):
        now_ns = time.time_ns()
        for market, s in stats.items():
            s.messages += 50
            s.last_frame_ns = now_ns
            for _ in range(50):
                s.latency.observe(lag_ms.get(market, 20))
        m.tick(now=t0 + n, now_ns=now_ns)


def trade(price: str) -> TradeRun:
    return TradeRun.of([common_pb2.Trade(trade_id="1", price=price, exchange_time_ms=1_000)], int_ids=True)


def test_a_feed_lagging_by_seconds_loses_points_with_the_reason() -> None:
    m, stats = monitor()
    run(m, stats, 12, {BS.market: 3_000, YS.market: -40})
    lagging = m.feed_health(BS.market, time.time_ns())
    assert lagging.latency_p50_ms == 5000.0 and lagging.score == 70  # bucket bound; capped at 30
    assert lagging.reason == "exchange latency p50 5000 ms"
    ahead = m.feed_health(YS.market, time.time_ns())
    assert ahead.score == 100 and ahead.clock_skew_ms == -40.0  # bybit's clock runs ahead of ours
    assert lagging.clock_skew_ms == 3000.0


def test_drifting_prices_are_flagged_on_both_feeds_and_exported() -> None:
    m, stats = monitor()
    m.on_trades(BS, trade("65000.00"))
    m.on_trades(YS, trade("65006.50"))  # 1 bp
    run(m, stats, 6, {})
    h = m.feed_health(YS.market, time.time_ns())
    assert [(d.other_feed, d.flagged) for d in h.divergences] == [("binance-spot", False)]
    assert 0.9 < h.divergences[0].last_trade_bps < 1.1
    m.on_trades(YS, trade("65260.00"))  # 40 bp
    run(m, stats, 2, {})
    for market, other in ((YS.market, "binance-spot"), (BS.market, "bybit-spot")):
        h = m.feed_health(market, time.time_ns())
        assert h.divergences[0].flagged and h.divergences[0].other_feed == other
        assert h.score == 90 and h.reason == f"prices diverge from {other}"
    registry = CollectorRegistry()
    registry.register(HealthExporter(m))
    text = generate_latest(registry).decode()
    assert (
        'marketdata_collector_divergence_flagged{feed="bybit-spot",reference="binance-spot",symbol="BTCUSDT"} 1.0'
        in text
    )
    assert 'marketdata_collector_feed_health_score{feed="bybit-spot"} 90.0' in text
    assert 'marketdata_collector_exchange_latency_seconds_bucket{feed="bybit-spot",le="0.025"}' in text
