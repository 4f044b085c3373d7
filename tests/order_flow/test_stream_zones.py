"""StreamOrderFlow announces each stacked-imbalance zone once, as soon as the batch that forms it is
folded in, however the zones grow, split and vanish: the stream looks only around the rows a batch
changed, so this checks it against a recompute of every zone of the bar after every batch."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from tests.order_flow.conftest import BTC, MIN, Stack, attach_live, ticks
from tests.order_flow.oracle import oracle_bars, oracle_imbalances, oracle_stacks
from tests.storage.conftest import trade

HOUR = 3_600_000
SIDE = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}
ROW = Decimal("0.10")


def _zones(update: pb.StreamOrderFlowResponse, zones: list[pb.Zone]) -> list[tuple[str, Decimal, Decimal]]:
    return [
        (SIDE[z.side], Decimal(z.price_low), Decimal(z.price_high) - ROW)
        for z in zones
        if z.kind == pb.ZONE_KIND_STACKED_IMBALANCE
    ]


async def test_stacked_zones_are_announced_once_when_they_form(stack: Stack) -> None:
    now = int(time.time() * 1000)
    if now % HOUR > HOUR - 60_000:  # keep the hour bar open for the whole test
        await asyncio.sleep((HOUR - now % HOUR) / 1000 + 0.1)
        now = int(time.time() * 1000)
    hour = now - now % HOUR
    live = attach_live(stack, now - now % MIN - 5 * MIN)
    parameters = pb.OrderFlowParameters(imbalance=pb.ImbalanceParameters(stacked_min_rows=2))
    subscribe = pb.StreamOrderFlowRequest(instruments=[BTC.to_proto()], timeframe="1h", parameters=parameters)
    stream = stack.stub.StreamOrderFlow(subscribe)
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.snapshot
    rng = random.Random(3)
    price, ident, at = 50_000, 1, max(hour, now - 1000)
    sent: list[common_pb2.Trade] = []
    expected: set[tuple[str, Decimal, Decimal]] = set()
    announced: list[tuple[str, Decimal, Decimal]] = []
    for _ in range(150):
        batch = []
        for _ in range(rng.randint(1, 12)):
            price += rng.choice((-3, -1, 1, 3))  # jumps leave gaps: zones form, split and join
            size = rng.choice(("0.001", "0.01", "0.5", "2"))
            batch.append(trade(ident, f"{price / 10:.2f}", size, rng.random() < 0.5, at))
            ident += 1
        sent += batch
        live.on_batch(common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=batch))
        update = await asyncio.wait_for(stream.read(), 5)
        announced += _zones(update, list(update.new_zones))
        rows = oracle_bars(ticks(sent), hour, hour + HOUR, HOUR, ROW, lambda t: hour, now)[0].rows
        now_formed = oracle_stacks(oracle_imbalances(rows, ROW, Decimal(3), Decimal(0)), ROW, 2)
        # every zone there is now was announced by now: in this update or earlier
        assert set(now_formed) <= set(announced) | set(_zones(first, list(first.bar.zones)))
        expected |= set(now_formed)
    stream.cancel()
    assert len(announced) == len(set(announced)), "a zone was announced twice"
    assert set(announced) == expected, "a zone was announced that never formed"
    assert len(expected) > 20  # the walk did form and break zones
    # a snapshot lists the bar's current zones with their current figures
    probe = stack.stub.StreamOrderFlow(subscribe)
    snapshot = await asyncio.wait_for(probe.read(), 5)
    probe.cancel()
    assert _zones(snapshot, list(snapshot.bar.zones)) == now_formed
