"""The live minutes: a range crossing stored history into the live minute equals a recompute from the
raw trades, and StreamOrderFlow updates after every batch and resumes by sequence."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

import grpc
import pytest

from marketdata.core.analytics.timeframes import utc_day
from marketdata.v1 import common_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from tests.order_flow.conftest import BTC, MIN, Stack, attach_live, request, ticks
from tests.order_flow.oracle import oracle_bars, oracle_imbalances
from tests.storage.conftest import trade

HOUR = 3_600_000
SIDE = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}


def make(rng: random.Random, first: int, start: int, end: int, n: int) -> list[common_pb2.Trade]:
    times = sorted(rng.randint(start, end - 1) for _ in range(n))
    return [
        trade(
            first + k,
            f"{rng.randint(5000, 5030) / 10:.2f}",
            f"0.{rng.randint(1, 999):03d}",
            rng.random() < 0.5,
            t,
        )
        for k, t in enumerate(times)
    ]


async def _away_from_the_hour() -> int:
    """Now, at least 40 s before the next hour (so the test's bars do not close under it)."""
    now = int(time.time() * 1000)
    if now % HOUR > HOUR - 40_000:
        await asyncio.sleep((HOUR - now % HOUR) / 1000 + 0.1)
        now = int(time.time() * 1000)
    return now


async def test_range_across_the_seam_equals_recompute(stack: Stack) -> None:
    now = await _away_from_the_hour()
    minute = now - now % MIN
    rng = random.Random(5)
    history = make(rng, 1, minute - 30 * MIN, minute - MIN, 900)
    previous = make(rng, 10_000, minute - MIN, minute, 100)
    current = make(rng, 20_000, minute, min(now + 1, minute + MIN), 100)
    # storage has the history and part of the live minutes; the live stream has both recent minutes
    await stack.storage.write(BTC, [history, previous, current[:50]])
    live = attach_live(stack, minute - 5 * MIN)
    batch = common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=previous + current)
    live.on_batch(batch)
    live.on_batch(batch)  # a repeated delivery is deduplicated by trade id
    for timeframe, size in (("1m", MIN), ("5m", 5 * MIN)):
        start = minute - 30 * MIN
        response = await stack.stub.GetOrderFlow(
            request([BTC], start, minute + MIN, timeframe, include_rows=True)
        )
        expected = oracle_bars(
            ticks(history + previous + current),
            start - start % size,
            minute + MIN,
            size,
            Decimal("0.10"),
            lambda t: utc_day(t)[0],
            now,
        )
        assert [b.start_time_ms for b in response.bars] == [b.start for b in expected]
        for got, want in zip(response.bars, expected, strict=True):
            rows = {Decimal(r.price): [Decimal(r.buy_volume), Decimal(r.sell_volume)] for r in got.rows}
            assert {p: v for p, v in rows.items() if v != [0, 0]} == want.rows
            assert (Decimal(got.delta), Decimal(got.cvd)) == (want.delta, want.cvd)
            assert tuple(Decimal(x) for x in (got.open, got.high, got.low, got.close)) == want.ohlc
            assert (Decimal(got.max_delta), Decimal(got.min_delta)) == (want.max_delta, want.min_delta)
        assert response.coverage.includes_live
        assert not response.bars[-1].closed


async def _next(stream: object) -> pb.StreamOrderFlowResponse:
    return await asyncio.wait_for(stream.read(), 5)  # type: ignore[attr-defined,no-any-return]


