"""Redis cache of closed footprint bars: a real redis-server started on a free port for each test."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from marketdata.storage.footprints import MINUTE_MS

from .conftest import BTC, bars_as_oracle, oracle, running_storage, storage_settings, walk


def counter(running: object, result: str) -> float:
    metrics = running.service.store.metrics  # type: ignore[attr-defined]
    return float(metrics.cache_requests.labels(result)._value.get())


async def test_closed_bars_come_from_the_cache_and_late_trades_refresh_it(
    tmp_path: Path, redis_url: str
) -> None:
    now = int(time.time() * 1000)
    start = now - now % MINUTE_MS - 31 * MINUTE_MS  # 30 minutes, all closed (with the grace) now
    trades = walk(3000, start_ms=start, spacing_ms=600)  # 30 minutes
    async with running_storage(storage_settings(tmp_path, redis_url=redis_url)) as s:
        await s.write(BTC, [trades[::2]])
        await _settle(s)
        # closed bars written are written through to the cache; start from an empty one
        redis.Redis.from_url(redis_url).flushall()
        end = start + 30 * MINUTE_MS
        first = await s.footprints(BTC, start, end)
        assert counter(s, "miss") == 30 and counter(s, "hit") == 0
        assert bars_as_oracle(first) == oracle(trades[::2], "0.10")
        second = await s.footprints(BTC, start, end)
        assert second == first
        assert counter(s, "hit") == 30
        # a backfill of the odd ids lands in closed minutes: versions bump, the cache follows
        acks = await s.write(BTC, [trades[1::2]])
        assert acks[0].late_bars == 30
        await _settle(s)
        third = await s.footprints(BTC, start, end)
        assert bars_as_oracle(third) == oracle(trades, "0.10")
        assert all(b.version > a.version for a, b in zip(first, third, strict=True))
        assert counter(s, "hit") == 60  # served from the refreshed cache, not the store
        # minutes without trades are cached as empty too
        await s.footprints(BTC, start - 10 * MINUTE_MS, start)
        await s.footprints(BTC, start - 10 * MINUTE_MS, start)
        assert counter(s, "hit") == 70


async def _settle(s: object) -> None:
    import asyncio

    await asyncio.sleep(0.2)  # refreshes run as tasks after the commit


async def test_storage_works_without_redis_and_recovers_when_it_returns(
    tmp_path: Path, redis_url: str
) -> None:
    now = int(time.time() * 1000)
    start = now - now % MINUTE_MS - 11 * MINUTE_MS
    trades = walk(600, start_ms=start, spacing_ms=1000)
    client = redis.Redis.from_url(redis_url)
    async with running_storage(storage_settings(tmp_path, redis_url=redis_url)) as s:
        await s.write(BTC, [trades[::2]])
        await s.footprints(BTC, start, start + 10 * MINUTE_MS)  # fills the cache
        client.execute_command("CLIENT", "PAUSE", "3000")  # Redis stops answering: calls time out
        await s.write(BTC, [trades[1::2]])  # late trades while the cache cannot be refreshed
        await _settle(s)
        bars = await s.footprints(BTC, start, start + 10 * MINUTE_MS)
        assert bars_as_oracle(bars) == oracle(trades, "0.10")  # from the store
        errors = s.service.store.metrics.cache_errors._value.get()
        assert errors >= 1
        client.execute_command("CLIENT", "UNPAUSE")
        # Redis is back with stale entries: the missed refresh advanced the epoch, so none is served
        bars = await s.footprints(BTC, start, start + 10 * MINUTE_MS)
        assert bars_as_oracle(bars) == oracle(trades, "0.10")
        bars = await s.footprints(BTC, start, start + 10 * MINUTE_MS)
        assert bars_as_oracle(bars) == oracle(trades, "0.10")
