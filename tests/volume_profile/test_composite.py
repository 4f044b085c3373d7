"""Volume profiles of a failover composite (`best:SYMBOL`): a feed stalls on the replay exchange, the
collector switches the composite, and a profile over a range spanning the switch reads each feed for
its own stretch and returns the switches; unknown composites are INVALID_ARGUMENT naming what is
collected; `marketdata profile --instrument best:...` asks for the composite."""

from __future__ import annotations

import argparse
import contextlib
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from marketdata.cli import profile as profile_cli
from marketdata.core.composite import Segment, segments_of
from marketdata.core.config import load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import volume_profile_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2_grpc as pb_grpc
from marketdata.volume_profile.server import start_volume_profile_service
from tests.collector.conftest import Stack as CollectorStack
from tests.collector.conftest import running_stack
from tests.collector.health.test_health_replay import TWO, fault, replay
from tests.storage.conftest import Running, running_storage, storage_env, trade
from tests.volume_profile.conftest import oracle_profile, running_profile

MIN = 60_000
SPOT = InstrumentId.parse("binance-spot:BTCUSDT")
BYBIT = InstrumentId.parse("bybit-spot:BTCUSDT")
TICKS = {SPOT: "0.01", BYBIT: "0.01"}


@contextlib.asynccontextmanager
async def profile_service(
    tmp_path: Path, collector: CollectorStack
) -> AsyncIterator[tuple[Running, pb_grpc.VolumeProfileServiceStub]]:
    """Storage, and the volume-profile service reading it and asking the collector about composites."""
    env = storage_env(
        tmp_path,
        volume_profile_port="0",
        volume_profile_metrics_port="0",
        collector_addr=f"127.0.0.1:{collector.service.grpc.port}",
    )
    async with running_storage(load_settings(env)) as storage:
        env["MARKETDATA_STORAGE_ADDR"] = storage.address
        service = await start_volume_profile_service(
            load_settings(env), process_metrics=False, tick_sizes=TICKS, live=False
        )
        channel = create_channel(f"127.0.0.1:{service.grpc.port}")
        try:
            yield storage, pb_grpc.VolumeProfileServiceStub(channel)  # type: ignore[no-untyped-call]
        finally:
            await channel.close()
            await service.stop(grace=0.5)


def minute_trades(
    first_id: int, low: int, start: int, end: int, rng: random.Random
) -> list[common_pb2.Trade]:
    """Trades in [start, end), two per minute, priced low..low+1 (so each feed's rows are its own)."""
    return [
        trade(
            first_id + n,
            f"{low + rng.randint(0, 100) / 100:.2f}",
            f"0.{rng.randint(1, 999):03d}",
            rng.random() < 0.5,
            t + rng.randint(0, MIN - 1),
        )
        for n, t in enumerate(t for t in range(start, end, MIN) for _ in range(2))
    ]


