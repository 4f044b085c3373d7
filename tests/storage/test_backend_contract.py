"""The same contract on every backend: the embedded store always, MongoDB when
MARKETDATA_TEST_MONGODB_URI is set (e.g. mongodb://127.0.0.1:27017; each test uses its own database)."""

from __future__ import annotations

from pathlib import Path

from marketdata.storage.backends.base import Backend, InvalidBatch, RestoreSession, TradeWrite, trade_of
from marketdata.storage.footprints import RES_1H, RES_1M, Bar, roll_up
from marketdata.v1 import order_book_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2

from .conftest import (
    BTC,
    ETH,
    NOW,
    T0,
    bars_as_oracle,
    footprints,
    oracle,
    reopen,
    stored_trades,
    trade,
    walk,
    write,
)
from .test_price_fields import price_oracle, stored_fields


def test_writes_are_idempotent_by_identity_in_trades_and_footprints(backend: Backend) -> None:
    trades = walk(3000)
    first = write(backend, BTC, trades[:2000])
    assert (first.inserted, first.duplicates) == (2000, 0)
    # a resend overlapping what is stored, as after a lost acknowledgement
    second = write(backend, BTC, trades[1000:])
    assert (second.inserted, second.duplicates) == (1000, 1000)
    # a second collector replica sends everything again
    assert write(backend, BTC, trades).duplicates == 3000
    got = stored_trades(backend, BTC)
    assert [t.trade_id for t in got] == [t.trade_id for t in trades]
    assert got == trades  # every field as sent
    assert bars_as_oracle(footprints(backend, BTC)) == oracle(trades, "0.10")


def test_one_commit_with_the_same_trade_twice_stores_it_once(backend: Backend) -> None:
    trades = walk(10)
    result = backend.write_trades([TradeWrite(BTC, trades, "0.10"), TradeWrite(BTC, trades[5:], "")], NOW)
    assert [(o.inserted, o.duplicates) for o in result.outcomes] == [(10, 0), (0, 5)]  # type: ignore[union-attr]
    assert bars_as_oracle(footprints(backend, BTC)) == oracle(trades, "0.10")


def test_rows_are_floor_of_price_over_tick_with_exact_decimals(backend: Backend) -> None:
    trades = [
        trade(1, "65000.10", "0.1", True, T0),
        trade(2, "65000.19", "0.2", True, T0 + 1),  # off-grid: floor to 65000.10
        trade(3, "65000.2", "0.300000000000000001", False, T0 + 2),
        trade(4, "65000.10", "0.1", False, T0 + 3),
    ]
    write(backend, BTC, trades, tick="0.10")
    (bar,) = footprints(backend, BTC)
    rows = {r.price: (r.buy_volume, r.sell_volume, r.buy_trades, r.sell_trades) for r in bar.rows}
    assert rows == {
        "65000.10": ("0.3", "0.1", 2, 1),
        "65000.20": ("0", "0.300000000000000001", 0, 1),
    }
    assert (bar.trades, bar.buy_volume, bar.sell_volume, bar.row_size) == (
        4,
        "0.3",
        "0.400000000000000001",
        "0.10",
    )
    assert (bar.first_trade_time_ms, bar.last_trade_time_ms, bar.start_time_ms) == (T0, T0 + 3, T0)


def test_late_trades_update_their_bar_and_bump_its_version(backend: Backend) -> None:
    trades = walk(200, spacing_ms=500)  # 100 s: two bars
    write(backend, BTC, trades[::2])
    before = {b.start_time_ms: b.version for b in footprints(backend, BTC)}
    late = write(backend, BTC, trades[1::2])  # backfill of the missing ids, minutes later
    after = {b.start_time_ms: b.version for b in footprints(backend, BTC)}
    assert late.late_bars == 2
    assert all(after[start] > version for start, version in before.items())
    assert bars_as_oracle(footprints(backend, BTC)) == oracle(trades, "0.10")
    # a resend changes nothing, so versions stay
    write(backend, BTC, trades)
    assert {b.start_time_ms: b.version for b in footprints(backend, BTC)} == after


def test_invalid_batches_are_rejected_naming_the_field_and_store_nothing(backend: Backend) -> None:
    good = walk(3)
    cases = {
        "batch.trades[1].price": [good[0], trade(9, "1e5", "1", True, T0), good[2]],
        "batch.trades[0].size": [trade(9, "1", "-1", True, T0)],
        "batch.trades[0].trade_id": [trade("", "1", "1", True, T0)],
        "batch.trades[0].exchange_time_ms": [trade(9, "1", "1", True, 0)],
    }
    for field, trades in cases.items():
        result = backend.write_trades([TradeWrite(BTC, trades, "0.10")], NOW)
        assert isinstance(result.outcomes[0], InvalidBatch)
        assert str(result.outcomes[0]).startswith(field), result.outcomes[0]
    bad_tick = backend.write_trades([TradeWrite(BTC, good, "0")], NOW).outcomes[0]
    assert isinstance(bad_tick, InvalidBatch) and "tick_size" in str(bad_tick)
    no_tick = backend.write_trades([TradeWrite(ETH, good, "")], NOW).outcomes[0]
    assert isinstance(no_tick, InvalidBatch) and "tick_size" in str(no_tick)
    # a bad batch does not spoil the good one committed with it
    mixed = backend.write_trades(
        [TradeWrite(BTC, cases["batch.trades[0].size"], "0.10"), TradeWrite(BTC, good, "0.10")], NOW
    )
    assert isinstance(mixed.outcomes[0], InvalidBatch) and mixed.outcomes[1].inserted == 3  # type: ignore[union-attr]
    assert [t.trade_id for t in stored_trades(backend, BTC)] == ["1", "2", "3"]


