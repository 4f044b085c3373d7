"""Optional Redis cache of footprint bars of closed minutes (and hours).

Keys: `md:fp:<epoch>:<resolution>:<instrument>:<bar start>`, value `<version>:<FootprintBar bytes>`,
or `0:` for a closed bar that has no trades (so a fully cached range needs no store query).

Staleness: a bar changes after it closed only through late trades (backfill), and every change bumps
its version. Entries are written only by a Lua compare-and-set that keeps the higher version, both
when a query fills the cache and when the writer refreshes a changed closed bar after its commit; so
a query that read an older version just before a commit can never overwrite the newer one. A query
decides which bars are closed before it reads the store, and the writer refreshes every changed bar
that is closed by the time its commit returned: anything a query may cache, the writer refreshes.
If a refresh fails (Redis down), the cache is cut off from its past: the next successful call
increments the epoch, orphaning every old key (they expire by TTL).

Every Redis error is counted and the query falls back to the store: the cache only makes it faster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from marketdata.core.instruments import InstrumentId
from marketdata.storage.backends.base import ChangedBar, StoredBar
from marketdata.storage.footprints import BAR_MS
from marketdata.storage.metrics import StorageMetrics

log = logging.getLogger(__name__)

CLOSED_GRACE_MS = 2_000
TTL_S = 86_400
EPOCH_KEY = "md:fp:epoch"

# KEYS[i]: entry keys; ARGV: ttl, then (version, value) per key. Sets a key unless it holds a version
# >= the given one.
_CAS = """
local ttl = tonumber(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local version = tonumber(ARGV[2 * i])
  local current = redis.call('GET', key)
  local keep = false
  if current then
    local held = tonumber(string.match(current, '^(%d+):'))
    if held and held >= version then keep = true end
  end
  if not keep then
    redis.call('SET', key, ARGV[2 * i + 1], 'EX', ttl)
    written = written + 1
  end
end
return written
"""


class FootprintCache:
    def __init__(self, url: str, metrics: StorageMetrics, ttl_s: int = TTL_S) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._metrics = metrics
        self._ttl = ttl_s
        self._cas = self._redis.register_script(_CAS)
        self._dirty = False
        self._failing_since = 0.0

    async def close(self) -> None:
        await self._redis.aclose()

    def invalidate(self) -> None:
        """Orphan every cached bar (the next call advances the epoch): after a migration rewrote bars."""
        self._dirty = True

    def _error(self, exc: BaseException) -> None:
        self._metrics.cache_errors.inc()
        now = time.monotonic()
        if not self._failing_since:
            log.warning("redis cache unavailable; serving from the store", extra={"error": str(exc)})
        self._failing_since = now

    def _ok(self) -> None:
        if self._failing_since:
            log.info("redis cache available again")
            self._failing_since = 0.0

    async def _epoch(self) -> int:
        if self._dirty:
            epoch = int(await self._redis.incr(EPOCH_KEY))
            self._dirty = False
            log.info("redis cache epoch advanced after missed refreshes", extra={"epoch": epoch})
            return epoch
        value = await self._redis.get(EPOCH_KEY)
        return int(value) if value else 0

    @staticmethod
    def _key(epoch: int, resolution: int, instrument: InstrumentId, start: int) -> str:
        return f"md:fp:{epoch}:{resolution}:{instrument.key}:{start}"

    @staticmethod
    def closed_before(now_ms: int, resolution: int) -> int:
        """Bars starting before this are closed (with a grace for clock differences)."""
        size = BAR_MS[resolution]
        limit = now_ms - CLOSED_GRACE_MS - size
        return limit - limit % size + size if limit >= 0 else 0

    async def get(
        self, instrument: InstrumentId, resolution: int, starts: Sequence[int]
    ) -> tuple[dict[int, StoredBar | None], int] | None:
        """Cached bars by start (None: cached as empty); the epoch to fill with; None if Redis fails."""
        try:
            epoch = await self._epoch()
            values = await self._redis.mget([self._key(epoch, resolution, instrument, s) for s in starts])
        except (RedisError, OSError) as exc:
            self._error(exc)
            return None
        self._ok()
        found: dict[int, StoredBar | None] = {}
        for start, value in zip(starts, values, strict=True):
            if value is None:
                continue
            raw = value if isinstance(value, bytes) else str(value).encode()
            version, _, payload = raw.partition(b":")
            found[start] = StoredBar(start, int(version), payload) if payload else None
        hits = len(found)
        if hits:
            self._metrics.cache_requests.labels("hit").inc(hits)
        if len(starts) - hits:
            self._metrics.cache_requests.labels("miss").inc(len(starts) - hits)
        return found, epoch

    async def fill(
        self,
        epoch: int,
        instrument: InstrumentId,
        resolution: int,
        entries: Sequence[tuple[int, StoredBar | None]],
    ) -> None:
        if not entries:
            return
        keys: list[str] = []
        args: list[bytes | int] = [self._ttl]
        for start, bar in entries:
            keys.append(self._key(epoch, resolution, instrument, start))
            if bar is None:
                args += [0, b"0:"]
            else:
                args += [bar.version, str(bar.version).encode() + b":" + bar.payload]
        try:
            await self._cas(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._error(exc)

    async def refresh(self, changed: Sequence[ChangedBar]) -> None:
        """After a commit: write changed closed bars (compare-and-set by version)."""
        closed = [
            c
            for c in changed
            if c.start_ms < self.closed_before(int(time.time() * 1000) + CLOSED_GRACE_MS, c.resolution)
        ]
        if not closed:
            return
        try:
            epoch = await self._epoch()
            keys = [self._key(epoch, c.resolution, c.instrument, c.start_ms) for c in closed]
            args: list[bytes | int] = [self._ttl]
            for c in closed:
                args += [c.version, str(c.version).encode() + b":" + c.payload]
            await self._cas(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._dirty = True
            self._error(exc)
