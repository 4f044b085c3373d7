"""Order flow reads storage's bars straight into exact minutes as each response arrives
(StorageSource.read, FlowData._read); this gives what converting the bars afterwards gives."""

from __future__ import annotations

import random
import time
from dataclasses import asdict

from marketdata.core.analytics.profile import Grid
from marketdata.order_flow.data import minute_of
from tests.order_flow.conftest import BTC, MIN, Stack
from tests.order_flow.test_service import DAY, HOUR, random_trades


async def test_minutes_read_as_they_arrive_equal_minutes_of_the_bars(stack: Stack) -> None:
    now = int(time.time() * 1000)
    day = now - now % DAY - 2 * DAY
    trades = random_trades(random.Random(11), 1, day, day + 3 * HOUR, 3000)
    await stack.storage.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
    storage, data = stack.service.servicer.storage, stack.service.servicer.data
    start, end = day + 20 * MIN, day + 3 * HOUR - 7 * MIN  # whole hours inside, minutes at both edges
    for row_size in ("0.10", "0.50", "2"):
        grid = Grid.of(row_size, 2)
        for hourly in (True, False):
            bars = await (storage.bars(BTC, start, end) if hourly else storage.minute_bars(BTC, start, end))
            expected = [minute_of(bar, grid) for bar in bars]
            got = await data._read(BTC, start, end, grid, hourly)
            assert [asdict(m) for m in got] == [asdict(m) for m in expected]
            assert [m.traded_minutes for m in got] == [m.traded_minutes for m in expected]
            assert any(len(m.traded_minutes) > 1 for m in got) == hourly  # 1h bars read for whole hours
