"""Health score formula, circuit breaker states, latency quantiles, failover rule, composite streams."""

from __future__ import annotations

import pytest

from marketdata.collector.health.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen
from marketdata.collector.health.failover import (
    Composite,
    CompositeSubscription,
    composites_of,
    resolve,
)
from marketdata.collector.health.latency import LatencyHistogram, quantile_ms
from marketdata.collector.health.score import HealthInputs, score
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2

BS, BF, YS = (
    InstrumentId.parse(k) for k in ("binance-spot:BTCUSDT", "binance-futures:BTCUSDT", "bybit-spot:BTCUSDT")
)


def healthy(**changes: object) -> HealthInputs:
    base = HealthInputs(
        connected=True, message_rate=50, normal_rate=50, last_message_age_s=0.1, latency_p50_ms=25
    )
    for k, v in changes.items():
        setattr(base, k, v)
    return base


def test_healthy_feed_scores_100_ok() -> None:
    result = score(healthy())
    assert (result.score, result.reason, result.penalties) == (100, "ok", {})


def test_each_input_lowers_the_score_and_the_worst_names_the_reason() -> None:
    stalled = score(healthy(last_message_age_s=8.0, message_rate=0.0))
    assert stalled.score == 100 - 45 - 30
    assert stalled.reason.startswith("no frame for 8.0 s") and "rate" in stalled.reason
    lagging = score(healthy(latency_p50_ms=3500))
    assert lagging.score == 70 and lagging.reason == "exchange latency p50 3500 ms"
    assert score(healthy(reconnects=2)).score == 80
    assert score(healthy(gaps=1, unrepaired_gaps=1)).score == 80
    assert score(healthy(book_resyncs=1)).score == 95
    assert score(healthy(open_circuits=["rest_backfill"])).reason == "circuit open: rest_backfill"
    assert score(healthy(diverging=["binance-spot"])).score == 90
    assert score(HealthInputs()).score == 15  # never connected, no frame yet
    # A quiet market (normal below 0.5 frames/s) is not judged on its rate.
    assert score(healthy(message_rate=0.0, normal_rate=0.2)).score == 100


def test_breaker_opens_after_failures_probes_half_open_and_closes() -> None:
    t = [0.0]
    b = CircuitBreaker(
        "binance-spot", "ws_connect", failures=3, open_s=2.0, max_open_s=8.0, clock=lambda: t[0]
    )
    for _ in range(2):
        b.allow()
        b.failure("refused")
    assert b.state == CLOSED
    b.allow()
    b.failure("refused")
    assert b.state == OPEN and b.opened == 1
    with pytest.raises(CircuitOpen):
        b.allow()
    t[0] = 2.1
    b.allow()  # the probe
    assert b.state == HALF_OPEN
    with pytest.raises(CircuitOpen):
        b.allow()  # only one probe at a time
    b.failure("refused")  # a failed probe doubles the period
    assert b.state == OPEN and b.open_until == pytest.approx(2.1 + 4.0)
    t[0] = 6.2
    b.allow()
    b.success()
    assert b.state == CLOSED and b.consecutive == 0 and b.rejected == 2


def test_breaker_probe_given_up_lets_the_next_call_probe() -> None:
    t = [0.0]
    b = CircuitBreaker("binance-spot", "rest_backfill", failures=1, open_s=1.0, clock=lambda: t[0])
    b.allow()
    b.failure("500")
    t[0] = 1.5
    b.allow()  # the probe, then cancelled (a backfill timeout) before its answer
    b.abandon()
    b.allow()  # not stuck: the next call probes
    assert b.state == HALF_OPEN and b.rejected == 0


def test_breaker_429_418_open_at_once_for_at_least_retry_after() -> None:
    t = [0.0]
    b = CircuitBreaker("binance-spot", "rest_snapshot", failures=5, open_s=1.0, clock=lambda: t[0])
    b.allow()
    b.failure("429", retry_after=7.0, ban=True)
    assert b.state == OPEN and b.wait_s() == pytest.approx(7.0)
    t[0] = 7.5
    b.allow()
    b.failure("418 banned", retry_after=30.0, ban=True)
    assert b.state == OPEN and b.wait_s() == pytest.approx(30.0)