async def test_composite_profile_uses_each_feed_for_its_stretch_and_returns_the_switches(
    tmp_path: Path,
) -> None:
    async with running_stack(
        replay(TWO, rate=100),
        TWO,
        stale_timeout_s="30",  # the stalled socket stays open: the composite stays switched
        failover_hold_s="0",
        book_instruments="none",
    ) as collector:
        monitor = collector.service.collector.health
        monitor.tick_s = 0.2
        composite = monitor.composites["best:BTCUSDT"]
        await collector.wait_for(
            lambda: all(s.result.score == 100 for s in monitor.feeds.values()), 15, "healthy feeds"
        )
        assert composite.selected == SPOT
        await fault(collector, kind="stall", market="binance-spot", seconds=30)
        await collector.wait_for(lambda: composite.selected == BYBIT, 10, "the switch to bybit-spot")
        switch_ms = composite.switches[-1].time_ns // 1_000_000
        switch_minute = switch_ms - switch_ms % MIN
        start, end = switch_minute - 5 * MIN, switch_minute + MIN

        async with profile_service(tmp_path, collector) as (storage, stub):
            rng = random.Random(11)
            spot_trades = minute_trades(1, 100, start, end, rng)
            bybit_trades = minute_trades(10_000, 200, start, end, rng)
            await storage.write(SPOT, [spot_trades], tick="0.01")
            await storage.write(BYBIT, [bybit_trades], tick="0.01")

            request = pb.GetVolumeProfileRequest(
                composites=["best:BTCUSDT"], range=pb.ProfileRange(start_time_ms=start, end_time_ms=end)
            )
            response = await stub.GetVolumeProfile(request)
            (echoed,) = response.failovers
            assert echoed.composite == "best:BTCUSDT"
            assert echoed.selected.exchange == common_pb2.EXCHANGE_BYBIT
            assert [(s.from_feed, s.to_feed) for s in echoed.switches] == [
                ("", "binance-spot"),
                ("binance-spot", "bybit-spot"),
            ]
            assert "bybit-spot scores" in echoed.switches[-1].reason
            # binance-spot up to the minute of the switch, bybit-spot from it
            assert segments_of(echoed, start, end) == (
                Segment(SPOT, start, switch_minute),
                Segment(BYBIT, switch_minute, end),
            )
            used = [t for t in spot_trades if t.exchange_time_ms < switch_minute] + [
                t for t in bybit_trades if t.exchange_time_ms >= switch_minute
            ]
            expected = oracle_profile(used, "0.01")
            rows = [
                (Decimal(r.price), Decimal(r.buy_volume), Decimal(r.sell_volume))
                for r in response.profile.rows
                if Decimal(r.total_volume)
            ]
            assert rows == [r for r in expected["rows"] if r[1] or r[2]]
            assert Decimal(response.profile.total_volume) == expected["total"]
            assert Decimal(response.profile.poc) == expected["poc"]

            # the levels and the developing stream echo the composite too
            levels = await stub.GetVolumeProfileLevels(
                pb.GetVolumeProfileLevelsRequest(
                    composites=["best:BTCUSDT"], range=request.range, naked_poc_sessions=1
                )
            )
            assert levels.poc == response.profile.poc and levels.failovers[0].switches == echoed.switches
            stream = stub.StreamVolumeProfile(
                pb.StreamVolumeProfileRequest(
                    composites=["best:BTCUSDT"], range=pb.ProfileRange(start_time_ms=start)
                )
            )
            first = await anext(aiter(stream))
            stream.cancel()
            assert first.failovers[0].composite == "best:BTCUSDT"
            assert Decimal(first.profile.total_volume) == expected["total"]

            # bad composites: INVALID_ARGUMENT naming the field and what is collected
            for composites, instruments, message in (
                (
                    ["best:ETHUSDT"],
                    [],
                    "composites[0]: 'ETHUSDT' is not collected on any feed; composites: best:BTCUSDT",
                ),
                (["BTCUSDT"], [], "composites[0]: 'BTCUSDT' is not a composite key (best:SYMBOL)"),
                (
                    ["best:BTCUSDT"],
                    [SPOT.to_proto()],
                    "composites[0]: best:BTCUSDT follows binance-spot:BTCUSDT",
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.GetVolumeProfile(
                        pb.GetVolumeProfileRequest(
                            composites=composites, instruments=instruments, range=request.range
                        )
                    )
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert message in (info.value.details() or "")


async def test_composites_without_a_collector_are_a_clear_invalid_argument(tmp_path: Path) -> None:
    async with running_profile(tmp_path, collector_addr="") as stack:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.stub.GetVolumeProfile(
                pb.GetVolumeProfileRequest(
                    composites=["best:BTCUSDT"], range=pb.ProfileRange(start_time_ms=0, end_time_ms=MIN)
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "composites: composites need the collector" in (info.value.details() or "")
        assert "MARKETDATA_COLLECTOR_ADDR" in (info.value.details() or "")


def test_cli_sends_composites_and_prints_the_switches() -> None:
    parser = argparse.ArgumentParser()
    profile_cli.configure_parser(parser)
    args = parser.parse_args(
        [
            "--instrument",
            "best:BTCUSDT",
            "--instrument",
            "bybit-linear:ETHUSDT",
            "--timeframe",
            "1h",
            "--lookback",
            "2",
        ]
    )
    request = profile_cli.build_request(args)
    assert list(request.composites) == ["best:BTCUSDT"]
    assert [InstrumentId.from_proto(i).key for i in request.instruments] == ["bybit-linear:ETHUSDT"]

    response = pb.GetVolumeProfileResponse()
    failover = response.failovers.add(composite="best:BTCUSDT", selected=BYBIT.to_proto())
    failover.switches.add(
        time_ns=1_700_000_000 * 10**9, from_feed="binance-spot", to_feed="bybit-spot", reason="stall"
    )
    as_json = profile_cli.to_json(response)
    assert as_json["failovers"] == [
        {
            "composite": "best:BTCUSDT",
            "selected": "bybit-spot:BTCUSDT",
            "switches": [
                {
                    "time_ns": 1_700_000_000 * 10**9,
                    "from": "binance-spot",
                    "to": "bybit-spot",
                    "reason": "stall",
                }
            ],
        }
    ]
    response.profile.rows.add(price="1", buy_volume="1", sell_volume="0", total_volume="1", delta="1")
    response.profile.poc = response.profile.value_area_low = response.profile.value_area_high = "1"
    text = profile_cli.histogram_text(response)
    assert "best:BTCUSDT follows bybit-spot:BTCUSDT" in text
    assert "binance-spot -> bybit-spot: stall" in text
