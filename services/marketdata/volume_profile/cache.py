"""Cache of closed ranges: one instrument's histogram over whole closed minutes at one grid and unit.

Ranges are cached as chunks: whole UTC days where the range holds them, UTC hours elsewhere. A range is
closed when it ends at least CLOSED_GRACE_MS before now (storage has the minutes and the
live source no longer owns them). Late trades (backfill) can still change a closed minute: entries
expire after MARKETDATA_VOLUME_PROFILE_CACHE_TTL, which bounds how stale a cached range can be.
Redis when MARKETDATA_REDIS_URL is set (shared by replicas), otherwise an in-process LRU.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any

from marketdata.core.analytics.profile import Grid, Histogram

log = logging.getLogger(__name__)

CLOSED_GRACE_MS = 3 * 60_000
KEY_PREFIX = "marketdata:vp:v1:"


def _encode(histogram: Histogram, minutes: list[int]) -> bytes:
    rows = [[k, b, s] for k, (b, s) in histogram.rows.items()]
    return json.dumps({"rows": rows, "minutes": minutes}, separators=(",", ":")).encode()


def _decode(payload: bytes, grid: Grid, volume_scale: int) -> tuple[Histogram, list[int]]:
    data = json.loads(payload)
    histogram = Histogram(grid, volume_scale)
    histogram.rows = {int(k): [int(b), int(s)] for k, b, s in data["rows"]}
    return histogram, [int(m) for m in data["minutes"]]


class RangeCache:
    """get/put of (histogram, minutes with trades) by key; counts hits and misses."""

    def __init__(self, entries: int, ttl_s: float, redis_url: str = "") -> None:
        self._entries = entries
        self._ttl_s = ttl_s
        self._local: OrderedDict[str, tuple[float, Histogram, list[int]]] = OrderedDict()
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(redis_url)
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self._redis is not None or (self._entries > 0 and self._ttl_s > 0)

    @staticmethod
    def key(instrument: str, start: int, end: int, grid: Grid, unit: str, volume_scale: int) -> str:
        return f"{KEY_PREFIX}{instrument}:{start}:{end}:{grid.row_size}:{unit}:{volume_scale}"

    async def get(self, key: str, grid: Grid, volume_scale: int) -> tuple[Histogram, list[int]] | None:
        """The cached (histogram, minutes with trades); the histogram is shared: read it, never change it."""
        if self._redis is not None:
            payload: bytes | None = None
            try:
                payload = await self._redis.get(key)
            except Exception as exc:
                log.warning("volume-profile cache read failed", extra={"error": str(exc)})
            if payload is None:
                self.misses += 1
                return None
            self.hits += 1
            return _decode(payload, grid, volume_scale)
        entry = self._local.get(key)
        if entry is not None and entry[0] > time.monotonic():
            self._local.move_to_end(key)
            self.hits += 1
            return entry[1], entry[2]
        if entry is not None:
            del self._local[key]
        self.misses += 1
        return None

    async def put(self, key: str, histogram: Histogram, minutes: list[int]) -> None:
        if not self.enabled:
            return
        if self._redis is not None:
            try:
                await self._redis.set(key, _encode(histogram, minutes), ex=max(1, int(self._ttl_s)))
            except Exception as exc:
                log.warning("volume-profile cache write failed", extra={"error": str(exc)})
            return
        self._local[key] = (time.monotonic() + self._ttl_s, histogram, minutes)
        self._local.move_to_end(key)
        while len(self._local) > self._entries:
            self._local.popitem(last=False)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
