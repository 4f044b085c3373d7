"""What makes repeated and late-in-the-day GetOrderFlow calls cheap gives the oracle's answers: the CVD
before the range read from 1h bars, and bars memoized on cached minutes (docs/benchmarks.md,
"Analytics")."""

from __future__ import annotations

import random
import time
from decimal import Decimal

from marketdata.core.analytics.timeframes import utc_day
from marketdata.order_flow.compute import build_bars
from tests.order_flow.conftest import BTC, MIN, Stack, request, ticks
from tests.order_flow.oracle import oracle_bars
from tests.order_flow.test_service import DAY, HOUR, check_bars, random_trades


async def test_cvd_before_the_range_from_hourly_bars(stack: Stack) -> None:
    now = int(time.time() * 1000)
    day = now - now % DAY - 2 * DAY
    trades = random_trades(random.Random(7), 1, day, day + 4 * HOUR, 2000)
    await stack.storage.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
    start, end = day + 3 * HOUR + 10 * MIN, day + 4 * HOUR
    servicer = stack.service.servicer
    q = await servicer.query(request([BTC], start, end, "5m"), now)
    assert q.detail_start == q.start and q.data_start == day
    loaded = await servicer.data.minutes(BTC, q.data_start, q.end, q.grid, now, q.hourly, q.detail_start)
    before = [m.start_ms for m in loaded.minutes if m.start_ms < day + 3 * HOUR]
    assert before == [day, day + HOUR, day + 2 * HOUR]  # one 1h bar per whole hour before the range
    bars = build_bars(q, loaded.minutes, now)
    expected = oracle_bars(ticks(trades), start, end, 5 * MIN, Decimal("0.10"), lambda t: utc_day(t)[0], now)
    assert [b.cvd for b in bars] == [int(b.cvd * 10**18) for b in expected]


async def test_a_repeated_request_answers_the_same(stack: Stack) -> None:
    now = int(time.time() * 1000)
    day = now - now % DAY - 2 * DAY
    trades = random_trades(random.Random(8), 1, day, day + 3 * HOUR, 2000)
    await stack.storage.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
    for timeframe, size in (("5m", 5 * MIN), ("1h", HOUR)):
        ask = request([BTC], day + HOUR, day + 3 * HOUR, timeframe, include_rows=True)
        first = await stack.stub.GetOrderFlow(ask)
        again = await stack.stub.GetOrderFlow(ask)  # bars memoized on the cached minutes
        assert again.SerializeToString() == first.SerializeToString()
        expected = oracle_bars(
            ticks(trades), day + HOUR, day + 3 * HOUR, size, Decimal("0.10"), lambda t: utc_day(t)[0], now
        )
        check_bars(again, expected, Decimal("0.10"), Decimal(3), Decimal(0), 3)
