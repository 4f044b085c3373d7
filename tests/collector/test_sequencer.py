"""Sequencers: each trade once, in order, whatever the arrival order, duplicates and holes.

The REST side here is an in-memory exchange history (the full list of trades), so these tests pin
the ordering logic; tests/collector/test_collector_replay.py exercises the same paths end to end
against the replay exchange's real REST endpoints.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.collector.rest import RestError
from marketdata.collector.sequencer import ConsecutiveIdSequencer, ReconnectWindowSequencer
from marketdata.collector.stats import FeedStats
from marketdata.collector.trade_runs import TradeRun
from marketdata.core.config import load_settings
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import common_pb2

SPOT = InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")
LINEAR = InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT")
FAST = load_settings({"MARKETDATA_GAP_GRACE_S": "0.01", "MARKETDATA_BACKFILL_TIMEOUT_S": "2"})


def _trade(trade_id: int, source: int = common_pb2.TRADE_SOURCE_WEBSOCKET) -> common_pb2.Trade:
    return common_pb2.Trade(
        trade_id=str(trade_id),
        price=f"{100 + trade_id}.5",
        size="1",
        exchange_time_ms=trade_id,
        source=source,
    )


class History:
    """The exchange's side: every trade, served by id like historicalTrades."""

    def __init__(self, ids: range, fail: int = 0) -> None:
        self.ids = ids
        self.calls = 0
        self.fail = fail

    async def from_id(self, start: int, count: int) -> list[tuple[int, common_pb2.Trade]]:
        self.calls += 1
        if self.calls <= self.fail:
            raise RestError("429", 429, retry_after=0.01)
        return [
            (i, _trade(i, common_pb2.TRADE_SOURCE_REST_BACKFILL))
            for i in self.ids
            if start <= i < start + count
        ]


async def _run_binance(arrivals: list[list[int]], history: History) -> tuple[list[str], FeedStats]:
    delivered: list[str] = []
    stats = FeedStats(MarketKey.BINANCE_SPOT)
    seq = ConsecutiveIdSequencer(
        SPOT, stats, lambda _i, trades: delivered.extend(t.trade_id for t in trades), FAST, history.from_id
    )
    for frame in arrivals:
        seq.on_trades(TradeRun.of([_trade(i) for i in frame], int_ids=True))
        await asyncio.sleep(0)
    for _ in range(200):
        if not stats.instrument(SPOT).repairing and seq._task is None:
            break
        await asyncio.sleep(0.01)
    await seq.close()
    return delivered, stats


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    drop=st.sets(st.integers(min_value=1, max_value=58), max_size=20),
    dup=st.sets(st.integers(min_value=0, max_value=59), max_size=10),
    swaps=st.lists(st.integers(min_value=0, max_value=58), max_size=10),
)
def test_binance_every_trade_once_in_order(drop: set[int], dup: set[int], swaps: list[int]) -> None:
    ids = list(range(1000, 1060))
    arrivals = [i for n, i in enumerate(ids) if n not in drop]
    arrivals += [ids[n] for n in dup if n not in drop]  # late duplicates (an overlapping connection)
    for n in swaps:  # local reordering, as two overlapping connections produce
        if n + 1 < len(arrivals):
            arrivals[n], arrivals[n + 1] = arrivals[n + 1], arrivals[n]
    # the first trade seen is the start of the stream; make it the first id
    arrivals.remove(ids[0]) if ids[0] in arrivals else None
    arrivals.insert(0, ids[0])
    delivered, stats = asyncio.run(_run_binance([[i] for i in arrivals], History(range(1000, 1060))))
    # every id up to the last one that arrived live is delivered exactly once, in order
    last_live = max(arrivals)
    assert delivered == [str(i) for i in range(1000, last_live + 1)]
    totals = stats.totals()
    assert totals["gaps_unrepaired"] == 0
    assert totals["backfilled"] + len(set(arrivals)) == len(delivered)


async def _reconnect_then_settle(
    history: History, before: list[int], after: list[int]
) -> tuple[list[str], FeedStats]:
    """Trades `before` a reconnect, then `after` it (possibly none), as the stream delivers them."""
    delivered: list[str] = []
    stats = FeedStats(MarketKey.BINANCE_SPOT)
    seq = ConsecutiveIdSequencer(
        SPOT, stats, lambda _i, trades: delivered.extend(t.trade_id for t in trades), FAST, history.from_id
    )
    seq.on_connected()  # the first connection: nothing to catch up on
    seq.on_trades(TradeRun.of([_trade(i) for i in before], int_ids=True))
    seq.on_connected()
    seq.on_trades(TradeRun.of([_trade(i) for i in after], int_ids=True))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if seq._task is None:
            break
    await seq.close()
    return delivered, stats