def test_latency_histogram_and_quantiles() -> None:
    h = LatencyHistogram()
    for ms in (3, 20, 20, 40, 3000, -5):
        h.observe(ms)
    assert h.count == 6 and h.take_min() == -5 and h.min_ms is None
    assert quantile_ms(h.counts, 0.5) == 25.0
    assert quantile_ms(h.counts, 0.99) == 5000.0
    assert quantile_ms([0] * len(h.counts), 0.5) is None


def test_failover_rule_margin_hold_and_return_to_the_preferred_feed() -> None:
    c = Composite("BTCUSDT", [YS, BS, BF])
    c.update({BS.market: 100, BF.market: 100, YS.market: 100}, {}, 15, 10, now=0)
    assert c.selected == BS and c.switches[-1].from_feed == ""
    reasons = {BS.market: "no frame for 5.0 s"}
    c.update({BS.market: 90, BF.market: 100, YS.market: 100}, reasons, 15, 10, now=20)
    assert c.selected == BS  # within the margin
    c.update({BS.market: 40, BF.market: 100, YS.market: 100}, reasons, 15, 10, now=21)
    assert c.selected == BF and "no frame for 5.0 s" in c.switches[-1].reason
    c.update({BS.market: 100, BF.market: 100, YS.market: 100}, {}, 15, 10, now=25)
    assert c.selected == BF  # held
    c.update({BS.market: 90, BF.market: 100, YS.market: 100}, {}, 15, 10, now=32)
    assert c.selected == BS and "preferred binance-spot healthy again" in c.switches[-1].reason
    assert [(s.from_feed, s.to_feed) for s in c.switches] == [
        ("", "binance-spot"),
        ("binance-spot", "binance-futures"),
        ("binance-futures", "binance-spot"),
    ]


def test_resolve_names_what_is_collected() -> None:
    composites = composites_of([BS, YS])
    assert resolve(composites, "best:BTCUSDT").candidates == [BS, YS]
    with pytest.raises(ValueError, match="'ETHUSDT' is not collected on any feed; composites: best:BTCUSDT"):
        resolve(composites, "best:ETHUSDT")
    with pytest.raises(ValueError, match="not a composite key"):
        resolve(composites, "worst:BTCUSDT")


def test_composite_subscription_follows_the_selected_feed_and_carries_switches() -> None:
    class Metrics:
        class dropped_batches:
            @staticmethod
            def inc() -> None: ...

    c = Composite("BTCUSDT", [BS, YS])
    c.update({BS.market: 100, YS.market: 100}, {}, 15, 0, now=0)
    sub = CompositeSubscription([], [c], 10, Metrics())  # type: ignore[arg-type]

    def batch(i: InstrumentId) -> bytes:
        return collector_pb2.StreamTradesResponse(
            batch=common_pb2.TradeBatch(instrument=i.to_proto(), trades=[common_pb2.Trade(trade_id="1")])
        ).SerializeToString()

    for i in (BS, YS, BS):
        if sub.wants(i):
            sub.put(i, batch(i))
    c.update({BS.market: 10, YS.market: 100}, {}, 15, 0, now=1)
    for i in (BS, YS):
        if sub.wants(i):
            sub.put(i, batch(i))
    got = [collector_pb2.StreamTradesResponse.FromString(m) for m in sub.drain()]
    assert [InstrumentId.from_proto(r.batch.instrument).market for r in got] == [
        MarketKey.BINANCE_SPOT,
        MarketKey.BINANCE_SPOT,
        MarketKey.BYBIT_SPOT,
    ]
    assert got[0].HasField("failover") and not got[1].HasField("failover")
    assert got[2].failover.switches[-1].to_feed == "bybit-spot" and len(got[2].failover.switches) == 2
