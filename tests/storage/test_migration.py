"""A store written by the previous version (schema 1: 1m bars without price fields, 1h bars only where
retention rolled hours up) is migrated when it is opened: price fields from the raw trades where they
are all kept, a 1h bar for every hour, empty fields where nothing can complete them."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from marketdata.storage.backends.sqlite import SqliteBackend
from marketdata.storage.footprints import RES_1H, RES_1M, Bar

from .conftest import BTC, MONGODB_URI, T0, bars_as_oracle, footprints, oracle, trade, write
from .test_price_fields import HOUR, price_oracle, stored_fields, tape


def make_schema_1_store(path: Path) -> tuple[list, int]:  # type: ignore[type-arg]
    """Write three hours of trades, then turn the file into what schema 1 left behind:
    hour 0 rolled up by retention (an old 1h bar, its 1m bars gone, raw trades kept), hours 1 and 2
    with old 1m bars and no 1h bar, and one minute of hour 1 whose raw trades retention removed."""
    h0 = T0 - T0 % HOUR + HOUR
    trades = tape(2000, hours=5, seed=7)
    trades = [t for t in trades if h0 <= t.exchange_time_ms < h0 + 3 * HOUR]
    backend = SqliteBackend(path)
    backend.open()
    write(backend, BTC, trades)
    backend.close()
    gone_minute = h0 + HOUR + 10 * 60_000
    conn = sqlite3.connect(path, isolation_level=None)
    for table in ("footprints_1m", "footprints_1h"):
        for start, payload in conn.execute(f"SELECT start_ms, payload FROM {table}").fetchall():
            bar = Bar.decode(payload)
            bar.exact = False  # schema 1 had no price fields
            conn.execute(f"UPDATE {table} SET payload=? WHERE start_ms=?", (bar.encode(), start))
    conn.execute("DELETE FROM footprints_1m WHERE start_ms < ?", (h0 + HOUR,))
    conn.execute("DELETE FROM footprints_1h WHERE start_ms >= ?", (h0 + HOUR,))
    conn.execute("DELETE FROM trades WHERE t >= ? AND t < ?", (gone_minute, gone_minute + 60_000))
    conn.execute("UPDATE meta SET value=1 WHERE key='schema_version'")
    conn.close()
    return trades, gone_minute


def test_a_schema_1_store_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    trades, gone_minute = make_schema_1_store(path)
    h0 = gone_minute - gone_minute % HOUR - HOUR
    assert any(t.exchange_time_ms // 60_000 == gone_minute // 60_000 for t in trades)

    backend = SqliteBackend(path)
    backend.open()
    try:
        assert backend._w.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == 2
        assert backend.migrated  # storage then orphans the Redis cache of bars
        minutes = footprints(backend, BTC, RES_1M)
        hours = footprints(backend, BTC, RES_1H)
        # rows: every hour has its 1h bar, equal to the trades' footprint
        assert bars_as_oracle(hours) == oracle(trades, "0.10", bar_ms=HOUR)
        assert [h.start_time_ms for h in hours] == [h0, h0 + HOUR, h0 + 2 * HOUR]
        # price fields: completed from raw trades, except the minute whose trades are gone and its hour
        expect_minutes = price_oracle(trades, 60_000)
        got_minutes = {b.start_time_ms: b for b in minutes}
        for start, bar in got_minutes.items():
            if start == gone_minute:
                assert (bar.open, bar.high, bar.max_delta) == ("", "", "")
            else:
                assert stored_fields([bar])[start] == expect_minutes[start]
        expect_hours = price_oracle(trades, HOUR)
        by_hour = {h.start_time_ms: h for h in hours}
        assert stored_fields([by_hour[h0]])[h0] == expect_hours[h0]  # from the hour's raw trades
        assert stored_fields([by_hour[h0 + 2 * HOUR]])[h0 + 2 * HOUR] == expect_hours[h0 + 2 * HOUR]
        assert (by_hour[h0 + HOUR].open, by_hour[h0 + HOUR].min_delta) == ("", "")  # cannot be completed
        assert all(b.version >= 2 for b in minutes if b.start_time_ms != gone_minute)
        # and the store takes trades as usual afterwards, 1h bars included
        late = trade("late-1", "65000.00", "1", True, h0 + 2 * HOUR + 5)
        write(backend, BTC, [late])
        assert bars_as_oracle(footprints(backend, BTC, RES_1H)) == oracle(
            [*trades, late], "0.10", bar_ms=HOUR
        )
    finally:
        backend.close()
    again = SqliteBackend(path)  # a second open migrates nothing more
    again.open()
    assert not again.migrated
    again.close()


@pytest.mark.mongodb
@pytest.mark.skipif(not MONGODB_URI, reason="set MARKETDATA_TEST_MONGODB_URI to run against MongoDB")
def test_a_schema_1_mongodb_gets_hour_bars_and_price_fields() -> None:
    from marketdata.storage.backends.mongodb import MongoBackend

    database = f"marketdata_test_{uuid.uuid4().hex[:12]}"
    old = MongoBackend(MONGODB_URI, database=database)
    old.open()
    try:
        trades = tape(1500, hours=4, seed=3)
        write(old, BTC, trades)
        # what schema 1 left: no 1h bars, 1m bars without price fields, no schema mark
        old.db.footprints_1h.delete_many({})
        old.db.footprints_1m.update_many(
            {}, {"$unset": {k: "" for k in ("pc", "px", "o", "h", "lo", "cl", "mx", "mn")}}
        )
        old.db.meta.delete_one({"_id": "schema"})
        new = MongoBackend(MONGODB_URI, database=database)
        new.open()
        assert new.migrated
        hours = footprints(new, BTC, RES_1H)
        assert bars_as_oracle(hours) == oracle(trades, "0.10", bar_ms=HOUR)
        assert stored_fields(hours) == price_oracle(trades, HOUR)
        assert stored_fields(footprints(new, BTC, RES_1M)) == price_oracle(trades, 60_000)
        new.close()
    finally:
        old.drop_database()
        old.close()