async def test_stream_updates_and_resumes_by_sequence(stack: Stack) -> None:
    now = await _away_from_the_hour()
    hour = now - now % HOUR
    minute = now - now % MIN
    rng = random.Random(9)
    stored = make(rng, 1, hour, max(hour + 1, minute - MIN), 300) if minute - MIN > hour else []
    if stored:
        await stack.storage.write(BTC, [stored])
    live = attach_live(stack, minute - 5 * MIN)
    parameters = pb.OrderFlowParameters(include_rows=True)
    subscribe = pb.StreamOrderFlowRequest(instruments=[BTC.to_proto()], timeframe="1h", parameters=parameters)
    stream = stack.stub.StreamOrderFlow(subscribe)
    first = await _next(stream)
    assert first.snapshot and first.parameters.timeframe == "1h"
    sent: list[common_pb2.Trade] = []
    updates = []
    for n in range(3):
        batch = make(rng, 50_000 + 100 * n, max(minute - MIN, hour), int(time.time() * 1000) + 1, 20)
        batch.sort(key=lambda t: t.exchange_time_ms)
        # the second delivery repeats the first's last five trades: folded once, as queries count them
        delivered = sent[-5:] + batch if n == 1 else batch
        sent += batch
        live.on_batch(common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=delivered))
        updates.append(await _next(stream))
    assert [u.sequence for u in updates] == [first.sequence + 1, first.sequence + 2, first.sequence + 3]
    last = updates[-1]
    assert last.last_trade_ids[BTC.key] == sent[-1].trade_id
    expected = oracle_bars(
        ticks(stored + sent), hour, hour + HOUR, HOUR, Decimal("0.10"), lambda t: utc_day(t)[0], now
    )[0]
    assert (Decimal(last.bar.buy_volume), Decimal(last.bar.sell_volume)) == (expected.buy, expected.sell)
    rows = {Decimal(r.price): [Decimal(r.buy_volume), Decimal(r.sell_volume)] for r in last.bar.rows}
    assert {p: v for p, v in rows.items() if v != [0, 0]} == expected.rows
    # a snapshot holds every imbalance of the bar (the oracle's), and each was announced as new once
    probe = stack.stub.StreamOrderFlow(subscribe)
    snapshot = await _next(probe)
    probe.cancel()
    assert snapshot.snapshot and snapshot.sequence == last.sequence
    final = [(Decimal(i.price), SIDE[i.side]) for i in snapshot.bar.imbalances]
    assert final == oracle_imbalances(expected.rows, Decimal("0.10"), Decimal(3), Decimal(0))
    announced = [(Decimal(i.price), SIDE[i.side]) for u in updates for i in u.new_imbalances]
    announced += [(Decimal(i.price), SIDE[i.side]) for i in first.bar.imbalances]
    assert set(final) <= set(announced)
    assert len(announced) == len(set(announced))
    stream.cancel()

    # two batches while disconnected; resuming from the last cursor replays exactly them, in order
    missed = []
    for n in range(2):
        batch = make(rng, 60_000 + 100 * n, max(minute - MIN, hour), int(time.time() * 1000) + 1, 5)
        batch.sort(key=lambda t: t.exchange_time_ms)
        missed.append(batch)
        live.on_batch(common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=batch))
    resumed = stack.stub.StreamOrderFlow(
        pb.StreamOrderFlowRequest(
            instruments=[BTC.to_proto()],
            timeframe="1h",
            parameters=parameters,
            resume_cursor=last.resume_cursor,
        )
    )
    replay = [await _next(resumed), await _next(resumed)]
    assert [(u.sequence, u.replayed) for u in replay] == [
        (last.sequence + 1, True),
        (last.sequence + 2, True),
    ]
    assert replay[-1].last_trade_ids[BTC.key] == missed[-1][-1].trade_id
    live.on_batch(
        common_pb2.TradeBatch(instrument=BTC.to_proto(), trades=make(rng, 70_000, minute, minute + 1, 1))
    )
    after = await _next(resumed)
    assert (after.sequence, after.replayed) == (last.sequence + 3, False)
    resumed.cancel()

    # a cursor the service cannot replay from (another instance) starts with a snapshot
    other = stack.stub.StreamOrderFlow(
        pb.StreamOrderFlowRequest(
            instruments=[BTC.to_proto()], timeframe="1h", parameters=parameters, resume_cursor="0000-abc-1"
        )
    )
    snapshot = await _next(other)
    assert snapshot.snapshot and snapshot.sequence == after.sequence
    assert snapshot.bar.buy_volume == after.bar.buy_volume
    other.cancel()


async def test_stream_bad_input(stack: Stack) -> None:
    attach_live(stack, 0)
    stream = stack.stub.StreamOrderFlow(
        pb.StreamOrderFlowRequest(instruments=[BTC.to_proto()], timeframe="3m")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("timeframe:")
