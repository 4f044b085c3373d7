"""History from storage plus the live minute from the collector's stream: each minute from exactly one
source, so a range crossing the seam equals a recompute from the raw trades."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

from marketdata.core.bar_sources import LiveTrades
from marketdata.v1 import common_pb2
from tests.storage.conftest import trade
from tests.volume_profile.conftest import BTC, Stack, oracle_profile, request

MIN = 60_000


class _Idle:
    """No channel needed: the test feeds batches to on_batch as the stream would."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError("not used")


def live_source() -> LiveTrades:
    live = LiveTrades.__new__(LiveTrades)
    live._stub = _Idle()
    live._instruments = [BTC]
    from marketdata.core.bar_sources import _LiveBook

    live._books = {BTC: _LiveBook()}
    live._task = None
    live.connected = True
    live.trades_seen = 0
    live.feed_gaps = _no_gaps  # type: ignore[method-assign]
    return live


async def _no_gaps(timeout_s: float = 1.0) -> list[common_pb2.TradeGap]:
    return []


async def test_range_across_the_seam_equals_recompute(stack: Stack) -> None:
    now = int(time.time() * 1000)
    minute = now - now % MIN
    rng = random.Random(5)

    def make(first: int, start: int, end: int, n: int) -> list[common_pb2.Trade]:
        return [
            trade(
                first + k,
                f"{rng.randint(5000, 5030) / 10:.2f}",
                f"0.{rng.randint(1, 999):03d}",
                rng.random() < 0.5,
                rng.randint(start, end - 1),
            )
            for k in range(n)
        ]

    history = make(1, minute - 10 * MIN, minute - MIN, 600)  # closed minutes
    previous = make(10_000, minute - MIN, minute, 100)  # the minute before the open one
    current = make(20_000, minute, min(now + 1, minute + MIN), 100)  # the open minute
    # the collector writes everything to storage, including (part of) the live minutes ...
    await stack.storage.write(BTC, [history, previous, current[:50]])
    # ... and the live stream (subscribed before the previous minute began) has both recent minutes
    live = live_source()
    live._books[BTC].continuous_from = minute - 5 * MIN
    batch = common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=previous + current)
    live.on_batch(batch)
    live.on_batch(batch)  # a repeated delivery is deduplicated by trade id
    stack.service.servicer.live = stack.service.servicer.coverage_source.live = live

    response = await stack.stub.GetVolumeProfile(request([BTC], minute - 10 * MIN, minute + MIN))
    expected = oracle_profile(history + previous + current, "0.10")
    rows = [(Decimal(r.price), Decimal(r.buy_volume), Decimal(r.sell_volume)) for r in response.profile.rows]
    assert rows == expected["rows"]
    assert Decimal(response.profile.poc) == expected["poc"]
    assert Decimal(response.profile.value_area_high) == expected["vah"]
    assert Decimal(response.profile.value_area_low) == expected["val"]
    assert response.coverage.includes_live
    assert not response.coverage.partial

    # an unrepaired gap the collector reports shows in the coverage
    gap = common_pb2.TradeGap(
        instrument=BTC.to_proto(),
        state=common_pb2.GAP_STATE_UNREPAIRED,
        from_time_ms=minute - 3 * MIN,
        to_time_ms=minute - 2 * MIN,
        missing_trades=7,
    )

    async def gaps(timeout_s: float = 1.0) -> list[common_pb2.TradeGap]:
        return [gap]

    live.feed_gaps = gaps  # type: ignore[method-assign]
    stack.service.servicer.coverage_source._gaps = None  # forget the cached feed status
    response = await stack.stub.GetVolumeProfile(request([BTC], minute - 10 * MIN, minute + MIN))
    assert response.coverage.partial
    assert [(g.start_time_ms, g.end_time_ms) for g in response.coverage.known_gaps] == [
        (minute - 3 * MIN, minute - 2 * MIN)
    ]
    assert "unrepaired" in response.coverage.known_gaps[0].reason

    # the live stream lost: storage alone serves every minute (what it has), still no double count
    live.connected = False
    response = await stack.stub.GetVolumeProfile(request([BTC], minute - 10 * MIN, minute + MIN))
    expected = oracle_profile(history + previous + current[:50], "0.10")
    assert Decimal(response.profile.total_volume) == expected["total"]
    assert not response.coverage.includes_live


async def test_subscription_younger_than_a_minute_leaves_it_to_storage(stack: Stack) -> None:
    now = int(time.time() * 1000)
    minute = now - now % MIN
    trades = [trade(1, "100.00", "1", True, minute - MIN + 5), trade(2, "100.10", "2", False, minute + 1)]
    await stack.storage.write(BTC, [trades])
    live = live_source()
    live._books[BTC].continuous_from = minute  # subscribed during the previous minute
    live.on_batch(common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=trades[1:]))
    stack.service.servicer.live = stack.service.servicer.coverage_source.live = live
    response = await stack.stub.GetVolumeProfile(request([BTC], minute - 2 * MIN, minute + MIN))
    assert response.profile.total_volume == "3"


def test_live_bars_keep_each_trade_with_its_time_in_arrival_order() -> None:
    live = live_source()
    now = int(time.time() * 1000)
    minute = now - now % MIN
    first = [trade(1, "100.10", "1", True, minute + 500), trade(2, "100.00", "2", False, minute + 100)]
    again = [trade(2, "100.00", "2", False, minute + 100), trade(3, "100.20", "0.5", True, minute + 100)]
    for trades in (first, again):  # trade 2 resent: kept once
        live.on_batch(common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=trades))
    (bar,) = live.bars(BTC, minute, minute + MIN, "0.10")
    assert bar.trades == [
        (minute + 500, "100.10", "1", True),
        (minute + 100, "100.00", "2", False),
        (minute + 100, "100.20", "0.5", True),
    ]
    assert bar.trade_count == 3 and bar.live
