"""Exchange-side faults through the replay exchange's control API, end to end into storage and the
volume profile. Each case ends with the same checks on data: stored trades equal the trades the
exchange sent (no loss, no duplicates, exact values) and footprints and profiles equal a recompute.

Already covered elsewhere (not repeated here): garbage frames, one abort and one close drop, id
gaps repaired by REST, a stall, serverShutdown rotation, REST 429 during backfill and a rejected
subscription against StreamTrades (tests/collector/test_collector_replay.py); book faults
(tests/collector/books/test_books_replay.py); 429/418 opening breakers (tests/collector/health)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketdata.core.instruments import MarketKey
from tests.storage.conftest import wait_for

from .stack import (
    assert_profile_equals_recompute,
    assert_stored_equals_sent,
    replay_config,
    running_system,
)

pytestmark = pytest.mark.reliability

ALL = "binance-spot:BTCUSDT,binance-futures:BTCUSDT,bybit-spot:BTCUSDT,bybit-linear:BTCUSDT"


async def test_drops_every_two_seconds_lose_nothing(tmp_path: Path) -> None:
    """Connections of every market cut every 2 s (alternating close frames and TCP resets). The rate
    keeps each reconnect window inside what the exchanges' REST serves back (Bybit spot: the last 60
    trades), and USD-M backfills by id with an API key, so every gap is repairable."""
    replay = replay_config(ALL, rate=80, max_trades=160)
    async with running_system(tmp_path, replay, ALL, binance_api_key="test-key") as system:
        await system.fault(kind="drop", mode="close", code=1011, every=2.0, times=3)
        await system.fault(kind="drop", mode="abort", every=2.0, at=1.0, times=3)
        await system.wait_all_stored()
        for instrument in system.instruments:
            await assert_stored_equals_sent(system.storage, system.exchange, instrument)
            await assert_profile_equals_recompute(system, instrument)
        stats = system.collector.collector.stats
        assert all(s.reconnects >= 3 for s in stats.values()), {
            m.value: s.reconnects for m, s in stats.items()
        }


async def test_stall_oversized_frames_and_ping_timeouts_lose_nothing(tmp_path: Path) -> None:
    """A server that goes silent without closing, a 20 MiB frame (past the collector's 16 MiB frame
    limit), and keepalives lost until the server cuts at its pong deadline: each costs a reconnect,
    never a trade."""
    instruments = "binance-spot:BTCUSDT,bybit-linear:BTCUSDT"
    replay = replay_config(
        instruments,
        rate=120,
        max_trades=500,
        binance_spot_ping_interval_s=0.3,
        binance_spot_pong_timeout_s=1.0,
    )
    async with running_system(tmp_path, replay, instruments) as system:
        stats = system.collector.collector.stats
        await wait_for(lambda: system.sent_count() >= 100, 20, "trading")
        await system.fault(kind="stall", seconds=2.5)
        await wait_for(lambda: all(s.reconnects >= 1 for s in stats.values()), 20, "stall detected")
        await system.fault(kind="malformed", variant="oversized")
        await wait_for(lambda: all(s.reconnects >= 2 for s in stats.values()), 20, "oversized frame refused")
        await system.fault(kind="ping_timeout", market="binance-spot", seconds=2.0)
        spot = stats[MarketKey.BINANCE_SPOT]
        await wait_for(lambda: spot.reconnects >= 3, 20, "pong timeout cut")
        await system.wait_all_stored()
        for instrument in system.instruments:
            await assert_stored_equals_sent(system.storage, system.exchange, instrument)
            await assert_profile_equals_recompute(system, instrument)


async def test_gaps_repaired_through_rest_429_and_418_and_a_rejected_subscription(tmp_path: Path) -> None:
    """Id gaps whose backfill first meets 429 and 418 with Retry-After (the collector waits as told),
    and a resubscription that is refused once: every trade stored once, profiles equal a recompute."""
    instruments = "binance-spot:BTCUSDT,bybit-linear:BTCUSDT"
    replay = replay_config(instruments, rate=120, max_trades=360)
    async with running_system(tmp_path, replay, instruments) as system:
        stats = system.collector.collector.stats
        await wait_for(lambda: system.sent_count() >= 100, 20, "trading")
        await system.fault(kind="rest", market="binance-spot", count=1, status=429, retry_after=1)
        await system.fault(kind="rest", market="binance-spot", count=1, status=418, retry_after=1)
        await system.fault(kind="skip", market="binance-spot", count=5)
        await system.fault(kind="reject", market="bybit-linear", count=1)
        await system.fault(kind="drop", market="bybit-linear")
        await system.wait_all_stored()
        for instrument in system.instruments:
            await assert_stored_equals_sent(system.storage, system.exchange, instrument)
            await assert_profile_equals_recompute(system, instrument)
        spot, linear = stats[MarketKey.BINANCE_SPOT], stats[MarketKey.BYBIT_LINEAR]
        gaps = spot.totals()
        assert gaps["gaps_detected"] >= 1 and gaps["gaps_repaired"] == gaps["gaps_detected"], gaps
        assert "subscription refused" in linear.last_error
