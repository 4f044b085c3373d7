"""Per-token rate limits: tool calls in fixed, UTC-aligned windows (the current minute and the current
UTC day), each tier with its own limits (MARKETDATA_MCP_TIERS).

Counts live in Redis when MARKETDATA_REDIS_URL is set, shared by every bridge replica (an atomic script
checks both windows and counts the call); otherwise in the replica's memory, where N replicas behind
a Service let a token make up to N times its tier's calls. When Redis fails, the replica counts in
memory until it answers again (limits stay enforced, per replica)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from marketdata.mcp.access import Grant, Tier

log = logging.getLogger(__name__)

MINUTE_S = 60
DAY_S = 86_400
ALLOWED, MINUTE_FULL, DAY_FULL = 0, 1, 2


@dataclass(frozen=True)
class Refusal:
    retry_after_s: int
    limit: str  # "per minute" or "per day"
    allowed: int


class _Store(Protocol):
    async def take(self, key: str, minute: int, day: int, per_minute: int, per_day: int) -> int:
        """ALLOWED (and counted), or which window is full (nothing counted)."""

    async def used(self, key: str, minute: int, day: int) -> tuple[int, int]: ...

    async def close(self) -> None: ...


@dataclass
class _Usage:
    minute: int = -1
    minute_calls: int = 0
    day: int = -1
    day_calls: int = 0


class MemoryStore:
    def __init__(self) -> None:
        self._usage: dict[str, _Usage] = {}

    async def take(self, key: str, minute: int, day: int, per_minute: int, per_day: int) -> int:
        usage = self._usage.setdefault(key, _Usage())
        if usage.minute != minute:
            usage.minute, usage.minute_calls = minute, 0
        if usage.day != day:
            usage.day, usage.day_calls = day, 0
        if per_day and usage.day_calls >= per_day:
            return DAY_FULL
        if per_minute and usage.minute_calls >= per_minute:
            return MINUTE_FULL
        usage.minute_calls += 1
        usage.day_calls += 1
        return ALLOWED

    async def used(self, key: str, minute: int, day: int) -> tuple[int, int]:
        usage = self._usage.get(key)
        if usage is None:
            return 0, 0
        return (
            usage.minute_calls if usage.minute == minute else 0,
            usage.day_calls if usage.day == day else 0,
        )

    async def close(self) -> None:
        return None


# KEYS: minute counter, day counter. ARGV: per_minute, per_day (0: none). Checks both, then counts.
_TAKE = """
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local d = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > 0 and d >= tonumber(ARGV[2]) then return 2 end
if tonumber(ARGV[1]) > 0 and m >= tonumber(ARGV[1]) then return 1 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 172800)
return 0
"""


class RedisStore:
    """Shared counters `marketdata:mcp:calls:<token digest prefix>:m:<minute>` / `:d:<day>`."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis_asyncio

        self._redis: Any = redis_asyncio.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._take = self._redis.register_script(_TAKE)
        self._fallback = MemoryStore()
        self._failing = False

    @staticmethod
    def _keys(key: str, minute: int, day: int) -> list[str]:
        return [f"marketdata:mcp:calls:{key}:m:{minute}", f"marketdata:mcp:calls:{key}:d:{day}"]

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning(
                "rate-limit counters unreachable in Redis; counting in memory", extra={"error": str(exc)}
            )
        self._failing = True

    async def take(self, key: str, minute: int, day: int, per_minute: int, per_day: int) -> int:
        try:
            verdict = int(await self._take(keys=self._keys(key, minute, day), args=[per_minute, per_day]))
        except Exception as exc:  # any Redis or connection error: keep enforcing, per replica
            self._failed(exc)
            return await self._fallback.take(key, minute, day, per_minute, per_day)
        if self._failing:
            log.info("rate-limit counters back in Redis")
            self._failing = False
        return verdict

    async def used(self, key: str, minute: int, day: int) -> tuple[int, int]:
        try:
            values = await self._redis.mget(self._keys(key, minute, day))
        except Exception as exc:
            self._failed(exc)
            return await self._fallback.used(key, minute, day)
        return int(values[0] or 0), int(values[1] or 0)

    async def close(self) -> None:
        await self._redis.aclose()


class RateLimiter:
    def __init__(
        self, tiers: tuple[Tier, ...], redis_url: str = "", clock: Callable[[], float] = time.time
    ) -> None:
        self._tiers = {t.name: t for t in tiers}
        self._clock = clock
        self._store: _Store = RedisStore(redis_url) if redis_url else MemoryStore()
        self.shared = bool(redis_url)

    def tier(self, grant: Grant) -> Tier:
        return self._tiers[grant.tier]

    async def take(self, grant: Grant) -> Refusal | None:
        """Count one call, or say which limit refused it and how long until its window ends."""
        tier = self._tiers[grant.tier]
        if not tier.per_minute and not tier.per_day:
            return None
        now = self._clock()
        minute, day = int(now // MINUTE_S), int(now // DAY_S)
        verdict = await self._store.take(_key(grant), minute, day, tier.per_minute, tier.per_day)
        if verdict == DAY_FULL:
            return Refusal(math.ceil((day + 1) * DAY_S - now), "per day", tier.per_day)
        if verdict == MINUTE_FULL:
            return Refusal(math.ceil((minute + 1) * MINUTE_S - now), "per minute", tier.per_minute)
        return None

    async def used(self, grant: Grant) -> tuple[int, int]:
        """Calls counted in the current minute and the current UTC day."""
        now = self._clock()
        return await self._store.used(_key(grant), int(now // MINUTE_S), int(now // DAY_S))

    async def close(self) -> None:
        await self._store.close()


def _key(grant: Grant) -> str:
    # A prefix of the token's SHA-256: enough to tell configured tokens apart, useless to recover one.
    return grant.digest.hex()[:32]
