"""Feed health end to end through the replay exchange: a stalled feed shows in its score and reason
within seconds and the `best:` composite fails over and back, each switch recorded; REST 429 then 418
open the backfill breaker, which probes and closes; rejected connects open the connect breaker;
latency and clock skew are reported; unknown composites get INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import grpc
import pytest

from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_book_pb2

from ..conftest import Stack, running_stack

TWO = "binance-spot:BTCUSDT,bybit-spot:BTCUSDT"
SYNCED = order_book_pb2.BOOK_SYNC_STATE_SYNCED


def replay(instruments: str, rate: float, max_trades: int | None = None) -> ReplayConfig:
    return ReplayConfig(
        instruments=tuple(InstrumentId.parse(k) for k in instruments.split(",")),
        rate=rate,
        max_trades=max_trades,
        seed=5,
    )


async def fault(stack: Stack, **spec: Any) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.exchange.http_url}/_replay/faults", json=spec) as response,
    ):
        assert response.status == 200, await response.text()


async def metrics(stack: Stack) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(stack.service.metrics.url + "/metrics") as response,
    ):
        return await response.text()


def health_of(stack: Stack, feed: str) -> Any:
    monitor = stack.service.collector.health
    return next(s for m, s in monitor.feeds.items() if m.value == feed).result


async def test_stall_lowers_score_and_fails_over_and_back() -> None:
    async with running_stack(
        replay(TWO, rate=150),
        TWO,
        stale_timeout_s="30",
        failover_hold_s="0",
        health_window_s="10",
        book_instruments="none",
    ) as stack:
        monitor = stack.service.collector.health
        monitor.tick_s = 0.2
        composite = monitor.composites["best:BTCUSDT"]
        await stack.wait_for(
            lambda: all(s.normal_rate > 20 for s in monitor.feeds.values()), 15, "a normal rate"
        )
        await stack.wait_for(
            lambda: all(s.result.score == 100 for s in monitor.feeds.values()), 10, "healthy feeds"
        )
        assert composite.selected == InstrumentId.parse("binance-spot:BTCUSDT")

        received: list[collector_pb2.StreamTradesResponse] = []
        stream = stack.stub.StreamTrades(collector_pb2.StreamTradesRequest(composites=["best:BTCUSDT"]))

        async def read() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for response in stream:
                    received.append(response)

        reader = asyncio.create_task(read())
        try:
            await stack.wait_for(lambda: len(received) >= 3, 10, "composite batches")
            assert received[0].failover.selected.symbol == "BTCUSDT"
            assert received[0].failover.composite == "best:BTCUSDT"

            await fault(stack, kind="stall", market="binance-spot", seconds=5)
            await stack.wait_for(lambda: health_of(stack, "binance-spot").score < 85, 5, "the score to fall")
            await stack.wait_for(lambda: composite.version == 2, 5, "the failover switch")
            status = await stack.status()
            spot = next(f for f in status.feeds if f.feed == "binance-spot")
            assert spot.health.score < 85 and spot.health.reason.startswith(("no frame for", "message rate"))
            assert spot.health.normal_rate > 20 and spot.health.message_rate < spot.health.normal_rate
            switch = composite.switches[-1]
            assert (switch.from_feed, switch.to_feed) == ("binance-spot", "bybit-spot")
            assert "binance-spot" in switch.reason and switch.time_ns > 0
            await stack.wait_for(
                lambda: any(
                    r.failover.switches and r.failover.switches[-1].to_feed == "bybit-spot" for r in received
                ),
                5,
                "the switch on the stream",
            )
            after = next(
                n
                for n, r in enumerate(received)
                if r.failover.switches and r.failover.switches[-1].to_feed == "bybit-spot"
            )
            assert all(
                r.batch.instrument.exchange == received[after].batch.instrument.exchange
                for r in received[after:]
            )
            assert received[after].batch.trades  # the switch rides on a batch from the new feed

            # The stall ends: binance-spot recovers and the composite returns to it.
            await stack.wait_for(lambda: composite.version == 3, 15, "the switch back")
            back = composite.switches[-1]
            assert (back.from_feed, back.to_feed) == ("bybit-spot", "binance-spot")
            assert "healthy again" in back.reason
        finally:
            stream.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

        text = await metrics(stack)
        assert 'marketdata_collector_feed_health_score{feed="binance-spot"}' in text
        assert 'marketdata_collector_exchange_latency_seconds_count{feed="bybit-spot"}' in text
        assert 'marketdata_collector_failover_switches{composite="best:BTCUSDT"} 2.0' in text
        assert (
            'marketdata_collector_divergence_bps{feed="bybit-spot",kind="last_trade",reference="binance-spot",symbol="BTCUSDT"}'
            in text
        )
        status = await stack.status()
        for f in status.feeds:
            assert f.health.latency_p50_ms >= 0 and f.health.latency_p99_ms >= f.health.latency_p50_ms
            assert abs(f.health.clock_skew_ms) < 1000
            assert {c.call for c in f.health.circuits} >= {"ws_connect", "rest_backfill"}
            assert [d.other_feed for d in f.health.divergences] == [
                "bybit-spot" if f.feed == "binance-spot" else "binance-spot"
            ]
            assert 0 <= f.health.divergences[0].last_trade_bps < 50


async def test_rest_429_then_418_open_the_backfill_breaker_which_recovers() -> None:
    instruments = "binance-spot:BTCUSDT"
    async with running_stack(
        replay(instruments, rate=100),
        instruments,
        breaker_open_s="0.3",
        book_instruments="none",
        backfill_timeout_s="20",
    ) as stack:
        monitor = stack.service.collector.health
        monitor.tick_s = 0.2
        breaker = stack.service.collector.breakers.get(
            InstrumentId.parse(instruments).market, "rest_backfill"
        )
        await stack.wait_for(lambda: stack.received.count() >= 30, 10, "trading")
        await fault(stack, kind="rest", market="binance-spot", status=429, retry_after=1)
        await fault(stack, kind="rest", market="binance-spot", status=418, retry_after=2)
        await fault(stack, kind="skip", market="binance-spot", count=3)  # a gap: backfill runs
        await stack.wait_for(lambda: breaker.opened >= 1, 5, "the breaker to open")
        await stack.wait_for(
            lambda: (
                health_of(stack, "binance-spot").reason.startswith("circuit open: rest_backfill")
                or "circuits" in health_of(stack, "binance-spot").penalties
            ),
            3,
            "the open circuit in the score",
        )
        status = await stack.status()
        circuit = next(c for c in status.feeds[0].health.circuits if c.call == "rest_backfill")
        assert circuit.state in ("open", "half_open") and ("429" in circuit.reason or "418" in circuit.reason)
        await stack.wait_for(lambda: breaker.opened >= 2, 5, "the failed probe (418) to reopen it")
        await stack.wait_for(lambda: breaker.state == 0, 10, "the breaker to close after a good probe")
        feed = stack.service.collector.stats[InstrumentId.parse(instruments).market]
        await stack.wait_for(lambda: feed.totals()["gaps_repaired"] >= 1, 10, "the gap repaired")
        text = await metrics(stack)
        assert 'marketdata_collector_circuit_state{call="rest_backfill",feed="binance-spot"} 0.0' in text


async def test_rejected_connects_open_the_connect_breaker() -> None:
    instruments = "bybit-spot:BTCUSDT"
    async with running_stack(
        replay(instruments, rate=50),
        instruments,
        breaker_failures="2",
        breaker_open_s="1",
        book_instruments="none",
    ) as stack:
        breaker = stack.service.collector.breakers.get(InstrumentId.parse(instruments).market, "ws_connect")
        await stack.wait_for(lambda: stack.received.count() >= 5, 10, "trading")
        await fault(stack, kind="reject", market="bybit-spot", count=3)
        await fault(stack, kind="drop", market="bybit-spot")
        await stack.wait_for(lambda: breaker.opened >= 1, 10, "the connect breaker to open")
        assert "SubscriptionRejected" in breaker.reason
        await stack.wait_for(lambda: breaker.state == 0, 15, "the connect breaker to close")
        count = stack.received.count()
        await stack.wait_for(lambda: stack.received.count() > count + 5, 10, "trading again")


async def test_unknown_composites_are_invalid_argument_naming_what_is_collected() -> None:
    async with running_stack(replay(TWO, rate=20), TWO) as stack:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stack.stub.StreamTrades(
                collector_pb2.StreamTradesRequest(composites=["best:ETHUSDT"])
            ):
                break
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "composites[0]: 'ETHUSDT' is not collected on any feed; composites: best:BTCUSDT" in (
            info.value.details() or ""
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.stub.GetOrderBook(collector_pb2.GetOrderBookRequest(composite="BTCUSDT"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a composite key" in (info.value.details() or "")
        await stack.wait_for(
            lambda: (
                stack.service.collector.books is not None
                and all(s.state == SYNCED for s in stack.service.collector.books.syncs.values())
            ),
            15,
            "books in sync",
        )
        response = await stack.stub.GetOrderBook(
            collector_pb2.GetOrderBookRequest(composite="best:BTCUSDT", depth=5)
        )
        assert response.failover.composite == "best:BTCUSDT"
        assert response.failover.selected.symbol == "BTCUSDT" and response.failover.switches
        assert response.view.book.instrument == response.failover.selected


async def test_lagging_feed_shows_in_latency_score_and_reason_then_recovers() -> None:
    async with running_stack(
        replay(TWO, rate=150), TWO, health_window_s="10", book_instruments="none"
    ) as stack:
        monitor = stack.service.collector.health
        monitor.tick_s = 0.2
        await stack.wait_for(
            lambda: all(s.result.score == 100 for s in monitor.feeds.values()), 15, "healthy"
        )
        await fault(stack, kind="lag", market="bybit-spot", seconds=3)
        await stack.wait_for(
            lambda: feed_health_now(monitor, "bybit-spot").latency_p50_ms >= 2500,
            10,
            "the lag in bybit-spot's latency",
        )
        lagging = feed_health(await stack.status(), "bybit-spot")
        assert lagging.score < 100 and lagging.reason.startswith("exchange latency p50")
        # trade-time alignment against the other exchange shows the feed running seconds behind
        assert lagging.divergences[0].trade_time_offset_ms <= -2500
        assert feed_health(await stack.status(), "binance-spot").score == 100  # the other feed is unaffected
        await fault(stack, kind="lag", market="bybit-spot", seconds=0)
        await stack.wait_for(lambda: health_of(stack, "bybit-spot").score == 100, 20, "recovery")


async def test_drifting_prices_are_flagged_on_both_feeds_and_recover() -> None:
    async with running_stack(
        replay(TWO, rate=150), TWO, divergence_window_s="3", book_instruments="none"
    ) as stack:
        monitor = stack.service.collector.health
        monitor.tick_s = 0.2
        await stack.wait_for(
            lambda: all(s.result.score == 100 for s in monitor.feeds.values()), 15, "healthy"
        )
        await fault(stack, kind="drift", market="bybit-spot", bps=300)
        await stack.wait_for(
            lambda: all(d.flagged for d in feed_health_now(monitor, "bybit-spot").divergences),
            10,
            "the divergence to be flagged",
        )
        status = await stack.status()
        for name in ("bybit-spot", "binance-spot"):
            health = feed_health(status, name)
            (divergence,) = health.divergences
            assert divergence.flagged and divergence.last_trade_bps > 100
            assert health.score < 100 and any(p.startswith("divergence=") for p in health.penalties)
        text = await metrics(stack)
        assert "marketdata_collector_divergence_flagged" in text
        await fault(stack, kind="drift", market="bybit-spot", bps=-300)
        await stack.wait_for(
            lambda: not any(d.flagged for d in feed_health_now(monitor, "bybit-spot").divergences),
            15,
            "the divergence to clear",
        )


def feed_health(status: collector_pb2.GetFeedStatusResponse, name: str) -> collector_pb2.FeedHealth:
    return next(f for f in status.feeds if f.feed == name).health


def feed_health_now(monitor: Any, name: str) -> collector_pb2.FeedHealth:
    health: collector_pb2.FeedHealth = monitor.feed_health(MarketKey.parse(name), time.time_ns())
    return health
