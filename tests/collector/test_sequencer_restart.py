"""Sequencers after a collector restart: they continue from where storage's history ends.

The restart point comes from storage (StorageService.GetLastTrades) after the feeds have started, so
live trades and connects may come first; the REST side is the in-memory history of test_sequencer.
tests/reliability/test_collector_restart.py runs the same against real processes.
"""

from __future__ import annotations

import asyncio

from marketdata.collector.sequencer import ConsecutiveIdSequencer, ReconnectWindowSequencer
from marketdata.collector.stats import FeedStats
from marketdata.collector.trade_runs import TradeRun
from marketdata.core.config import load_settings
from marketdata.core.instruments import MarketKey
from marketdata.v1 import common_pb2

from .test_sequencer import FAST, LINEAR, SPOT, History, _trade


def _binance(history: History, **settings: str) -> tuple[ConsecutiveIdSequencer, list[str], FeedStats]:
    delivered: list[str] = []
    stats = FeedStats(MarketKey.BINANCE_SPOT)
    env = {"MARKETDATA_GAP_GRACE_S": "0.01", "MARKETDATA_BACKFILL_TIMEOUT_S": "2"}
    env.update({f"MARKETDATA_{k.upper()}": v for k, v in settings.items()})
    seq = ConsecutiveIdSequencer(
        SPOT,
        stats,
        lambda _i, trades: delivered.extend(t.trade_id for t in trades),
        load_settings(env),
        history.from_id,
    )
    seq.expect_restart_point()
    return seq, delivered, stats


async def _settle(seq: ConsecutiveIdSequencer | ReconnectWindowSequencer) -> None:
    for _ in range(300):
        await asyncio.sleep(0.01)
        if seq._task is None:
            break
    await seq.close()


def test_binance_backfills_from_the_last_stored_id_to_the_first_live_one() -> None:
    """Stored up to 1009; the exchange went on to 1059 while the collector was down; the first live
    frame starts at 1040 and repeats a stored id: 1010..1059 once each, in order, nothing stored twice."""

    async def run() -> tuple[list[str], FeedStats]:
        seq, delivered, stats = _binance(History(range(1000, 1060)))
        seq.on_connected()
        seq.on_trades(
            TradeRun.of([_trade(i) for i in range(1040, 1050)], int_ids=True)
        )  # before storage has answered: held
        assert delivered == []
        seq.resume_after([_trade(1008), _trade(1009)])
        seq.on_trades(TradeRun.of([_trade(1009)] + [_trade(i) for i in range(1050, 1060)], int_ids=True))
        await _settle(seq)
        return delivered, stats

    delivered, stats = asyncio.run(run())
    assert delivered == [str(i) for i in range(1010, 1060)]
    gap = stats.recent_gaps[-1]
    assert gap.state == common_pb2.GAP_STATE_REPAIRED and gap.recovered_trades == 30
    assert gap.detail.startswith("collector restart: trade ids 1010..1039 missing")


def test_binance_quiet_market_after_a_restart_is_caught_up_over_rest() -> None:
    """No live trade comes after the restart: the trades after the last stored one come from REST."""

    async def run() -> tuple[list[str], FeedStats]:
        seq, delivered, stats = _binance(History(range(1000, 1025)))
        seq.resume_after([_trade(1009)])
        seq.on_connected()
        await _settle(seq)
        return delivered, stats

    delivered, stats = asyncio.run(run())
    assert delivered == [str(i) for i in range(1010, 1025)]
    assert stats.recent_gaps[-1].recovered_trades == 15
    assert "while the collector was down" in stats.recent_gaps[-1].detail


def test_binance_restart_backfill_is_bounded_and_the_rest_is_a_known_gap() -> None:
    """At most MARKETDATA_RESTART_BACKFILL_MAX_TRADES are fetched, the newest ones; the older ids are
    recorded as an unrepaired gap naming the setting."""

    async def run() -> tuple[list[str], FeedStats]:
        seq, delivered, stats = _binance(History(range(1000, 1100)), restart_backfill_max_trades="20")
        seq.resume_after([_trade(1009)])
        seq.on_trades(TradeRun.of([_trade(i) for i in range(1090, 1100)], int_ids=True))
        await _settle(seq)
        return delivered, stats

    delivered, stats = asyncio.run(run())
    assert delivered == [str(i) for i in range(1070, 1100)]
    skipped, repaired = stats.recent_gaps[-2], stats.recent_gaps[-1]
    assert skipped.state == common_pb2.GAP_STATE_UNREPAIRED
    assert (skipped.first_missing_trade_id, skipped.last_missing_trade_id) == ("1010", "1069")
    assert skipped.missing_trades == 60 and "MARKETDATA_RESTART_BACKFILL_MAX_TRADES" in skipped.detail
    assert repaired.state == common_pb2.GAP_STATE_REPAIRED and repaired.recovered_trades == 20