def test_binance_trades_sent_while_disconnected_are_fetched_when_none_follow() -> None:
    """The instrument went quiet (or stopped) during the outage: no later trade reveals the gap,
    so the reconnect itself asks REST for what followed the last delivered id."""
    history = History(range(1, 3001))  # 2,000 trades after the outage: more than one REST page
    delivered, stats = asyncio.run(_reconnect_then_settle(history, list(range(1, 1001)), []))
    assert delivered == [str(i) for i in range(1, 3001)]
    gaps = stats.recent_gaps
    assert [(g.kind, g.state, g.recovered_trades) for g in gaps] == [
        (common_pb2.GAP_KIND_RECONNECT_WINDOW, common_pb2.GAP_STATE_REPAIRED, 2000)
    ]


def test_binance_reconnect_with_nothing_missed_records_no_gap() -> None:
    history = History(range(1, 11))
    delivered, stats = asyncio.run(_reconnect_then_settle(history, list(range(1, 11)), []))
    assert delivered == [str(i) for i in range(1, 11)]
    assert list(stats.recent_gaps) == [] and history.calls == 1


def test_binance_reconnect_followed_by_trades_repairs_the_hole_once() -> None:
    history = History(range(1, 31))
    delivered, stats = asyncio.run(_reconnect_then_settle(history, list(range(1, 11)), list(range(21, 31))))
    assert delivered == [str(i) for i in range(1, 31)]
    assert stats.totals()["gaps_unrepaired"] == 0


def test_binance_unrecoverable_gap_is_recorded_and_delivery_goes_on() -> None:
    history = History(range(0))  # the exchange no longer has them
    delivered, stats = asyncio.run(_run_binance([[1], [2], [6], [7]], history))
    assert delivered == ["1", "2", "6", "7"]
    gap = stats.recent_gaps[-1]
    assert gap.state == common_pb2.GAP_STATE_UNREPAIRED
    assert (gap.first_missing_trade_id, gap.last_missing_trade_id, gap.missing_trades) == ("3", "5", 3)
    assert stats.totals()["gaps_unrepaired"] == 1


def test_binance_backfill_honours_retry_after_then_repairs() -> None:
    history = History(range(1, 10), fail=2)
    delivered, stats = asyncio.run(_run_binance([[1], [5], [6]], history))
    assert delivered == ["1", "2", "3", "4", "5", "6"]
    assert history.calls == 3
    assert stats.recent_gaps[-1].state == common_pb2.GAP_STATE_REPAIRED
    assert stats.recent_gaps[-1].recovered_trades == 3


async def _run_bybit(
    live_before: list[str], rest_rows: list[str], live_after: list[str], limit: int
) -> tuple[list[str], FeedStats]:
    delivered: list[str] = []
    stats = FeedStats(MarketKey.BYBIT_LINEAR)
    times = {tid: n for n, tid in enumerate(sorted(set(live_before + rest_rows + live_after)))}

    def trade(tid: str, source: int) -> common_pb2.Trade:
        return common_pb2.Trade(trade_id=tid, price="1", size="1", exchange_time_ms=times[tid], source=source)

    async def recent() -> list[common_pb2.Trade]:
        await asyncio.sleep(0.05)  # live trades arrive meanwhile and must wait
        return [trade(t, common_pb2.TRADE_SOURCE_REST_BACKFILL) for t in rest_rows]

    seq = ReconnectWindowSequencer(
        LINEAR, stats, lambda _i, ts: delivered.extend(t.trade_id for t in ts), FAST, recent, limit
    )
    seq.on_trades(TradeRun.of([trade(t, 1) for t in live_before], int_ids=False))
    seq.on_connected()  # a reconnect
    seq.on_trades(TradeRun.of([trade(t, 1) for t in live_after], int_ids=False))
    await asyncio.sleep(0.2)
    await seq.close()
    return delivered, stats


def test_bybit_reconnect_window_backfilled_in_order_without_duplicates() -> None:
    delivered, stats = asyncio.run(
        _run_bybit(["a", "b"], rest_rows=["a", "b", "c", "d", "e"], live_after=["e", "f"], limit=1000)
    )
    assert delivered == ["a", "b", "c", "d", "e", "f"]
    gap = stats.recent_gaps[-1]
    assert gap.kind == common_pb2.GAP_KIND_RECONNECT_WINDOW
    assert gap.state == common_pb2.GAP_STATE_REPAIRED and gap.recovered_trades == 3  # c, d, e


def test_bybit_window_beyond_recent_trades_is_a_known_gap() -> None:
    # a full page (limit 3) that starts after our last trade: what came between is lost for good
    delivered, stats = asyncio.run(
        _run_bybit(["a", "b"], rest_rows=["x", "y", "z"], live_after=["zz"], limit=3)
    )
    assert delivered == ["a", "b", "x", "y", "z", "zz"]
    gap = stats.recent_gaps[-1]
    assert gap.state == common_pb2.GAP_STATE_UNREPAIRED and "may be lost" in gap.detail


def test_bybit_nothing_missed_records_no_gap() -> None:
    delivered, stats = asyncio.run(_run_bybit(["a", "b"], rest_rows=["a", "b"], live_after=["c"], limit=1000))
    assert delivered == ["a", "b", "c"]
    assert not stats.recent_gaps
