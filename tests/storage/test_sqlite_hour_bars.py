"""The SQLite store saves a live 1h bar at most every HOUR_SAVE_INTERVAL_S (each save rewrites the whole
bar), and nobody can tell: readers through the service get every committed trade, an idle store saves
what it deferred, and a crash before the save is repaired when the store opens again."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
from pathlib import Path

from marketdata.storage.backends.base import Backend
from marketdata.storage.backends.sqlite import SqliteBackend
from marketdata.storage.footprints import RES_1H, RES_1M
from marketdata.v1 import storage_service_pb2 as storage_pb2

from .conftest import BTC, NOW, T0, Running, bars_as_oracle, oracle, walk, write

HOUR = 3_600_000


def stored(path: Path, resolution: int) -> dict[int, tuple[int, int]]:
    """(version, trades) of each stored bar, as the file holds them (another connection)."""
    table = "footprints_1m" if resolution == RES_1M else "footprints_1h"
    with sqlite3.connect(path) as conn:
        return {s: (v, n) for s, v, n in conn.execute(f"SELECT start_ms, version, trades FROM {table}")}


def raw_hours(backend: Backend) -> list[storage_pb2.FootprintBar]:
    """1h bars straight from the backend, without saving what it deferred."""
    return [
        storage_pb2.FootprintBar.FromString(b.payload) for b in backend.read_footprints(BTC, RES_1H, 0, 2**62)
    ]


def test_quick_writes_save_the_hour_bar_less_often_than_the_minute_bar(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    backend = SqliteBackend(path, synchronous="NORMAL")
    backend.open()
    try:
        trades = walk(400, spacing_ms=50)  # 20 s of one minute
        for n in range(0, 400, 20):
            write(backend, BTC, trades[n : n + 20])
        hour = T0 - T0 % HOUR
        minute_version, minute_trades = stored(path, RES_1M)[T0]
        hour_version, hour_trades = stored(path, RES_1H)[hour]
        assert (minute_version, minute_trades) == (20, 400)  # every commit
        assert hour_version < minute_version / 2  # deferred: written a few times only
        assert hour_trades < 400 and backend.has_deferred(BTC, hour, hour + HOUR)
        changed = backend.flush_deferred(NOW)
        assert [(c.resolution, c.start_ms) for c in changed] == [(RES_1H, hour)]
        assert stored(path, RES_1H)[hour] == (hour_version + 1, 400)
        assert bars_as_oracle(raw_hours(backend)) == oracle(trades, "0.10", bar_ms=HOUR)
        assert not backend.has_deferred()
    finally:
        backend.close()


def _write_then_die(path: str) -> None:  # a child process: writes, then exits without closing
    backend = SqliteBackend(path)
    backend.open()
    trades = walk(300, spacing_ms=50)
    for n in range(0, 300, 30):
        write(backend, BTC, trades[n : n + 30])
    assert backend.has_deferred()
    os._exit(0)  # no close(), no flush: what a SIGKILL leaves


def test_a_crash_before_the_deferred_save_is_repaired_when_the_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    child = multiprocessing.get_context("spawn").Process(target=_write_then_die, args=(str(path),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    hour = T0 - T0 % HOUR
    assert stored(path, RES_1H)[hour][1] < 300  # the file lacks the deferred trades
    backend = SqliteBackend(path)
    backend.open()
    try:
        assert not backend.has_deferred()
        assert bars_as_oracle(raw_hours(backend)) == oracle(walk(300, spacing_ms=50), "0.10", bar_ms=HOUR)
    finally:
        backend.close()


async def test_readers_see_every_trade_and_an_idle_store_saves_what_it_deferred(storage: Running) -> None:
    trades = walk(600, spacing_ms=40)
    for n in range(0, 600, 60):
        await storage.write(BTC, [trades[n : n + 60]])
    backend = storage.service.store.backend
    hour = T0 - T0 % HOUR
    # the service's query saves the deferred bar first: all 600 trades, not what the file held
    got = await storage.footprints(BTC, hour, hour + HOUR, storage_pb2.FOOTPRINT_RESOLUTION_1H)
    assert bars_as_oracle(got) == oracle(trades, "0.10", bar_ms=HOUR)
    more = walk(50, start_ms=T0 + 30_000, first_id=1000, seed=9)
    await storage.write(BTC, [more])  # within the interval of the save the query made: deferred
    assert backend.has_deferred()
    for _ in range(200):  # the idle writer saves after DEFERRED_FLUSH_S; allow a loaded machine 10 s
        if not backend.has_deferred():
            break
        await asyncio.sleep(0.05)
    assert not backend.has_deferred()  # saved by the idle writer, without a reader asking
    assert bars_as_oracle(raw_hours(backend)) == oracle([*trades, *more], "0.10", bar_ms=HOUR)
