"""Through the replay exchange: GetFeedStatus lists every composite's switches; StreamOrderBook on a
composite follows a switch and says so; trade backfills draw their documented REST weight from the
budget the book snapshots use; a Binance connection that drops before any data counts as a connect
failure, so repeated ones open the connect breaker."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import grpc

from marketdata.collector.health.breaker import CLOSED, OPEN
from marketdata.collector.rest import WeightBudget
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_book_pb2

from ..conftest import Stack, running_stack
from .test_health_replay import TWO, fault, metrics, replay

SPOT = InstrumentId.parse("binance-spot:BTCUSDT")
BYBIT = InstrumentId.parse("bybit-spot:BTCUSDT")
SYNCED = order_book_pb2.BOOK_SYNC_STATE_SYNCED


async def generator(stack: Stack, action: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.exchange.http_url}/_replay/generator", json={"action": action}) as response,
    ):
        assert response.status == 200, await response.text()


def circuit(status: collector_pb2.GetFeedStatusResponse, feed: str, call: str) -> collector_pb2.CircuitStatus:
    health = next(f for f in status.feeds if f.feed == feed).health
    return next(c for c in health.circuits if c.call == call)


async def test_composite_book_stream_follows_the_switch_and_feed_status_lists_it() -> None:
    async with running_stack(replay(TWO, rate=100), TWO, stale_timeout_s="30", failover_hold_s="0") as stack:
        monitor = stack.service.collector.health
        monitor.tick_s = 0.2
        books = stack.service.collector.books
        assert books is not None
        await stack.wait_for(
            lambda: (
                all(s.state == SYNCED for s in books.syncs.values())
                and all(s.result.score == 100 for s in monitor.feeds.values())
            ),
            15,
            "books in sync and healthy feeds",
        )
        views: list[collector_pb2.StreamOrderBookResponse] = []
        stream = stack.stub.StreamOrderBook(
            collector_pb2.StreamOrderBookRequest(composite="best:BTCUSDT", depth=5, interval_ms=100)
        )

        async def read() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for response in stream:
                    views.append(response)

        reader = asyncio.create_task(read())
        try:
            await stack.wait_for(lambda: len(views) >= 2, 5, "book views")
            assert views[0].failover.composite == "best:BTCUSDT"
            assert views[0].view.book.instrument == SPOT.to_proto() == views[0].failover.selected
            assert not views[1].HasField("failover")  # said once, then only on a switch

            await fault(stack, kind="stall", market="binance-spot", seconds=30)
            await stack.wait_for(
                lambda: any(v.view.book.instrument == BYBIT.to_proto() for v in views),
                10,
                "the switched stream",
            )
            switched = next(n for n, v in enumerate(views) if v.view.book.instrument == BYBIT.to_proto())
            notice = views[switched].failover
            assert notice.selected == BYBIT.to_proto()
            assert (notice.switches[-1].from_feed, notice.switches[-1].to_feed) == (
                "binance-spot",
                "bybit-spot",
            )
            await stack.wait_for(lambda: len(views) > switched + 2, 5, "more views")
            assert all(v.view.book.instrument == BYBIT.to_proto() for v in views[switched:])
            assert not any(v.HasField("failover") for v in views[switched + 1 :])
        finally:
            stream.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

        status = await stack.status()
        (failover,) = status.failovers
        assert failover.composite == "best:BTCUSDT" and failover.selected == BYBIT.to_proto()
        assert [(s.from_feed, s.to_feed) for s in failover.switches] == [
            ("", "binance-spot"),
            ("binance-spot", "bybit-spot"),
        ]
        assert all(s.time_ns > 0 and s.reason for s in failover.switches)
        # a feed filter does not hide the composites
        filtered = await stack.stub.GetFeedStatus(collector_pb2.GetFeedStatusRequest(feeds=["bybit-spot"]))
        assert [f.composite for f in filtered.failovers] == ["best:BTCUSDT"]


async def test_trade_backfills_draw_documented_weight_from_the_shared_budget() -> None:
    async with running_stack(replay(TWO, rate=100), TWO, book_instruments="binance-spot:BTCUSDT") as stack:
        collector = stack.service.collector
        rest = collector.rest
        assert rest is not None
        await stack.wait_for(lambda: stack.received.count() >= 30, 10, "trading")
        spot_budget = rest.budget(SPOT.market)
        # Bybit's budget spent: its backfill must wait for weight (1 a second here) before asking
        slow = rest.budgets["bybit"] = WeightBudget(per_minute=60, burst=1)
        slow.tokens = 0.0
        bybit_breaker = collector.breakers.get(BYBIT.market, "rest_backfill")
        bybit_before = bybit_breaker.weight_used
        await fault(stack, kind="skip", market="binance-spot", count=3)  # an id gap: historicalTrades
        await fault(stack, kind="drop", market="bybit-spot")  # a reconnect: recent-trade
        await stack.wait_for(
            lambda: collector.stats[SPOT.market].totals()["gaps_repaired"] >= 1,
            10,
            "the binance-spot gap repaired by backfill",
        )
        await stack.wait_for(lambda: bybit_breaker.weight_used > bybit_before, 10, "the bybit-spot backfill")
        spot_snapshot = collector.breakers.get(SPOT.market, "rest_snapshot")
        await stack.wait_for(lambda: spot_snapshot.weight_used > 0, 10, "a book snapshot")
        spot_backfill = collector.breakers.get(SPOT.market, "rest_backfill").weight_used
        snapshots = spot_snapshot.weight_used
        # one budget for the market: backfills and snapshots both drew from it
        assert spot_budget.taken == spot_backfill + snapshots
        assert spot_backfill > 0 and spot_backfill % 25 == 0  # /api/v3/historicalTrades: weight 25
        assert snapshots % 50 == 0  # /api/v3/depth?limit=1000: weight 50
        bybit_backfill = bybit_breaker.weight_used - bybit_before
        assert bybit_backfill >= 1 and slow.taken == bybit_backfill  # /v5/market/recent-trade: 1 each
        # the same figures in feed status
        status = await stack.status()
        assert circuit(status, "binance-spot", "rest_backfill").weight_used >= spot_backfill
        assert circuit(status, "bybit-spot", "rest_backfill").weight_used >= bybit_before + bybit_backfill
        assert slow.waited_s > 0  # the backfill queued behind the spent budget
        assert circuit(status, "binance-spot", "ws_connect").weight_used == 0
        text = await metrics(stack)
        assert 'marketdata_collector_rest_weight_used_total{call="rest_backfill",feed="binance-spot"}' in text


async def test_binance_connects_dropping_before_any_data_open_the_connect_breaker() -> None:
    instruments = "binance-spot:BTCUSDT"
    async with running_stack(
        replay(instruments, rate=50),
        instruments,
        breaker_failures="3",
        breaker_open_s="1",
        book_instruments="none",
    ) as stack:
        breaker = stack.service.collector.breakers.get(SPOT.market, "ws_connect")
        await stack.wait_for(lambda: stack.received.count() >= 5, 10, "trading")
        assert breaker.consecutive == 0
        # nothing to send: every new connection is accepted, then dropped before any data
        await generator(stack, "pause")
        await fault(stack, kind="drop", market="binance-spot", every=0.3, times=10)
        await stack.wait_for(lambda: breaker.opened >= 1, 10, "the connect breaker to open")
        assert "ended before any data" in breaker.reason and breaker.state in (OPEN, 2)
        status = await stack.status()
        assert circuit(status, "binance-spot", "ws_connect").state in ("open", "half_open")
        await generator(stack, "resume")
        await stack.wait_for(lambda: breaker.state == CLOSED, 15, "the breaker to close on data")
        count = stack.received.count()
        await stack.wait_for(lambda: stack.received.count() > count + 5, 10, "trading again")
