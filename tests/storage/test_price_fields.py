"""Footprint bars' price fields (open/high/low/close, intrabar delta extremes) and 1h bars kept on ingest,
checked against an independent oracle computed from the raw trades in the order storage received them:
same-millisecond trades, late trades, out-of-order batches, resends; on every backend."""

from __future__ import annotations

import random
from decimal import Decimal

from marketdata.storage.backends.base import Backend
from marketdata.storage.footprints import RES_1H, RES_1M, Bar, roll_up
from marketdata.v1 import common_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2

from .conftest import BTC, T0, bars_as_oracle, footprints, oracle, trade, write

HOUR = 3_600_000
Fields = tuple[str, Decimal, Decimal, str, Decimal, Decimal, int, int]


def price_oracle(arrivals: list[common_pb2.Trade], bar_ms: int) -> dict[int, Fields]:
    """Per bar: (open, high, low, close, max_delta, min_delta, first ms, last ms), plainly in Decimal.
    Order: exchange time, then arrival (first arrival of a trade id; resends are not trades)."""
    seen: set[str] = set()
    ordered: list[tuple[int, int, common_pb2.Trade]] = []
    for n, t in enumerate(arrivals):
        if t.trade_id not in seen:
            seen.add(t.trade_id)
            ordered.append((t.exchange_time_ms, n, t))
    ordered.sort(key=lambda item: (item[0], item[1]))
    by_bar: dict[int, list[common_pb2.Trade]] = {}
    for _, _, t in ordered:
        by_bar.setdefault(t.exchange_time_ms - t.exchange_time_ms % bar_ms, []).append(t)
    out: dict[int, Fields] = {}
    for start, trades in by_bar.items():
        delta = Decimal(0)
        running = []
        for t in trades:
            delta += Decimal(t.size) if t.side == common_pb2.SIDE_BUY else -Decimal(t.size)
            running.append(delta)
        prices = [Decimal(t.price) for t in trades]
        out[start] = (
            trades[0].price,
            max(prices),
            min(prices),
            trades[-1].price,
            max(running),
            min(running),
            min(t.exchange_time_ms for t in trades),
            max(t.exchange_time_ms for t in trades),
        )
    return out


def stored_fields(bars: list[storage_pb2.FootprintBar]) -> dict[int, Fields]:
    return {
        b.start_time_ms: (
            b.open,
            Decimal(b.high),
            Decimal(b.low),
            b.close,
            Decimal(b.max_delta),
            Decimal(b.min_delta),
            b.first_trade_time_ms,
            b.last_trade_time_ms,
        )
        for b in bars
    }


