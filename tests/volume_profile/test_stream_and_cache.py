from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from marketdata.v1 import volume_profile_service_pb2 as pb
from tests.storage.conftest import T0, redis_url, trade, walk  # noqa: F401  (redis_url is a fixture)
from tests.volume_profile.conftest import BTC, Stack, running_profile
from tests.volume_profile.conftest import request as profile_request

MIN = 60_000


async def test_stream_sends_the_developing_profile_on_the_interval(stack: Stack) -> None:
    now = int(time.time() * 1000)
    await stack.storage.write(
        BTC, [[trade(1, "100.00", "2", True, now - 5 * MIN), trade(2, "100.50", "1", False, now - 4 * MIN)]]
    )
    call = stack.stub.StreamVolumeProfile(
        pb.StreamVolumeProfileRequest(instruments=[BTC.to_proto()], interval_ms=200, include_rows=True)
    )
    updates = []
    async for update in call:
        updates.append(update)
        if len(updates) == 3:
            call.cancel()
            break
    first = updates[0]
    assert first.parameters.start_time_ms % 86_400_000 == 0  # utc_day by default
    if now % 86_400_000 >= 5 * MIN:  # the trades fall into today
        assert first.profile.poc == "100.00" and len(first.profile.rows) == 6
    assert updates[2].as_of_time_ms > updates[0].as_of_time_ms


async def test_stream_rejects_a_too_short_interval(stack: Stack) -> None:
    call = stack.stub.StreamVolumeProfile(
        pb.StreamVolumeProfileRequest(instruments=[BTC.to_proto()], interval_ms=5)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("interval_ms")


@pytest.mark.parametrize("use_redis", [False, True])
async def test_closed_ranges_are_cached(
    tmp_path: Path, use_redis: bool, request: pytest.FixtureRequest
) -> None:
    extra = {"redis_url": request.getfixturevalue("redis_url")} if use_redis else {}
    async with running_profile(tmp_path, **extra) as stack:
        trades = walk(2000, spacing_ms=200)  # ~7 minutes from T0
        await stack.storage.write(BTC, [trades])
        req = profile_request([BTC], T0 - 30 * MIN, T0 + 90 * MIN, row_ticks=2)
        first = await stack.stub.GetVolumeProfile(req)
        cache = stack.service.cache
        assert cache.misses >= 1 and cache.hits == 0
        second = await stack.stub.GetVolumeProfile(req)
        assert cache.hits >= 1
        assert second.profile == first.profile
