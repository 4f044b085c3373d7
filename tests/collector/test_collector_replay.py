"""The collector end to end: replay exchange (real protocols) -> collector -> StreamTrades over gRPC.

Each test compares what the exchange generated with what a gRPC subscriber received: every trade
once, in order, with exact price, size and side, across the faults the test injects.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import grpc
import pytest

from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2

from .conftest import Stack, assert_exactly_sent, running_stack

ALL_MARKETS = "binance-spot:BTCUSDT,binance-futures:BTCUSDT,bybit-spot:BTCUSDT,bybit-linear:BTCUSDT"


def replay(instruments: str, rate: float, max_trades: int, **extra: Any) -> ReplayConfig:
    return ReplayConfig(
        instruments=tuple(InstrumentId.parse(k) for k in instruments.split(",")),
        rate=rate,
        max_trades=max_trades,
        seed=7,
        **extra,
    )


async def fault(stack: Stack, **spec: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.exchange.http_url}/_replay/faults", json=spec) as response,
    ):
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body


def feed(status: collector_pb2.GetFeedStatusResponse, name: str) -> collector_pb2.FeedStatus:
    return next(f for f in status.feeds if f.feed == name)


async def test_all_markets_every_trade_once_in_order_across_drops_gaps_and_garbage() -> None:
    async with running_stack(replay(ALL_MARKETS, rate=800, max_trades=400), ALL_MARKETS) as stack:
        keys = ALL_MARKETS.split(",")
        await stack.wait_for(
            lambda: all(len(stack.received.trades.get(k, [])) >= 40 for k in keys), 20, "trading"
        )
        await fault(stack, kind="skip", market="binance-spot", count=5)
        await fault(stack, kind="skip", market="binance-futures", count=4)
        await fault(stack, kind="malformed", count=6)
        await stack.wait_for(
            lambda: all(len(stack.received.trades[k]) >= 120 for k in keys), 20, "more trading"
        )
        await fault(stack, kind="drop", mode="abort")  # every market, TCP reset without a close frame
        await stack.wait_for(lambda: all(len(stack.received.trades[k]) >= 250 for k in keys), 20, "recovery")
        await fault(stack, kind="drop", mode="close", code=1011)
        await stack.wait_all_delivered()

        for key in keys:
            got = assert_exactly_sent(stack, key)
            assert all(t.receive_time_ns > 0 and t.exchange_time_ms > 0 for t in got)

        status = await stack.status()
        spot, futures = feed(status, "binance-spot"), feed(status, "binance-futures")
        assert spot.gaps_detected >= 1 and spot.gaps_repaired == spot.gaps_detected
        assert spot.backfilled_trades >= 5 and futures.backfilled_trades >= 4
        assert sum(f.parse_errors for f in status.feeds) >= 6
        assert all(f.reconnects >= 2 for f in status.feeds), [(f.feed, f.reconnects) for f in status.feeds]
        assert all(f.state == collector_pb2.FEED_STATE_CONNECTED for f in status.feeds)
        repaired = [g for g in spot.recent_gaps if g.kind == common_pb2.GAP_KIND_TRADE_ID]
        assert repaired and repaired[0].state == common_pb2.GAP_STATE_REPAIRED
        backfilled = [t for t in stack.received.trades["binance-spot:BTCUSDT"] if t.source == 2]
        assert len(backfilled) == spot.backfilled_trades


async def test_binance_server_shutdown_rotates_without_gap_or_duplicate() -> None:
    instruments = "binance-spot:BTCUSDT,binance-spot:ETHUSDT"
    async with running_stack(replay(instruments, rate=400, max_trades=500), instruments) as stack:
        await stack.wait_for(lambda: stack.received.count() >= 100, 20, "trading")
        await fault(stack, kind="shutdown", market="binance-spot", seconds=1.0)
        await stack.wait_all_delivered()
        for key in instruments.split(","):
            assert_exactly_sent(stack, key)
        spot = feed(await stack.status(), "binance-spot")
        assert spot.rotations == 1
        assert spot.reconnects == 0  # make-before-break: the old connection was never lost
        assert spot.gaps_detected == 0
        assert spot.connections == 1


@pytest.mark.parametrize("api_key", ["test-key", ""])
async def test_binance_futures_backfill_by_id_needs_the_api_key(api_key: str) -> None:
    """With a key, USD-M gaps are fetched by id (historicalTrades); without one only the last 1000
    trades (/fapi/v1/trades) can be had, so an older gap is recorded as unrepaired."""
    instruments = "binance-futures:BTCUSDT"
    settings = {"binance_api_key": api_key, "gap_grace_s": "2.5"}
    async with running_stack(
        replay(instruments, rate=1000, max_trades=3500), instruments, **settings
    ) as stack:
        await stack.wait_for(lambda: stack.received.count() >= 100, 20, "trading")
        await fault(stack, kind="skip", market="binance-futures", count=7)
        # 2.5 s of grace at 1000 trades/s: the missing ids fall out of the last-1000 window
        await stack.wait_for(stack.generator_done, 30, "the generator to finish")
        await stack.wait_for(lambda: stack.received.count() >= 3500 - (0 if api_key else 7), 30, "delivery")
        await asyncio.sleep(0.3)
        futures = feed(await stack.status(), "binance-futures")
        (gap,) = futures.recent_gaps
        assert gap.missing_trades == 7
        if api_key:
            assert_exactly_sent(stack, instruments)
            assert gap.state == common_pb2.GAP_STATE_REPAIRED and futures.backfilled_trades == 7
        else:
            assert gap.state == common_pb2.GAP_STATE_UNREPAIRED and futures.gaps_unrepaired == 1
            assert "no longer serves trade id" in gap.detail
            sent = [str(t["id"]) for t in stack.sent(instruments)]
            missing = sent[sent.index(gap.first_missing_trade_id) :][:7]
            assert [t.trade_id for t in stack.received.trades[instruments]] == [
                i for i in sent if i not in missing
            ]


async def test_stalled_connection_is_detected_and_replaced() -> None:
    instruments = "bybit-linear:BTCUSDT,binance-spot:BTCUSDT"
    async with running_stack(replay(instruments, rate=200, max_trades=600), instruments) as stack:
        await stack.wait_for(lambda: stack.received.count() >= 60, 20, "trading")
        await fault(stack, kind="stall", seconds=4)  # no data, no pongs, socket left open
        await stack.wait_all_delivered(timeout=40)
        for key in instruments.split(","):
            assert_exactly_sent(stack, key)
        status = await stack.status()
        assert all(f.reconnects >= 1 for f in status.feeds)
        assert any("stale" in f.last_error for f in status.feeds)


async def test_rate_limited_backfill_waits_as_told_then_repairs() -> None:
    instruments = "binance-spot:BTCUSDT"
    async with running_stack(replay(instruments, rate=200, max_trades=300), instruments) as stack:
        await stack.wait_for(lambda: stack.received.count() >= 40, 20, "trading")
        await fault(stack, kind="rest", market="binance-spot", count=1, status=429, retry_after=1)
        await fault(stack, kind="skip", market="binance-spot", count=3)
        await stack.wait_all_delivered()
        assert_exactly_sent(stack, instruments)
        spot = feed(await stack.status(), "binance-spot")
        assert spot.gaps_repaired == 1 and spot.backfilled_trades == 3


async def test_bybit_spot_subscribes_in_requests_of_at_most_ten() -> None:
    symbols = [f"C{n:02d}USDT" for n in range(12)]
    instruments = ",".join(f"bybit-spot:{s}" for s in symbols)
    async with running_stack(replay(instruments, rate=600, max_trades=40), instruments) as stack:
        await stack.wait_all_delivered()
        for key in instruments.split(","):
            assert_exactly_sent(stack, key)
        spot = feed(await stack.status(), "bybit-spot")
        assert spot.last_error == "" and spot.connections == 1


async def test_rejected_subscription_is_reported_and_retried() -> None:
    instruments = "bybit-linear:BTCUSDT"
    async with running_stack(replay(instruments, rate=100, max_trades=150), instruments) as stack:
        await stack.wait_for(lambda: stack.received.count() >= 20, 20, "trading")
        await fault(stack, kind="reject", market="bybit-linear", count=1)
        await fault(stack, kind="drop", market="bybit-linear")
        await stack.wait_all_delivered()
        assert_exactly_sent(stack, instruments)
        linear = feed(await stack.status(), "bybit-linear")
        assert linear.reconnects == 1  # the refused attempt was retried until it worked
        assert "subscription refused" in linear.last_error


async def test_stream_trades_filters_and_refuses_unknown_instruments() -> None:
    instruments = "binance-spot:BTCUSDT,bybit-linear:BTCUSDT"
    async with running_stack(replay(instruments, rate=200, max_trades=100), instruments) as stack:
        only = InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT")
        stream = stack.stub.StreamTrades(collector_pb2.StreamTradesRequest(instruments=[only.to_proto()]))
        got = []
        async for response in stream:
            assert InstrumentId.from_proto(response.batch.instrument) == only
            got.extend(response.batch.trades)
            if len(got) >= 30:
                break
        stream.cancel()

        bad = collector_pb2.StreamTradesRequest(
            instruments=[only.to_proto(), InstrumentId(MarketKey.BYBIT_SPOT, "XYZUSDT").to_proto()]
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stack.stub.StreamTrades(bad):
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "instruments[1]: bybit-spot:XYZUSDT is not collected" in (info.value.details() or "")

        unspecified = collector_pb2.StreamTradesRequest(instruments=[common_pb2.Instrument(symbol="BTCUSDT")])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stack.stub.StreamTrades(unspecified):
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "instruments[0]: exchange is unspecified" in (info.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.stub.GetFeedStatus(collector_pb2.GetFeedStatusRequest(feeds=["kraken"]))
        assert "feeds[0]: unknown market 'kraken'" in (info.value.details() or "")


async def test_metrics_endpoint_reports_feed_counters() -> None:
    instruments = "binance-spot:BTCUSDT"
    async with running_stack(replay(instruments, rate=200, max_trades=50), instruments) as stack:
        await stack.wait_all_delivered()
        url = f"http://127.0.0.1:{stack.service.metrics.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        assert (
            'marketdata_collector_trades_total{feed="binance-spot",instrument="binance-spot:BTCUSDT"} 50.0'
            in text
        )
        assert 'marketdata_collector_connections{feed="binance-spot"} 1.0' in text
        assert 'marketdata_collector_batch_trades_bucket{feed="binance-spot"' in text
        assert 'grpc_server_started_total{grpc_method="StreamTrades"' in text


async def test_quiet_feed_status_before_any_trade() -> None:
    instruments = "bybit-spot:BTCUSDT"
    async with running_stack(replay(instruments, rate=1, max_trades=1), instruments) as stack:
        status = await stack.status()
        (spot,) = status.feeds
        assert spot.feed == "bybit-spot" and spot.exchange == common_pb2.EXCHANGE_BYBIT
        assert [i.instrument.symbol for i in spot.instruments] == ["BTCUSDT"]
        await asyncio.sleep(0)
