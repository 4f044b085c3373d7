"""The rate limiter's fixed UTC windows (fake clock), shared counts across replicas through a real Redis,
and the token and tier formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketdata.bench.processes import private_redis_server
from marketdata.mcp.access import Grant, Tier, parse_tiers, parse_tokens, token_digest
from marketdata.mcp.ratelimit import RateLimiter

GRANT = Grant(token_digest("x"), "t")


async def test_minute_and_day_windows() -> None:
    now = [1_700_000_000.0]  # 22:13:20 UTC: 40 s left in the minute
    limiter = RateLimiter((Tier("t", 2, 3),), clock=lambda: now[0])
    assert await limiter.take(GRANT) is None and await limiter.take(GRANT) is None
    refusal = await limiter.take(GRANT)
    assert refusal is not None and refusal.limit == "per minute" and refusal.retry_after_s == 40
    now[0] += 40  # the next minute: one more call left today
    assert await limiter.take(GRANT) is None
    refusal = await limiter.take(GRANT)
    assert refusal is not None and refusal.limit == "per day"
    assert refusal.retry_after_s == 86_400 - int(now[0]) % 86_400
    assert await limiter.used(GRANT) == (1, 3)
    now[0] += 86_400  # a new UTC day
    assert await limiter.take(GRANT) is None


async def test_replicas_share_counts_in_redis(tmp_path: Path) -> None:
    tiers = (Tier("t", 0, 3),)
    with private_redis_server(tmp_path) as url:
        one, two = RateLimiter(tiers, url), RateLimiter(tiers, url)
        try:
            assert await one.take(GRANT) is None
            assert await two.take(GRANT) is None
            assert await one.take(GRANT) is None
            refusal = await two.take(GRANT)
            assert refusal is not None and refusal.limit == "per day"
            assert await one.used(GRANT) == (3, 3)
            assert await two.take(Grant(token_digest("another"), "t")) is None
        finally:
            await one.close()
            await two.close()


async def test_without_redis_limits_still_hold_per_replica(tmp_path: Path) -> None:
    limiter = RateLimiter((Tier("t", 0, 1),), "redis://127.0.0.1:9/0")  # nothing listens there
    try:
        assert await limiter.take(GRANT) is None
        assert await limiter.take(GRANT) is not None
    finally:
        await limiter.close()


def test_token_and_tier_formats() -> None:
    grants = parse_tokens(" abc-123:pro , def.456 ")
    assert [g.tier for g in grants] == ["pro", "standard"]
    assert grants[0].digest == token_digest("abc-123")
    assert "abc-123" not in repr(grants)
    assert [str(t) for t in parse_tiers("free=20/1000, pro=600/0")] == ["free=20/1000", "pro=600/0"]


def test_bad_formats_are_refused_without_echoing_the_token() -> None:
    with pytest.raises(ValueError, match="entry 2") as caught:
        parse_tokens("good-token,bad token-secret")
    assert "secret" not in str(caught.value)
    with pytest.raises(ValueError, match="NAME=PER_MINUTE/PER_DAY"):
        parse_tiers("pro=fast")
