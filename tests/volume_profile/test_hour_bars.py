"""Long ranges read storage's 1h bars for whole closed hours and 1m bars at the edges: the profile is
the same as one recomputed from 1m bars alone (and as the oracle over the raw trades)."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

from marketdata.core.analytics.profile import Grid, VolumeUnit
from marketdata.core.bar_sources import HOUR_MS, MINUTE_MS, StorageSource, build_histogram
from marketdata.core.grpc_client import create_channel
from marketdata.v1 import common_pb2
from marketdata.v1 import volume_profile_service_pb2 as pb
from tests.storage.conftest import trade
from tests.volume_profile.conftest import BTC, oracle_profile, request, running_profile

DAY_MS = 86_400_000


def month_of_trades(start: int, days: int, seed: int) -> list[common_pb2.Trade]:
    """Random trades over `days` days: bursts, quiet hours with nothing, same-ms trades."""
    rng = random.Random(seed)
    out: list[common_pb2.Trade] = []
    price = 650_000
    for hour in range(days * 24):
        if rng.random() < 0.15:
            continue  # an hour without trades
        for _ in range(rng.randint(1, 12)):
            t = start + hour * HOUR_MS + rng.randrange(HOUR_MS)
            price += rng.randint(-30, 30)
            out.append(
                trade(
                    len(out) + 1,
                    f"{price // 10}.{price % 10}0",
                    f"{rng.randint(1, 9000) / 1000:.3f}",
                    rng.random() < 0.5,
                    t,
                )
            )
    out.sort(key=lambda t: t.exchange_time_ms)
    return out


async def test_a_30_day_profile_from_hour_bars_equals_a_minute_recompute(tmp_path: Path) -> None:
    async with running_profile(tmp_path) as stack:
        start = 1_700_006_400_000 - 1_700_006_400_000 % DAY_MS  # a UTC midnight well in the past
        trades = month_of_trades(start, 30, seed=4)
        await stack.storage.write(BTC, [trades[i : i + 1000] for i in range(0, len(trades), 1000)])
        # edges not on hours: the partial first and last hours come from 1m bars
        first, last = start + 17 * MINUTE_MS, start + 30 * DAY_MS - 23 * MINUTE_MS
        inside = [t for t in trades if first <= t.exchange_time_ms < last]
        for params in ({}, {"row_ticks": 25}, {"volume_unit": pb.VOLUME_UNIT_QUOTE}):
            response = await stack.stub.GetVolumeProfile(request([BTC], first, last, **params))
            if "volume_unit" not in params:
                row = str(Decimal("0.10") * int(params.get("row_ticks", 1)))  # type: ignore[call-overload]
                expected = oracle_profile(inside, row)
                rows = [
                    (Decimal(r.price), Decimal(r.buy_volume), Decimal(r.sell_volume))
                    for r in response.profile.rows
                ]
                assert rows == expected["rows"]
                assert Decimal(response.profile.poc) == expected["poc"]
            # the same figures as a profile recomputed from the 1m bars alone
            async with create_channel(stack.storage.address) as channel:
                source = StorageSource(channel, 31 * DAY_MS)
                mixed = await source.bars(BTC, first, last)
                minutes = await source.minute_bars(BTC, first, last)
            assert sum(b.length_ms == HOUR_MS for b in mixed) > 600 and len(minutes) > len(mixed)
            unit = VolumeUnit.QUOTE if "volume_unit" in params else VolumeUnit.BASE
            grid = Grid.of(response.parameters.row_size, 2)
            scale = 18 + (2 if unit is VolumeUnit.QUOTE else 0)
            by_hours = build_histogram(mixed, grid, unit, scale)
            by_minutes = build_histogram(minutes, grid, unit, scale)
            assert by_hours.rows == by_minutes.rows
            assert Decimal(response.profile.total_volume) == sum(
                Decimal(b + s) for b, s in by_minutes.rows.values()
            ) / Decimal(10**scale)
        # hours that lack their 1h bar (a store not yet migrated) are read from their 1m bars: a few
        # runs one query each, the rest in one query
        backend = stack.storage.service.servicer.store.backend
        for day in range(0, 30, 3):
            hour = start + day * DAY_MS + (day % 5) * HOUR_MS
            await stack.storage.service.servicer.store.run_write(
                backend.delete_range, "footprints_1h", BTC, hour, hour + HOUR_MS
            )
        async with create_channel(stack.storage.address) as channel:
            source = StorageSource(channel, 31 * DAY_MS)
            mixed = await source.bars(BTC, first, last)
            minutes = await source.minute_bars(BTC, first, last)
        grid = Grid.of("0.10", 2)
        assert (
            build_histogram(mixed, grid, VolumeUnit.BASE, 18).rows
            == build_histogram(minutes, grid, VolumeUnit.BASE, 18).rows
        )
        # every minute with trades is counted (1h bars give an upper bound; here it can only be more)
        assert response.coverage.minutes_with_trades >= len({t.exchange_time_ms // MINUTE_MS for t in inside})