def test_durable_across_reopen_with_identity_still_enforced(backend: Backend, tmp_path: Path) -> None:
    trades = walk(500)
    write(backend, BTC, trades)
    backend.close()
    again = reopen(backend, tmp_path)
    try:
        assert again.tick_sizes() == {BTC: "0.10"}
        assert write(again, BTC, trades, tick="").duplicates == 500  # the registry remembers the tick size
        assert [t.trade_id for t in stored_trades(again, BTC)] == [t.trade_id for t in trades]
        more = walk(10, start_ms=T0 + 10_000_000, first_id=10_000)
        assert write(again, BTC, more, tick="").inserted == 10
        assert len(stored_trades(again, BTC)) == 510
    finally:
        again.close()
        backend.open()


def test_range_reads_are_in_exchange_order_and_page_by_cursor(backend: Backend) -> None:
    trades = walk(1000, spacing_ms=3)
    write(backend, BTC, trades[500:])
    write(backend, BTC, trades[:500])  # stored out of order (backfill first)
    write(backend, ETH, walk(10), tick="0.01")
    start, end = trades[100].exchange_time_ms, trades[900].exchange_time_ms
    got = stored_trades(backend, BTC, start, end)
    assert [t.trade_id for t in got] == [t.trade_id for t in trades[100:900]]
    assert backend.count_trades(BTC, start, end, 10_000) == 800
    assert backend.count_trades(BTC, start, end, 100) == 101  # stops counting past the cap
    pages, after = [], None
    while True:
        chunks = list(backend.read_trades(BTC, start, end, after, 300, 128))
        if not chunks:
            break
        from marketdata.v1 import common_pb2

        for chunk in chunks:
            pages.extend(t.trade_id for t in common_pb2.TradeBatch.FromString(chunk.framed).trades)
        after = chunks[-1].last
        assert sum(c.count for c in chunks) <= 300
    assert pages == [t.trade_id for t in trades[100:900]]


def test_book_snapshots_are_stored_once_and_read_in_time_order(backend: Backend) -> None:
    def snapshot(n: int) -> order_book_pb2.OrderBookSnapshot:
        return order_book_pb2.OrderBookSnapshot(
            instrument=BTC.to_proto(),
            bids=[order_book_pb2.PriceLevel(price=f"6500{n}.10", size="1.5")],
            asks=[order_book_pb2.PriceLevel(price=f"6500{n}.20", size="0.25")],
            update_id=1000 + n,
            exchange_time_ms=T0 + n * 1000,
            receive_time_ns=1,
        )

    snaps = [snapshot(n) for n in range(5)]
    (first,) = backend.write_book_snapshots([snaps[:3]])
    (second,) = backend.write_book_snapshots([snaps])  # a resend
    assert (first.inserted, second.inserted, second.duplicates) == (3, 2, 3)  # type: ignore[union-attr]
    got = [
        order_book_pb2.OrderBookSnapshot.FromString(p)
        for chunk in backend.read_book_snapshots(BTC, T0, T0 + 10_000, 0)
        for p in chunk
    ]
    assert got == snaps
    bad = snapshot(9)
    bad.bids[0].price = "NaN"
    (outcome,) = backend.write_book_snapshots([[bad]])
    assert isinstance(outcome, InvalidBatch) and "snapshots[0].bids[0].price" in str(outcome)


def test_stats_count_bytes_and_range_per_collection_and_instrument(backend: Backend) -> None:
    trades = walk(600, spacing_ms=200)
    write(backend, BTC, trades)
    write(backend, BTC, trades)  # duplicates add nothing
    write(backend, ETH, walk(5, start_ms=T0 + 999), tick="0.01")
    stats = {(s.collection, s.instrument): s for s in backend.stats()}
    trades_btc = stats[("trades", BTC)]
    assert trades_btc.count == 600 and trades_btc.bytes > 600 * 20
    assert (trades_btc.oldest_ms, trades_btc.newest_ms) == (
        trades[0].exchange_time_ms,
        trades[-1].exchange_time_ms,
    )
    bars = stats[("footprints_1m", BTC)]
    assert bars.count == len(oracle(trades, "0.10")) == 2
    assert (bars.oldest_ms, bars.newest_ms) == (T0, T0 + 60_000)
    assert stats[("trades", ETH)].count == 5
    assert backend.store_bytes() > 0


