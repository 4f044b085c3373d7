"""StorageService over real gRPC: acknowledgements, queries, limits named in errors, stats, health and
metrics when the store cannot commit."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2, order_book_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2

from .conftest import (
    BTC,
    ETH,
    T0,
    Running,
    bars_as_oracle,
    oracle,
    running_storage,
    storage_settings,
    walk,
)

DAY = 86_400_000


async def invalid(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            async for _ in call:  # type: ignore[attr-defined]
                pass
        else:
            await call  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    return str(caught.value.details())


async def test_acknowledged_batches_are_stored_and_resends_counted_as_duplicates(storage: Running) -> None:
    trades = walk(3000)
    batches = [trades[i : i + 250] for i in range(0, 3000, 250)]
    acks = await storage.write(BTC, batches)
    assert sorted(a.batch_id for a in acks) == list(range(1, 13))
    assert sum(a.inserted for a in acks) == 3000
    again = await storage.write(BTC, batches[3:6])
    assert [(a.inserted, a.duplicates) for a in again] == [(0, 250)] * 3
    got = await storage.trades(BTC, T0, T0 + DAY)
    assert [t.trade_id for t in got] == [t.trade_id for t in trades]
    bars = await storage.footprints(BTC, T0, T0 + DAY)
    assert bars_as_oracle(bars) == oracle(trades, "0.10")


async def test_bad_queries_get_invalid_argument_naming_the_field_and_the_limit(tmp_path: Path) -> None:
    settings = storage_settings(tmp_path, storage_query_max_trades="1000", storage_footprint_max_range="2h")
    async with running_storage(settings) as s:
        await s.write(BTC, [walk(1500)])
        stub = s.stub

        def query(**fields: object) -> object:
            request = storage_pb2.QueryTradesRequest(**fields)  # type: ignore[arg-type]
            return stub.QueryTrades(request)

        btc = [BTC.to_proto()]
        assert "end_time_ms: must be after start_time_ms" in await invalid(
            query(instruments=btc, start_time_ms=T0 + 10, end_time_ms=T0)
        )
        message = await invalid(query(instruments=btc, start_time_ms=T0, end_time_ms=T0 + 8 * DAY))
        assert "longer than the limit of 7 d (MARKETDATA_STORAGE_QUERY_MAX_RANGE)" in message
        message = await invalid(query(instruments=[ETH.to_proto()], start_time_ms=T0, end_time_ms=T0 + 1))
        assert message.startswith(
            "instruments[0]: bybit-spot:ETHUSDT is not stored; stored instruments: binance-futures:BTCUSDT"
        )
        message = await invalid(
            query(instruments=[common_pb2.Instrument(symbol="BTCUSDT")], start_time_ms=T0, end_time_ms=T0 + 1)
        )
        assert message.startswith("instruments[0]: exchange is unspecified")
        assert (
            "limit: 5000 is above the limit of 1000 (MARKETDATA_STORAGE_QUERY_MAX_TRADES)"
            in await invalid(query(instruments=btc, start_time_ms=T0, end_time_ms=T0 + DAY, limit=5000))
        )
        message = await invalid(query(instruments=btc, start_time_ms=T0, end_time_ms=T0 + DAY))
        assert (
            "the range holds more than 1000 trades, the limit (MARKETDATA_STORAGE_QUERY_MAX_TRADES)"
            in message
        )
        assert "page_token:" in await invalid(
            query(instruments=btc, start_time_ms=T0, end_time_ms=T0 + DAY, limit=10, page_token="x")
        )
        footprints = storage_pb2.QueryFootprintsRequest(
            instrument=BTC.to_proto(), start_time_ms=T0, end_time_ms=T0 + 3 * 3_600_000
        )
        assert "longer than the limit of 2 h (MARKETDATA_STORAGE_FOOTPRINT_MAX_RANGE)" in await invalid(
            stub.QueryFootprints(footprints)
        )
        snapshots = storage_pb2.QueryBookSnapshotsRequest(
            instrument=ETH.to_proto(), start_time_ms=T0, end_time_ms=T0 + 1
        )
        assert "instrument: bybit-spot:ETHUSDT is not stored" in await invalid(
            stub.QueryBookSnapshots(snapshots)
        )
        # the service still answers good queries after all that
        assert len(await s.trades(BTC, T0, T0 + DAY, limit=1000)) == 1000


async def test_pages_cover_the_range_exactly_once_across_instruments(storage: Running) -> None:
    btc, eth = walk(700), walk(300, first_id=50_000, seed=9)
    await storage.write(BTC, [btc])
    await storage.write(ETH, [eth], tick="0.01")
    seen: list[tuple[str, str]] = []
    token = ""
    pages = 0
    while True:
        request = storage_pb2.QueryTradesRequest(
            instruments=[BTC.to_proto(), ETH.to_proto()],
            start_time_ms=T0,
            end_time_ms=T0 + DAY,
            limit=256,
            page_token=token,
        )
        token = ""
        async for response in storage.stub.QueryTrades(request):
            key = InstrumentId.from_proto(response.batch.instrument).key
            seen.extend((key, t.trade_id) for t in response.batch.trades)
            token = response.next_page_token or token
        pages += 1
        if not token:
            break
    assert pages == 4  # 1000 trades in pages of 256
    assert seen == [(BTC.key, t.trade_id) for t in btc] + [(ETH.key, t.trade_id) for t in eth]


async def test_book_snapshots_round_trip_with_depth(storage: Running) -> None:
    snapshot = order_book_pb2.OrderBookSnapshot(
        instrument=BTC.to_proto(),
        bids=[order_book_pb2.PriceLevel(price=f"{65000 - n}.10", size="1.0") for n in range(5)],
        asks=[order_book_pb2.PriceLevel(price=f"{65001 + n}.10", size="2.0") for n in range(5)],
        update_id=77,
        exchange_time_ms=T0,
    )
    request = storage_pb2.WriteBookSnapshotsRequest(batch_id=5, snapshots=[snapshot])
    acks = [a async for a in storage.stub.WriteBookSnapshots(iter([request, request]))]
    assert [(a.batch_id, a.inserted, a.duplicates) for a in acks] == [(5, 1, 0), (5, 0, 1)]
    query = storage_pb2.QueryBookSnapshotsRequest(
        instrument=BTC.to_proto(), start_time_ms=T0, end_time_ms=T0 + 1, depth=2
    )
    (got,) = [s async for r in storage.stub.QueryBookSnapshots(query) for s in r.snapshots]
    assert [lv.price for lv in got.bids] == ["65000.10", "64999.10"] and len(got.asks) == 2


async def test_invalid_batch_ends_the_stream_naming_field_and_batch(storage: Running) -> None:
    good = walk(5)
    bad = walk(3, first_id=100)
    bad[1].price = "65000,10"
    requests = [
        storage_pb2.WriteTradesRequest(
            batch_id=1, batch=common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=good), tick_size="0.10"
        ),
        storage_pb2.WriteTradesRequest(
            batch_id=2, batch=common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=bad), tick_size="0.10"
        ),
    ]
    call = storage.stub.WriteTrades(iter(requests))
    acks = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for ack in call:
            acks.append(ack.batch_id)
    assert acks == [1]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "batch 2: batch.trades[1].price: '65000,10' is not a plain decimal"
    assert ("rejected-batch-id", "2") in tuple(caught.value.trailing_metadata() or ())


async def test_full_store_is_reported_in_health_stats_and_metrics_and_nothing_is_acknowledged(
    tmp_path: Path,
) -> None:
    settings = storage_settings(tmp_path, storage_sqlite_max_mb="1")
    async with running_storage(settings) as s:
        await s.write(BTC, [walk(100)])
        big = walk(30_000, first_id=1000, spacing_ms=2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.write(BTC, [big[i : i + 1000] for i in range(0, 30_000, 1000)])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database or disk is full" in str(caught.value.details())
        stats = await s.stub.GetStorageStats(storage_pb2.GetStorageStatsRequest())
        assert not stats.writable and "full" in stats.last_error
        # what was acknowledged before is all there, nothing of the refused batches is
        counts = {c.collection: c.count for c in stats.collections}
        assert counts["trades"] < 30_100
        async with create_channel(s.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status() -> int:
                response = await health.Check(
                    health_pb2.HealthCheckRequest(service="marketdata.v1.StorageService")
                )
                return int(response.status)

            await wait_for_async(status, health_pb2.HealthCheckResponse.NOT_SERVING)
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{s.service.metrics.port}/metrics"
            async with session.get(url) as response:
                text = await response.text()
        assert "marketdata_storage_backend_up 0.0" in text
        assert "marketdata_storage_write_errors_total" in text


async def wait_for_async(probe: object, expected: int, timeout: float = 15.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value}")
        await asyncio.sleep(0.1)


async def test_metrics_and_stats_describe_what_is_stored(storage: Running) -> None:
    trades = walk(1200, spacing_ms=100)
    await storage.write(BTC, [trades[:600], trades[300:]])
    stats = await storage.stub.GetStorageStats(
        storage_pb2.GetStorageStatsRequest(instruments=[BTC.to_proto()])
    )
    by = {c.collection: c for c in stats.collections}
    assert by["trades"].count == 1200 and by["footprints_1m"].count == 2
    assert (by["trades"].oldest_time_ms, by["trades"].newest_time_ms) == (
        trades[0].exchange_time_ms,
        trades[-1].exchange_time_ms,
    )
    assert (
        stats.backend == "sqlite" and stats.writable and stats.store_bytes > 0 and stats.disk_free_bytes > 0
    )
    state = storage.service.store.state
    state.stats = await storage.service.store.run_read(storage.service.store.backend.stats)
    url = f"http://127.0.0.1:{storage.service.metrics.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    for line in (
        'marketdata_storage_trades_written_total{instrument="binance-futures:BTCUSDT"} 1200.0',
        'marketdata_storage_duplicate_trades_total{instrument="binance-futures:BTCUSDT"} 300.0',
        'marketdata_storage_rows{collection="trades",instrument="binance-futures:BTCUSDT"} 1200.0',
        "marketdata_storage_backend_up 1.0",
        "marketdata_storage_disk_free_low 0.0",
        'marketdata_storage_ingest_lag_seconds{instrument="binance-futures:BTCUSDT"}',
        'marketdata_storage_bytes{collection="trades"}',
        "marketdata_storage_disk_free_bytes",
        "marketdata_storage_write_seconds_bucket",
    ):
        assert line in text, line


async def test_min_size_returns_exactly_the_large_trades_in_pages(tmp_path: Path) -> None:
    async with running_storage(storage_settings(tmp_path, storage_query_max_trades="1000")) as s:
        btc, eth = walk(3000), walk(400, first_id=50_000, seed=9)
        await s.write(BTC, [btc[i : i + 500] for i in range(0, 3000, 500)])
        await s.write(ETH, [eth], tick="0.01")
        large = [t for t in btc if Decimal(t.size) >= Decimal("4.5")]
        assert 0 < len(large) < 1000 < len(btc)  # the unfiltered range is above the query limit
        got = await s.trades(BTC, T0, T0 + DAY, min_size="4.500")
        assert [t.trade_id for t in got] == [t.trade_id for t in large]
        # the compare is exact: a size equal to min_size is in, one unit below is out
        edge = btc[0].size
        got = await s.trades(BTC, T0, T0 + DAY, min_size=edge + "0000000000001")
        assert btc[0].trade_id not in {t.trade_id for t in got}
        assert btc[0].trade_id in {t.trade_id for t in await s.trades(BTC, T0, T0 + DAY, min_size=edge)}
        # pages over two instruments with a filter cover each large trade once
        wanted = [(BTC.key, t.trade_id) for t in large] + [
            (ETH.key, t.trade_id) for t in eth if Decimal(t.size) >= Decimal("4.5")
        ]
        seen: list[tuple[str, str]] = []
        token = ""
        while True:
            request = storage_pb2.QueryTradesRequest(
                instruments=[BTC.to_proto(), ETH.to_proto()],
                start_time_ms=T0,
                end_time_ms=T0 + DAY,
                limit=50,
                page_token=token,
                min_size="4.5",
            )
            token = ""
            async for response in s.stub.QueryTrades(request):
                key = InstrumentId.from_proto(response.batch.instrument).key
                seen.extend((key, t.trade_id) for t in response.batch.trades)
                token = response.next_page_token or token
            if not token:
                break
        assert seen == wanted
        for bad in ("-1", "abc", "1e3", " 1"):
            details = await invalid(
                s.stub.QueryTrades(
                    storage_pb2.QueryTradesRequest(
                        instruments=[BTC.to_proto()], start_time_ms=T0, end_time_ms=T0 + DAY, min_size=bad
                    )
                )
            )
            assert details.startswith("min_size:"), details


async def test_get_last_trades_answers_where_each_instruments_history_ends(storage: Running) -> None:
    """Per instrument the trades of its newest stored millisecond; an instrument with nothing stored
    is absent (not an error: a collector asks for every instrument it collects)."""
    trades = walk(500)
    await storage.write(BTC, [trades[250:], trades[:250]])
    await storage.write(ETH, [walk(20, first_id=7000)], tick="0.01")
    sol = InstrumentId.parse("binance-spot:SOLUSDT")
    request = storage_pb2.GetLastTradesRequest(instruments=[BTC.to_proto(), sol.to_proto()])
    response = await storage.stub.GetLastTrades(request)
    assert [
        (InstrumentId.from_proto(b.instrument), [t.trade_id for t in b.trades]) for b in response.batches
    ] == [(BTC, ["500"])]
    assert response.batches[0].trades[0] == trades[-1]
    every = await storage.stub.GetLastTrades(storage_pb2.GetLastTradesRequest())
    assert {InstrumentId.from_proto(b.instrument): b.trades[-1].trade_id for b in every.batches} == {
        BTC: "500",
        ETH: "7019",
    }
    bad = storage_pb2.GetLastTradesRequest(instruments=[common_pb2.Instrument(symbol="BTCUSDT")])
    assert "instruments[0]" in await invalid(storage.stub.GetLastTrades(bad))
