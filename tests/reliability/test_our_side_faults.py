"""Faults on our side, end to end: an unwritable store, a slow StreamTrades consumer, storage
restarted under streaming clients. Each case ends with stored trades equal to the trades the
exchange sent and the volume profile equal to a recompute.

Already covered elsewhere (not repeated here): storage SIGKILLed mid-stream at 10k trades/s and
restarted (tests/storage/test_collector_to_storage.py::test_sigkill_...), storage down with the
collector's buffer shedding past its bound (same file), Redis stopped and started under storage
(tests/storage/test_cache.py::test_storage_works_without_redis_and_recovers_when_it_returns), a full
store reported in health, stats and metrics (tests/storage/test_service.py)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import grpc
import pytest

from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import common_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import volume_profile_service_pb2 as profile_pb2
from tests.storage.conftest import wait_for

from .stack import (
    System,
    assert_profile_equals_recompute,
    assert_stored_equals_sent,
    replay_config,
    running_system,
    sent_trades,
)

pytestmark = pytest.mark.reliability

LINEAR = "binance-futures:BTCUSDT,bybit-linear:BTCUSDT"


async def metrics_text(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_unwritable_store_buffers_in_the_collector_alerts_and_recovers(tmp_path: Path) -> None:
    """The store fills up (SQLite at its size cap refuses every commit): storage acknowledges nothing
    and says so (health, backend_up 0), the collector keeps the unacknowledged batches (the gauge the
    UnackedBacklog alert watches grows, nothing is shed); once storage is back with room, everything
    is resent and stored once."""
    replay = replay_config(LINEAR, rate=3000, max_trades=9000, trades_per_frame=200)
    async with running_system(tmp_path, replay, LINEAR, storage_sqlite_max_mb="1") as system:
        writer = system.collector.collector.storage
        assert writer is not None and writer.trades is not None
        stream = writer.trades

        async def unwritable() -> bool:
            stats = await system.storage.stub.GetStorageStats(storage_pb2.GetStorageStatsRequest())
            return not stats.writable

        for _ in range(400):
            if await unwritable():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the store never filled up")
        await wait_for(lambda: stream.unacked_items >= 1000, 30, "a backlog in the collector")
        for _ in range(100):  # storage evaluates its health every second
            storage_metrics = await metrics_text(system.storage.service.metrics.port)
            if gauge(storage_metrics, "marketdata_storage_backend_up") == 0.0:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("marketdata_storage_backend_up stayed 1 with an unwritable store")
        collector_metrics = await metrics_text(system.collector.metrics.port)
        assert gauge(collector_metrics, "marketdata_collector_storage_unacked_trades") >= 1000
        # Room again: the operator raises the cap (or frees the disk) and restarts storage.
        await system.restart_storage(storage_sqlite_max_mb="0")
        await system.wait_all_stored()
        assert stream.shed_items == 0 and stream.resent_batches > 0
        for instrument in system.instruments:
            await assert_stored_equals_sent(system.storage, system.exchange, instrument)
            await assert_profile_equals_recompute(system, instrument)


async def test_slow_stream_consumer_is_bounded_and_nobody_else_notices(tmp_path: Path) -> None:
    """A StreamTrades client that stops reading: its queue is bounded (oldest batches dropped and
    counted); a reading client and storage get every trade exactly once."""
    instruments = "binance-spot:BTCUSDT"
    replay = replay_config(instruments, rate=1500, max_trades=12000)
    async with running_system(
        tmp_path, replay, instruments, subscriber_queue_batches="256", batch_max_trades="20"
    ) as system:
        generator = system.exchange.state.generator
        assert generator is not None
        generator.paused = True
        channel = create_channel(system.collector_addr)
        stub = collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
        # The slow client's receive window stays at its initial 64 KiB (no BDP growth), so the
        # collector's queue for it fills within a second of trading.
        slow_channel = grpc.aio.insecure_channel(system.collector_addr, options=[("grpc.http2.bdp_probe", 0)])
        slow_stub = collector_grpc.CollectorServiceStub(slow_channel)  # type: ignore[no-untyped-call]
        slow = slow_stub.StreamTrades(collector_pb2.StreamTradesRequest())
        fast = stub.StreamTrades(collector_pb2.StreamTradesRequest())
        got: list[common_pb2.Trade] = []

        async def read_fast() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for response in fast:
                    got.extend(response.batch.trades)

        reader = asyncio.create_task(read_fast())
        bus = system.collector.collector.bus
        try:
            await wait_for(lambda: len(bus._subscribers) >= 2, 10, "both subscribers")
            generator.paused = False
            await system.wait_all_stored()
            expected = [t.trade_id for t in sent_trades(system.exchange, InstrumentId.parse(instruments))]
            dropped = [s.dropped for s in bus._subscribers]
            await wait_for(lambda: len(got) >= len(expected), 30, f"the reader ({len(got)}, {dropped})")
            assert [t.trade_id for t in got] == expected
            assert max(dropped) > 0 and min(dropped) == 0, dropped
            text = await metrics_text(system.collector.metrics.port)
            assert gauge(text, "marketdata_collector_subscriber_dropped_batches_total") == max(dropped)
        finally:
            slow.cancel()
            fast.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await channel.close()
            await slow_channel.close()
        for instrument in system.instruments:
            await assert_stored_equals_sent(system.storage, system.exchange, instrument)


async def stream_profiles(system: System, received: list[profile_pb2.StreamVolumeProfileResponse]) -> int:
    """A StreamVolumeProfile client that resubscribes whenever its stream ends; returns how often."""
    request = profile_pb2.StreamVolumeProfileRequest(
        instruments=[InstrumentId.parse("binance-futures:BTCUSDT").to_proto()],
        range=profile_pb2.ProfileRange(anchor=profile_pb2.ANCHOR_UTC_DAY),
        interval_ms=200,
    )
    resubscribed = 0
    while True:
        try:
            async for response in system.profile_stub.StreamVolumeProfile(request):
                received.append(response)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
        resubscribed += 1
        await asyncio.sleep(0.2)


async def test_storage_restarted_while_clients_stream(tmp_path: Path) -> None:
    """Storage stops (gracefully) and comes back while the collector streams WriteTrades and a client
    streams the developing volume profile: the collector resends from its last acknowledged batch,
    the client's profile stream keeps coming (resubscribing if it was ended), nothing is lost or
    counted twice."""
    replay = replay_config(LINEAR, rate=1000, max_trades=3000, trades_per_frame=100)
    async with running_system(tmp_path, replay, LINEAR) as system:
        received: list[profile_pb2.StreamVolumeProfileResponse] = []
        writer = system.collector.collector.storage
        assert writer is not None and writer.trades is not None
        stream = writer.trades
        # the profile of an instrument storage holds nothing of yet is INVALID_ARGUMENT: start after
        await wait_for(lambda: stream.acked_items >= 1500, 30, "storage to hold trades")
        client = asyncio.create_task(stream_profiles(system, received))
        try:
            await wait_for(lambda: len(received) >= 2, 30, "streaming")
            await system.restart_storage(down_s=1.0)
            before = len(received)
            await wait_for(lambda: len(received) >= before + 3, 30, "the profile stream to continue")
            await system.wait_all_stored()
        finally:
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client
        assert stream.shed_items == 0
        for instrument in system.instruments:
            await assert_stored_equals_sent(system.storage, system.exchange, instrument)
            await assert_profile_equals_recompute(system, instrument)
