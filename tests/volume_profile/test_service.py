from __future__ import annotations

import random
import time
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import volume_profile_service_pb2 as pb
from tests.storage.conftest import T0, trade, walk
from tests.volume_profile.conftest import BTC, BTC_BYBIT, Stack, oracle_profile, request, running_profile

MIN = 60_000


def as_rows(profile: pb.VolumeProfile) -> list[tuple[Decimal, Decimal, Decimal]]:
    return [(Decimal(r.price), Decimal(r.buy_volume), Decimal(r.sell_volume)) for r in profile.rows]


async def test_profile_equals_oracle_over_stored_footprints(stack: Stack) -> None:
    trades = walk(3000, spacing_ms=60)  # 3 minutes
    await stack.storage.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
    for row_ticks, method, pct in ((1, 1, 70), (5, 2, 70), (3, 1, 50), (7, 2, 100)):
        response = await stack.stub.GetVolumeProfile(
            request([BTC], T0, T0 + 5 * MIN, row_ticks=row_ticks, va_method=method, value_area_pct=pct)
        )
        row = str(Decimal("0.10") * row_ticks)
        expected = oracle_profile(trades, row, pct, 2 if method == 1 else 1)
        profile = response.profile
        assert as_rows(profile) == expected["rows"]
        assert all(len(r.price.partition(".")[2]) == 2 for r in profile.rows)
        assert Decimal(profile.poc) == expected["poc"]
        assert Decimal(profile.value_area_high) == expected["vah"]
        assert Decimal(profile.value_area_low) == expected["val"]
        assert Decimal(profile.total_volume) == expected["total"]
        assert response.parameters.row_ticks == row_ticks
        assert response.parameters.row_size == format(Decimal("0.10") * row_ticks, "f")
    cov = response.coverage
    assert cov.minutes_expected == 5 and cov.minutes_with_trades == 3
    assert not cov.partial and cov.minutes_covered == 5


async def test_instruments_aggregate_across_exchanges_and_quote_volume(stack: Stack) -> None:
    a = [trade(1, "100.10", "1.5", True, T0), trade(2, "100.20", "2", False, T0 + 1000)]
    b = [trade(7, "100.10", "0.5", False, T0 + 2000)]
    await stack.storage.write(BTC, [a])
    await stack.storage.write(BTC_BYBIT, [b])
    response = await stack.stub.GetVolumeProfile(request([BTC, BTC_BYBIT], T0, T0 + MIN))
    assert [
        (r.price, r.buy_volume, r.sell_volume, r.total_volume, r.delta) for r in response.profile.rows
    ] == [
        ("100.10", "1.5", "0.5", "2", "1"),
        ("100.20", "0", "2", "2", "-2"),
    ]
    assert response.profile.poc == "100.10"  # tie at both edges: equally near the middle -> lower
    quote = await stack.stub.GetVolumeProfile(
        request([BTC, BTC_BYBIT], T0, T0 + MIN, volume_unit=pb.VOLUME_UNIT_QUOTE)
    )
    assert [(r.buy_volume, r.sell_volume) for r in quote.profile.rows] == [
        ("150.15", "50.05"),
        ("0", "200.4"),
    ]