def test_binance_nothing_stored_starts_with_the_first_live_trade() -> None:
    async def run() -> tuple[list[str], FeedStats]:
        seq, delivered, stats = _binance(History(range(1000, 1060)))
        seq.on_connected()
        seq.on_trades(TradeRun.of([_trade(i) for i in range(1040, 1045)], int_ids=True))
        seq.resume_after([])
        await _settle(seq)
        return delivered, stats

    delivered, stats = asyncio.run(run())
    assert delivered == [str(i) for i in range(1040, 1045)]
    assert not stats.recent_gaps


def test_unknown_restart_point_releases_held_trades_and_records_it() -> None:
    async def run() -> tuple[list[str], FeedStats]:
        seq, delivered, stats = _binance(History(range(1000, 1060)))
        seq.on_trades(TradeRun.of([_trade(i) for i in range(1040, 1045)], int_ids=True))
        seq.resume_unknown("storage at 127.0.0.1:1 did not answer within 5 s")
        seq.on_trades(TradeRun.of([_trade(1045)], int_ids=True))
        await _settle(seq)
        return delivered, stats

    delivered, stats = asyncio.run(run())
    assert delivered == [str(i) for i in range(1040, 1046)]
    gap = stats.recent_gaps[-1]
    assert gap.state == common_pb2.GAP_STATE_UNREPAIRED
    assert "where stored history ends is unknown (storage at 127.0.0.1:1" in gap.detail
    assert stats.last_error.endswith("trades sent while the collector was down are not recovered")


def _bybit_trade(tid: str, time_ms: int, source: int = common_pb2.TRADE_SOURCE_WEBSOCKET) -> common_pb2.Trade:
    return common_pb2.Trade(trade_id=tid, price="1", size="1", exchange_time_ms=time_ms, source=source)


async def _run_bybit_restart(
    stored: list[tuple[str, int]], window: list[tuple[str, int]], live: list[tuple[str, int]], limit: int
) -> tuple[list[str], FeedStats]:
    delivered: list[str] = []
    stats = FeedStats(MarketKey.BYBIT_LINEAR)

    async def recent() -> list[common_pb2.Trade]:
        return [_bybit_trade(t, ms, common_pb2.TRADE_SOURCE_REST_BACKFILL) for t, ms in window]

    seq = ReconnectWindowSequencer(
        LINEAR, stats, lambda _i, ts: delivered.extend(t.trade_id for t in ts), FAST, recent, limit
    )
    seq.expect_restart_point()
    seq.on_connected()  # the first connect comes before storage's answer
    seq.on_trades(TradeRun.of([_bybit_trade(t, ms) for t, ms in live], int_ids=False))
    seq.resume_after([_bybit_trade(t, ms) for t, ms in stored])
    await _settle(seq)
    return delivered, stats


def test_bybit_recovers_the_window_after_the_last_stored_time_without_duplicates() -> None:
    """Stored up to b, c (both at 20 ms); the window holds a..f; live starts at f: c is not sent again
    (same millisecond as the end of storage, known by id), d and e are recovered."""
    delivered, stats = asyncio.run(
        _run_bybit_restart(
            stored=[("b", 20), ("c", 20)],
            window=[("a", 10), ("b", 20), ("c", 20), ("d", 30), ("e", 40), ("f", 50)],
            live=[("f", 50), ("g", 60)],
            limit=1000,
        )
    )
    assert delivered == ["d", "e", "f", "g"]
    gap = stats.recent_gaps[-1]
    assert gap.state == common_pb2.GAP_STATE_REPAIRED and gap.recovered_trades == 3  # d, e, f
    assert gap.detail.startswith("collector restart (stored history ends at 20 ms)")


def test_bybit_window_not_reaching_back_to_stored_history_is_a_known_gap() -> None:
    delivered, stats = asyncio.run(
        _run_bybit_restart(
            stored=[("b", 20)], window=[("x", 90), ("y", 95), ("z", 99)], live=[("zz", 100)], limit=3
        )
    )
    assert delivered == ["x", "y", "z", "zz"]
    gap = stats.recent_gaps[-1]
    assert gap.state == common_pb2.GAP_STATE_UNREPAIRED
    assert "collector restart" in gap.detail and "trades between 20 and 90 ms may be lost" in gap.detail