def tape(count: int, hours: int, seed: int) -> list[common_pb2.Trade]:
    """Trades over `hours` hours in time order, about a third sharing their millisecond with the one
    before (prices on a 0.10 grid, some with a finer exchange precision that still floors into a row)."""
    rng = random.Random(seed)
    price = 650_000
    t = T0
    out = []
    for n in range(count):
        if rng.random() > 0.35:
            t += rng.randint(1, hours * HOUR // count * 3)
        price += rng.choice((-2, -1, 0, 1, 2))
        text = f"{price // 10}.{price % 10}0" + ("5" if rng.random() < 0.1 else "")
        out.append(
            trade(
                n + 1, text, f"0.{rng.randint(1, 999):03d}", rng.random() < 0.5, min(t, T0 + hours * HOUR - 1)
            )
        )
    return out


def deliver(backend: Backend, trades: list[common_pb2.Trade], seed: int) -> list[common_pb2.Trade]:
    """Write the trades as a collector under trouble would: batches in time order, with some trades
    held back and sent late (after later minutes and hours), one batch reversed, one batch resent.
    Returns the arrival order."""
    rng = random.Random(seed)
    late = [t for t in trades if rng.random() < 0.08]
    late_ids = {t.trade_id for t in late}
    on_time = [t for t in trades if t.trade_id not in late_ids]
    batches = [on_time[i : i + 97] for i in range(0, len(on_time), 97)]
    batches[len(batches) // 2] = list(reversed(batches[len(batches) // 2]))
    batches.insert(len(batches) // 3 + 1, batches[len(batches) // 3])  # a resend after a lost ack
    rng.shuffle(late)
    batches += [late[i : i + 13] for i in range(0, len(late), 13)]
    arrivals: list[common_pb2.Trade] = []
    for batch in batches:
        write(backend, BTC, batch)
        arrivals += batch
    return arrivals


def assert_hours_merge_minutes(backend: Backend) -> None:
    minutes = [Bar.decode(b.payload) for b in backend.read_footprints(BTC, RES_1M, 0, 2**62)]
    expected = roll_up(minutes)
    hours = [Bar.decode(b.payload) for b in backend.read_footprints(BTC, RES_1H, 0, 2**62)]
    assert sorted(expected) == [h.start_ms for h in hours]
    for hour in hours:
        merged = expected[hour.start_ms]
        merged.version = hour.version
        assert hour.encode() == merged.encode()


def test_price_fields_equal_the_oracle_through_late_out_of_order_and_resent_trades(backend: Backend) -> None:
    trades = tape(2500, hours=3, seed=11)
    arrivals = deliver(backend, trades, seed=5)
    minutes = footprints(backend, BTC, RES_1M)
    hours = footprints(backend, BTC, RES_1H)
    assert stored_fields(minutes) == price_oracle(arrivals, 60_000)
    assert stored_fields(hours) == price_oracle(arrivals, HOUR)
    assert bars_as_oracle(minutes) == oracle(trades, "0.10")
    assert bars_as_oracle(hours) == oracle(trades, "0.10", bar_ms=HOUR)
    assert_hours_merge_minutes(backend)


def test_same_millisecond_trades_keep_the_order_storage_received_them(backend: Backend) -> None:
    t = T0 + 5_000
    first = [trade(1, "100.10", "1", True, t), trade(2, "100.30", "2", False, t)]
    then = [trade(3, "100.20", "0.5", False, t), trade(4, "100.00", "4", True, t - 1_000)]
    write(backend, BTC, first)
    write(backend, BTC, then)  # trade 4 lands before all: it opens the bar
    (bar,) = footprints(backend, BTC, RES_1M)
    # order: 4 (+4), 1 (+1), 2 (-2), 3 (-0.5): running 4, 5, 3, 2.5
    assert (bar.open, bar.high, bar.low, bar.close) == ("100.00", "100.30", "100.00", "100.20")
    assert (bar.max_delta, bar.min_delta) == ("5", "2.5")
    (hour,) = footprints(backend, BTC, RES_1H)
    assert (hour.open, hour.close, hour.max_delta, hour.min_delta) == ("100.00", "100.20", "5", "2.5")


def test_an_all_sell_bar_has_a_negative_max_delta(backend: Backend) -> None:
    write(backend, BTC, [trade(n, "50.00", "0.25", False, T0 + n) for n in range(1, 5)])
    (bar,) = footprints(backend, BTC, RES_1M)
    assert (bar.max_delta, bar.min_delta) == ("-0.25", "-1")


def test_hour_bars_grow_their_version_with_every_change_and_stay_the_merge(backend: Backend) -> None:
    trades = tape(600, hours=2, seed=2)
    write(backend, BTC, trades[:500])
    before = {b.start_time_ms: b.version for b in footprints(backend, BTC, RES_1H)}
    late = [*trades[500:], trade("x1", "64990.00", "9", False, T0 + 30 * 60_000 + 17)]  # inside hour one
    write(backend, BTC, late)
    after = {b.start_time_ms: b.version for b in footprints(backend, BTC, RES_1H)}
    assert all(after[start] > version for start, version in before.items() if start == T0 - T0 % HOUR)
    assert_hours_merge_minutes(backend)
    assert stored_fields(footprints(backend, BTC, RES_1H)) == price_oracle(trades[:500] + late, HOUR)


def test_an_open_bar_encoded_at_every_commit_equals_one_encoded_once() -> None:
    """Storage re-encodes an open bar at each commit, reusing the rows that did not change; after any
    sequence of trades and encodes the bytes are those of the same bar encoded once, and decode back."""
    rng = random.Random(5)
    incremental, once = Bar(T0, "0.5"), Bar(T0, "0.5")
    for n in range(2_000):
        price, size = f"{100 + rng.randrange(-80, 80) / 4:.2f}", f"{rng.randrange(1, 900) / 100:.2f}"
        is_buy, at = rng.random() < 0.5, T0 + n
        incremental.add(price, size, is_buy, at)
        once.add(price, size, is_buy, at)
        if rng.random() < 0.1:  # a commit
            assert incremental.encode() == Bar.decode(incremental.encode()).encode()
    assert incremental.encode() == once.encode()
    assert [r.price for r in storage_pb2.FootprintBar.FromString(incremental.encode()).rows] == sorted(
        (r.price for r in storage_pb2.FootprintBar.FromString(once.encode()).rows), key=Decimal
    )