async def test_anchor_and_timeframe_ranges(stack: Stack) -> None:
    now = int(time.time() * 1000)
    minute = now - now % MIN
    await stack.storage.write(BTC, [[trade(1, "100.00", "1", True, minute - 5 * MIN)]])
    by_tf = await stack.stub.GetVolumeProfile(
        pb.GetVolumeProfileRequest(
            instruments=[BTC.to_proto()], range=pb.ProfileRange(timeframe="5m", lookback=3)
        )
    )
    assert by_tf.parameters.end_time_ms - by_tf.parameters.start_time_ms == 15 * MIN
    day = await stack.stub.GetVolumeProfile(
        pb.GetVolumeProfileRequest(
            instruments=[BTC.to_proto()], range=pb.ProfileRange(anchor=pb.ANCHOR_UTC_DAY)
        )
    )
    assert day.parameters.start_time_ms % 86_400_000 == 0
    assert day.parameters.end_time_ms - day.parameters.start_time_ms == 86_400_000
    assert day.coverage.partial  # the rest of the day is in the future
    assert any(g.reason == "in the future" for g in day.coverage.known_gaps)


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (request([BTC], T0 + MIN, T0), "range.end_time_ms"),
        (request([BTC], T0, T0 + 40 * 86_400_000), "range.end_time_ms"),
        (request([BTC], T0, T0 + MIN, value_area_pct=0.0001 - 1), "parameters.value_area_pct"),
        (request([BTC], T0, T0 + MIN, value_area_pct=100.5), "parameters.value_area_pct"),
        (request([BTC], T0, T0 + MIN, row_size="0.15"), "parameters.row_size"),
        (request([BTC], T0, T0 + MIN, node_window=4), "parameters.node_window"),
        (request([], T0, T0 + MIN), "instruments"),
        (request([InstrumentId.parse("bybit-spot:NOPEUSDT")], T0, T0 + MIN), "instruments"),
        (
            pb.GetVolumeProfileRequest(
                instruments=[BTC.to_proto()], range=pb.ProfileRange(timeframe="2h", lookback=3)
            ),
            "range.timeframe",
        ),
        (
            pb.GetVolumeProfileRequest(
                instruments=[common_pb2.Instrument(symbol="BTCUSDT")],
                range=pb.ProfileRange(start_time_ms=T0, end_time_ms=T0 + MIN),
            ),
            "instruments[0]",
        ),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stack: Stack, req: pb.GetVolumeProfileRequest, field: str
) -> None:
    await stack.storage.write(BTC, [[trade(1, "100.00", "1", True, T0)]])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stack.stub.GetVolumeProfile(req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(field), info.value.details()


async def test_too_many_rows_is_refused(tmp_path: Path) -> None:
    async with running_profile(tmp_path, volume_profile_max_rows="10") as stack:
        await stack.storage.write(
            BTC, [[trade(1, "100.00", "1", True, T0), trade(2, "102.00", "1", True, T0)]]
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.stub.GetVolumeProfile(request([BTC], T0, T0 + MIN))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "parameters.row_ticks" in (info.value.details() or "")
        assert "MARKETDATA_VOLUME_PROFILE_MAX_ROWS" in (info.value.details() or "")
        ok = await stack.stub.GetVolumeProfile(request([BTC], T0, T0 + MIN, row_ticks=5))
        assert len(ok.profile.rows) == 5


async def test_levels_with_naked_pocs(stack: Stack) -> None:
    now = int(time.time() * 1000)
    today = now - now % 86_400_000
    day = 86_400_000
    trades = [
        # three days ago: POC 100.00, later touched (yesterday trades at 100.00)
        trade(1, "100.00", "5", True, today - 3 * day + MIN),
        trade(2, "101.00", "1", True, today - 3 * day + MIN),
        # two days ago: POC 200.00, never touched again -> naked
        trade(3, "200.00", "5", True, today - 2 * day + MIN),
        trade(4, "201.00", "1", False, today - 2 * day + MIN),
        # yesterday: POC 100.00 (touches the first), naked too
        trade(5, "100.00", "3", False, today - day + MIN),
    ]
    await stack.storage.write(BTC, [trades])
    response = await stack.stub.GetVolumeProfileLevels(
        pb.GetVolumeProfileLevelsRequest(
            instruments=[BTC.to_proto()],
            range=pb.ProfileRange(anchor=pb.ANCHOR_UTC_DAY),
            parameters=pb.ProfileParameters(row_ticks=10),
            naked_poc_sessions=3,
        )
    )
    assert [(n.price, n.session_start_time_ms) for n in response.naked_pocs] == [
        ("100.00", today - day),
        ("200.00", today - 2 * day),
    ]
    assert response.poc == ""  # no trades today


async def test_random_trades_across_two_instruments_match_oracle(stack: Stack) -> None:
    rng = random.Random(11)
    all_trades = []
    for instrument, first in ((BTC, 1), (BTC_BYBIT, 100_000)):
        trades = [
            trade(
                first + n,
                f"{rng.randint(9990, 10010) / 10:.2f}",
                f"{rng.randint(1, 9)}.{rng.randint(0, 999):03d}",
                rng.random() < 0.5,
                T0 + rng.randint(0, 10 * MIN - 1),
            )
            for n in range(400)
        ]
        all_trades += trades
        await stack.storage.write(instrument, [trades])
    response = await stack.stub.GetVolumeProfile(request([BTC, BTC_BYBIT], T0, T0 + 10 * MIN, row_ticks=2))
    expected = oracle_profile(all_trades, "0.20")
    assert as_rows(response.profile) == expected["rows"]
    assert Decimal(response.profile.poc) == expected["poc"]
    assert Decimal(response.profile.value_area_high) == expected["vah"]
    assert Decimal(response.profile.value_area_low) == expected["val"]


def test_cache_chunks_are_days_where_whole_else_hours() -> None:
    from marketdata.volume_profile.service import chunk_edges

    day, hour = 86_400_000, 3_600_000
    d0 = 20_000 * day
    assert chunk_edges(d0, d0 + 2 * day) == [d0, d0 + day, d0 + 2 * day]
    edges = chunk_edges(d0 - hour - 5 * MIN, d0 + day + 2 * hour + 7 * MIN)
    assert edges == [d0 - hour - 5 * MIN, d0 - hour, d0, d0 + day, d0 + day + hour, d0 + day + 2 * hour,
                     d0 + day + 2 * hour + 7 * MIN]  # fmt: skip


async def test_session_anchor_in_an_iana_zone(stack: Stack) -> None:
    # 2023-11-14 (T0's day) New York session 09:30-16:00 EST = 14:30-21:00 UTC
    day = T0 - T0 % 86_400_000
    open_ms = day + (14 * 60 + 30) * MIN
    trades = [trade(1, "100.00", "1", True, open_ms - MIN), trade(2, "101.00", "2", True, open_ms + 5 * MIN)]
    await stack.storage.write(BTC, [trades])
    response = await stack.stub.GetVolumeProfile(
        pb.GetVolumeProfileRequest(
            instruments=[BTC.to_proto()],
            range=pb.ProfileRange(
                anchor=pb.ANCHOR_SESSION,
                session=pb.Session(time_zone="America/New_York", start="09:30", end="16:00"),
                at_time_ms=open_ms + 60 * MIN,
            ),
        )
    )
    assert (response.parameters.start_time_ms, response.parameters.end_time_ms) == (
        open_ms,
        open_ms + 390 * MIN,
    )
    assert [r.price for r in response.profile.rows] == ["101.00"]  # the trade before the open is outside
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stack.stub.GetVolumeProfile(
            pb.GetVolumeProfileRequest(
                instruments=[BTC.to_proto()],
                range=pb.ProfileRange(anchor=pb.ANCHOR_SESSION, session=pb.Session(time_zone="Nowhere/X")),
            )
        )
    assert (info.value.details() or "").startswith("range.session")