def test_delete_export_and_restore_put_back_exactly_without_double_counting(backend: Backend) -> None:
    trades = walk(300, spacing_ms=1000)  # 5 minutes
    write(backend, BTC, trades)
    expected_bars = bars_as_oracle(footprints(backend, BTC))
    cut = T0 + 180_000
    exported = [p for chunk in backend.export_range("trades", BTC, 0, cut) for p in chunk]
    assert len(exported) == 180
    assert backend.delete_range("trades", BTC, 0, cut) == 180
    assert backend.oldest("trades", BTC) == cut
    # bars kept: restoring the raw trades must not add them to the bars again
    from marketdata.v1 import common_pb2

    session = RestoreSession()
    restored = backend.restore_trades(
        BTC, "0.10", [common_pb2.Trade.FromString(p) for p in exported], session
    )
    assert (restored.inserted, restored.duplicates) == (180, 0)
    assert bars_as_oracle(footprints(backend, BTC)) == expected_bars
    assert [t.trade_id for t in stored_trades(backend, BTC)] == [t.trade_id for t in trades]
    # bars removed too: restoring the trades rebuilds them (in two chunks of one restore session)
    backend.delete_range("footprints_1m", BTC, 0, cut)
    backend.delete_range("trades", BTC, 0, cut)
    session = RestoreSession()
    again = [common_pb2.Trade.FromString(p) for p in exported]
    backend.restore_trades(BTC, "0.10", again[:90], session)
    backend.restore_trades(BTC, "0.10", again[90:], session)
    assert bars_as_oracle(footprints(backend, BTC)) == expected_bars
    # archived bars put back where absent are a no-op now; the counts stay
    payloads = [b.payload for b in backend.read_footprints(BTC, RES_1M, 0, cut)]
    assert backend.put_bars(BTC, RES_1M, payloads, False) == 0
    assert bars_as_oracle(footprints(backend, BTC)) == expected_bars


def test_roll_up_into_hour_bars_is_idempotent(backend: Backend) -> None:
    trades = walk(400, spacing_ms=20_000)  # over two hours
    write(backend, BTC, trades)
    assert footprints(backend, BTC, RES_1H) == [
        Bar.decode(b).to_proto() for b in _rolled(backend)
    ]  # on ingest
    minute_bars = [Bar.decode(b.payload) for b in backend.read_footprints(BTC, RES_1M, 0, 2**62)]
    hourly = [b.encode() for _, b in sorted(roll_up(minute_bars).items())]
    versions = [[b.version for b in footprints(backend, BTC, RES_1H)]]
    for _ in range(2):  # replaced, not added, and every replacement is a new version
        assert backend.put_bars(BTC, RES_1H, hourly, True) == len(hourly)
        versions.append([b.version for b in footprints(backend, BTC, RES_1H)])
    got = footprints(backend, BTC, RES_1H)
    assert bars_as_oracle(got) == oracle(trades, "0.10", bar_ms=3_600_000)
    assert stored_fields(got) == price_oracle(trades, 3_600_000)
    assert all(b.resolution == storage_pb2.FOOTPRINT_RESOLUTION_1H for b in got)
    assert all(a < b < c for a, b, c in zip(*versions, strict=True))
    assert not backend.put_bars(BTC, RES_1H, hourly, False)  # where absent only: nothing to do


def _rolled(backend: Backend) -> list[bytes]:
    """The 1h bars a roll-up of the stored 1m bars makes, at the stored 1h bars' versions."""
    minute_bars = [Bar.decode(b.payload) for b in backend.read_footprints(BTC, RES_1M, 0, 2**62)]
    versions = {b.start_ms: b.version for b in backend.read_footprints(BTC, RES_1H, 0, 2**62)}
    out = []
    for start, bar in sorted(roll_up(minute_bars).items()):
        bar.version = versions.get(start, 0)
        out.append(bar.encode())
    return out


def test_last_trades_are_those_of_the_newest_millisecond_in_storage_order(backend: Backend) -> None:
    """Where a restarting collector resumes: the trades at the end of stored history, however they
    were written (the newest part first, a backfill after it)."""
    assert backend.last_trades(BTC, 1000) == []
    trades = walk(300, spacing_ms=5)
    same_ms = [trade(1000 + n, "65000.10", "0.001", True, T0 + 10_000) for n in range(4)]
    write(backend, BTC, trades[200:] + same_ms[:2])
    write(backend, BTC, trades[:200])  # older trades stored later do not move the end
    write(backend, BTC, same_ms[2:])
    write(backend, ETH, walk(3), tick="0.01")
    assert [trade_of(f).trade_id for f in backend.last_trades(BTC, 1000)] == ["1000", "1001", "1002", "1003"]
    assert [trade_of(f).trade_id for f in backend.last_trades(BTC, 2)] == ["1002", "1003"]
    assert [trade_of(f).trade_id for f in backend.last_trades(ETH, 1000)] == ["3"]
