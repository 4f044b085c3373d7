"""The embedded store: one SQLite file in WAL mode.

Durability: every write is one transaction, committed with `synchronous=FULL` by default: in WAL mode
SQLite then fsyncs the WAL at each commit, so a commit that returned survives a SIGKILL (the bytes are
in the WAL file, which the next open replays) and a power loss (they are on the disk). `NORMAL` skips
that fsync: still safe against a killed process (the OS has the WAL pages), not against a power cut.
Many batches share one commit (the service's group commit), so the fsync is paid per commit, not per batch.

Layout (WITHOUT ROWID tables, clustered by their primary key):
- trades(inst, t, seq, tid, payload): clustered by (instrument, exchange time, storage sequence), so a
  time range is one contiguous scan; UNIQUE(inst, tid) is the trade identity. `payload` is the Trade
  message already framed as a TradeBatch.trades field, so a query concatenates bytes.
- footprints_1m / footprints_1h(inst, start_ms, version, trades, payload): one row per bar, payload a
  FootprintBar message; 1m bars are updated in the same transaction as the trades that changed them.
  A 1h bar equals the merge of its hour's 1m bars (until retention removes those), with one exception:
  a 1h bar that live writes touch again within HOUR_SAVE_INTERVAL_S of its last save is "deferred":
  updated in the writer's cache and saved by a later commit or by flush_deferred. Each save re-encodes
  and rewrites the whole bar, and an open hour of a busy instrument holds tens of thousands of rows:
  rewritten at every commit (every 50 ms per instrument) it grew to most of the store's work and its
  write volume. Readers never see the lag: the Store flushes before it reads 1h bars that overlap a
  deferred one; a bar dropped before its save (a failed transaction, a full cache, a crash) is
  rebuilt from its 1m bars (at the next save, or when the store opens).
- book_snapshots(inst, t, update_id, payload): identity (instrument, time, update id).
- stats(collection, inst, ...): counts, bytes, oldest, newest, maintained in the same transactions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from marketdata.core.instruments import InstrumentId
from marketdata.core.wire import length_delimited
from marketdata.storage.backends.base import (
    ChangedBar,
    CollectionStat,
    InvalidBatch,
    RestoreSession,
    StoredBar,
    StoreUnavailable,
    TradeChunk,
    TradeCounting,
    TradeWrite,
    WriteOutcome,
    WriteResult,
    large_enough,
    screen_writes,
    trade_of,
    unframe,
    validate_snapshot,
    validate_tick,
    validate_trades,
)
from marketdata.storage.footprints import BAR_MS, HOUR_MS, MINUTE_MS, RES_1H, RES_1M, Bar, roll_up
from marketdata.v1 import common_pb2, order_book_pb2

# 2: bars carry the price fields (open/high/low/close, delta extremes) and 1h bars are kept on ingest;
# a version-1 store is migrated on open (see _migrate_v1).
SCHEMA_VERSION = 2
log = logging.getLogger(__name__)
_HOT_BARS = 512  # decoded bars kept by the writer (the current minutes, recent late ones)
HOUR_SAVE_INTERVAL_S = 0.5  # a live 1h bar is saved at most this often (see the module docstring)
_RECOVERY_HOURS = 3  # on open, 1h bars of an instrument's newest hours with 1m bars are checked
_READERS = 4
# Multi-row INSERT sizes: a chunk of rows is cut into these, so only a few statements are prepared.
_INSERT_SIZES = (256, 32, 4, 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS instruments(
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, tick_size TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trades(
    inst INTEGER NOT NULL, t INTEGER NOT NULL, seq INTEGER NOT NULL, tid TEXT NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY(inst, t, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS trades_identity ON trades(inst, tid);
CREATE TABLE IF NOT EXISTS book_snapshots(
    inst INTEGER NOT NULL, t INTEGER NOT NULL, update_id INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY(inst, t, update_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS footprints_1m(
    inst INTEGER NOT NULL, start_ms INTEGER NOT NULL, version INTEGER NOT NULL, trades INTEGER NOT NULL,
    payload BLOB NOT NULL, PRIMARY KEY(inst, start_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS footprints_1h(
    inst INTEGER NOT NULL, start_ms INTEGER NOT NULL, version INTEGER NOT NULL, trades INTEGER NOT NULL,
    payload BLOB NOT NULL, PRIMARY KEY(inst, start_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats(
    collection TEXT NOT NULL, inst INTEGER NOT NULL, count INTEGER NOT NULL, bytes INTEGER NOT NULL,
    oldest INTEGER NOT NULL, newest INTEGER NOT NULL, PRIMARY KEY(collection, inst)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heartbeat(id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, pad BLOB);
"""

_TIME_COLUMN = {
    "trades": "t",
    "book_snapshots": "t",
    "footprints_1m": "start_ms",
    "footprints_1h": "start_ms",
}
_BAR_TABLE: dict[int, str] = {RES_1M: "footprints_1m", RES_1H: "footprints_1h"}
_TRADE_TAG = 0x12  # TradeBatch.trades = 2
_SNAPSHOT_TAG = 0x0A  # QueryBookSnapshotsResponse.snapshots = 1


class _Stat:
    __slots__ = ("bytes", "count", "newest", "oldest")

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.oldest = 0
        self.newest = 0

    def add(self, count: int, size: int, oldest: int, newest: int) -> None:
        self.count += count
        self.bytes += size
        if count:
            self.oldest = oldest if self.oldest == 0 else min(self.oldest, oldest)
            self.newest = max(self.newest, newest)


class _Touched:
    """A bar changed by the current transaction."""

    __slots__ = ("bar", "instrument", "old_bytes", "payload")

    def __init__(self, instrument: InstrumentId, bar: Bar, old_bytes: int) -> None:
        self.instrument = instrument
        self.bar = bar
        self.old_bytes = old_bytes
        self.payload = b""


class SqliteBackend(TradeCounting):
    name = "sqlite"
    migrated = False

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", max_bytes: int = 0) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.max_bytes = max_bytes
        self._writer: sqlite3.Connection | None = None
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._reader_lock = threading.Lock()
        self._reader_count = 0
        self._inst_ids: dict[InstrumentId, int] = {}
        self._inst_keys: dict[int, InstrumentId] = {}
        self._ticks: dict[InstrumentId, str] = {}
        self._bars: OrderedDict[tuple[int, int, int], Bar] = OrderedDict()
        # 1h bars changed in the cache and not saved yet, and when each live 1h bar was last saved
        self._deferred: dict[tuple[int, int, int], _Touched] = {}
        self._hour_saved: dict[tuple[int, int, int], float] = {}
        # 1h bars whose committed changes were lost from the cache unsaved: rebuilt from their 1m bars
        self._stale_hours: set[tuple[int, int, int]] = set()
        self._saving_hours: list[tuple[int, int, int]] = []  # 1h bars the open transaction saves
        self._next_seq = 1
        self._pending: list[tuple[InstrumentId, int, bool, str]] = []

    # --- connections -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA secure_delete=OFF")  # deleted pages are reused, not zeroed
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA mmap_size=1073741824")  # reads share the OS page cache, no per-connection copy
        if self.max_bytes:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute(f"PRAGMA max_page_count={max(16, self.max_bytes // page_size)}")
        return conn

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._connect()
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = SCHEMA_VERSION if row is None else int(row[0])
            if row is None:
                conn.execute("INSERT INTO meta VALUES('schema_version', ?)", (SCHEMA_VERSION,))
            elif version not in (1, SCHEMA_VERSION):
                raise StoreUnavailable(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
            row = conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
            self._next_seq = int(row[0]) if row else 1
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._writer = conn
        self._load_instruments()
        if version == 1:
            self._migrate_v1()
        self._recover_hours()

    def close(self) -> None:
        if self._writer is not None:
            try:
                self.flush_deferred(int(time.time() * 1000))
            except StoreUnavailable as exc:  # the next open rebuilds what this could not save
                log.warning("deferred 1h bars not saved at close", extra={"error": str(exc)})
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._writer.close()
            self._writer = None
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break

    @property
    def _w(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreUnavailable("store is closed")
        return self._writer

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._readers.put(conn)

    def _load_instruments(self) -> None:
        for inst_id, key, tick in self._w.execute("SELECT id, key, tick_size FROM instruments"):
            instrument = InstrumentId.parse(key)
            self._inst_ids[instrument] = inst_id
            self._inst_keys[inst_id] = instrument
            if tick:
                self._ticks[instrument] = tick

    def _inst_id(self, instrument: InstrumentId, tick: str) -> int:
        """The instrument's id, registering it or updating its tick size inside the caller's transaction;
        the in-memory registry follows once the transaction commits (see _settle)."""
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            cursor = self._w.execute(
                "INSERT INTO instruments(key, tick_size, created_ms) VALUES(?, ?, ?)",
                (instrument.key, tick, int(time.time() * 1000)),
            )
            inst_id = int(cursor.lastrowid or 0)
            self._inst_ids[instrument] = inst_id
            self._inst_keys[inst_id] = instrument
            self._pending.append((instrument, inst_id, True, tick))
        elif tick and self._ticks.get(instrument) != tick:
            self._w.execute("UPDATE instruments SET tick_size=? WHERE id=?", (tick, inst_id))
            self._pending.append((instrument, inst_id, False, tick))
        return inst_id

    def _settle(self, committed: bool) -> None:
        for instrument, inst_id, created, tick in self._pending:
            if committed:
                if tick:
                    self._ticks[instrument] = tick
            elif created:
                self._inst_ids.pop(instrument, None)
                self._inst_keys.pop(inst_id, None)
        self._pending.clear()
        if committed and self._saving_hours:
            now = time.monotonic()
            saved = self._hour_saved
            for key in self._saving_hours:
                saved[key] = now
                self._deferred.pop(key, None)
                self._stale_hours.discard(key)
            if len(saved) > _HOT_BARS:  # only recent saves matter
                for key in [k for k, at in saved.items() if now - at >= HOUR_SAVE_INTERVAL_S]:
                    del saved[key]
        self._saving_hours.clear()

    def _begin(self) -> None:
        self._pending.clear()
        self._saving_hours.clear()
        self._w.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._w.execute("COMMIT")
        self._settle(True)

    def _abort(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._w.in_transaction:
                self._w.execute("ROLLBACK")
        self._settle(False)

    def _migrate_v1(self) -> None:
        """Bring a version-1 store up to date, once, on open (before any write).

        Version 1 kept 1m bars without the price fields and made 1h bars only when retention removed
        1m bars. Per instrument and hour, oldest first, one transaction per hour (an interrupted
        migration resumes: finished hours need nothing more): each 1m bar without price fields gets
        them from its raw trades when the store still holds all of them; the hour's 1h bar becomes
        the merge of its 1m bars when it is missing, lacks price fields or holds fewer trades than
        they do; a 1h bar whose 1m bars retention removed gets its price fields from the hour's raw
        trades when they are all kept. Bars that cannot be completed keep empty price fields.
        """
        began = time.monotonic()
        hours_done = 0
        for inst_id in sorted(self._inst_keys):
            hours = {
                int(s) - int(s) % HOUR_MS
                for (s,) in self._w.execute("SELECT start_ms FROM footprints_1m WHERE inst=?", (inst_id,))
            }
            hours |= {
                int(s)
                for (s,) in self._w.execute("SELECT start_ms FROM footprints_1h WHERE inst=?", (inst_id,))
            }
            for hour in sorted(hours):
                try:
                    self._begin()
                    stats = self._migrate_hour(inst_id, hour)
                    for (i, res), stat in stats.items():
                        self._bump_stat(_BAR_TABLE[res], i, stat)
                    self._commit()
                except sqlite3.Error as exc:
                    self._abort()
                    raise StoreUnavailable(f"{self.path}: migration to schema 2 failed: {exc}") from exc
                hours_done += 1
        self._w.execute("INSERT OR REPLACE INTO meta VALUES('schema_version', ?)", (SCHEMA_VERSION,))
        self.migrated = True
        log.info(
            "store migrated to schema 2 (price fields, 1h bars on ingest)",
            extra={
                "path": str(self.path),
                "hours": hours_done,
                "seconds": round(time.monotonic() - began, 1),
            },
        )

    def _migrate_hour(self, inst_id: int, hour: int) -> dict[tuple[int, int], _Stat]:
        instrument = self._inst_keys[inst_id]
        minutes: list[Bar] = []
        touched: dict[tuple[int, int, int], _Touched] = {}
        for payload, size in self._w.execute(
            "SELECT payload, length(payload) FROM footprints_1m WHERE inst=? AND start_ms>=? AND start_ms<? "
            "ORDER BY start_ms",
            (inst_id, hour, hour + HOUR_MS),
        ).fetchall():
            bar = Bar.decode(payload)
            minutes.append(bar)
            if not bar.exact:
                bar.recompute(self._raw_trades(inst_id, bar.start_ms, bar.start_ms + MINUTE_MS))
                if bar.exact:
                    touched[(inst_id, RES_1M, bar.start_ms)] = _Touched(instrument, bar, int(size))
        stats = self._save_bars(touched)
        row = self._w.execute(
            "SELECT payload, length(payload) FROM footprints_1h WHERE inst=? AND start_ms=?", (inst_id, hour)
        ).fetchone()
        current = Bar.decode(row[0]) if row is not None else None
        hourly: dict[tuple[int, int, int], _Touched] = {}
        key = (inst_id, RES_1H, hour)
        if minutes and (
            current is None or not current.exact or current.trades < sum(m.trades for m in minutes)
        ):
            merged = roll_up(minutes)[hour]
            if current is None or current.trades <= merged.trades:
                merged.version = current.version if current is not None else 0
                hourly[key] = _Touched(instrument, merged, int(row[1]) if row is not None else 0)
        if key not in hourly and current is not None and not current.exact:
            current.recompute(self._raw_trades(inst_id, hour, hour + HOUR_MS))
            if current.exact:
                hourly[key] = _Touched(instrument, current, int(row[1]) if row is not None else 0)
        stats.update(self._save_bars(hourly))
        return stats

    def tick_sizes(self) -> dict[InstrumentId, str]:
        return dict(self._ticks)

    def known_instruments(self) -> set[InstrumentId]:
        return set(self._inst_ids)

    # --- trades ------------------------------------------------------------------------------------

    def _insert_trades(self, inst_id: int, trades: Sequence[common_pb2.Trade]) -> tuple[list[int], int]:
        """INSERT OR IGNORE the trades; the indexes of those newly stored, and their payload bytes."""
        conn = self._w
        base = self._next_seq
        self._next_seq += len(trades)
        params: list[Any] = []
        size = 0
        for n, trade in enumerate(trades):
            framed = length_delimited(_TRADE_TAG, trade.SerializeToString())
            params += (inst_id, trade.exchange_time_ms, base + n, trade.trade_id, framed)
        inserted: list[int] = []
        position = 0
        remaining = len(trades)
        for rows in _INSERT_SIZES:
            if remaining < rows:
                continue
            sql = (
                "INSERT OR IGNORE INTO trades(inst, t, seq, tid, payload) VALUES "
                + ",".join(["(?,?,?,?,?)"] * rows)
                + " RETURNING seq, length(payload)"
            )
            while remaining >= rows:
                for seq, length in conn.execute(sql, params[position * 5 : (position + rows) * 5]):
                    inserted.append(seq - base)
                    size += length
                position += rows
                remaining -= rows
        inserted.sort()
        return inserted, size

    def _bar(self, inst_id: int, resolution: int, start_ms: int, row_size: str) -> tuple[Bar, int]:
        """The current version of a bar (from the writer's cache while it is still what the table holds)
        and the size of its stored payload (0 when new)."""
        key = (inst_id, resolution, start_ms)
        table = _BAR_TABLE[resolution]
        row = self._w.execute(
            f"SELECT version, length(payload) FROM {table} WHERE inst=? AND start_ms=?", (inst_id, start_ms)
        ).fetchone()
        cached = self._bars.get(key)
        if cached is not None and row is not None and cached.version == row[0]:
            self._bars.move_to_end(key)
            return cached, int(row[1])
        if row is not None:
            payload = self._w.execute(
                f"SELECT payload FROM {table} WHERE inst=? AND start_ms=?", (inst_id, start_ms)
            ).fetchone()[0]
            bar = Bar.decode(payload)
        else:
            bar = Bar(start_ms, row_size, resolution)
        self._bars[key] = bar
        if len(self._bars) > _HOT_BARS:
            evicted, _ = self._bars.popitem(last=False)
            if self._deferred.pop(evicted, None) is not None:
                self._stale_hours.add(evicted)
        return bar, int(row[1]) if row is not None else 0

    def _save_bars(self, touched: dict[tuple[int, int, int], _Touched]) -> dict[tuple[int, int], _Stat]:
        """Bump and store every touched bar; the bar statistics deltas per (instrument, resolution)."""
        stats: dict[tuple[int, int], _Stat] = {}
        for (inst_id, resolution, start), entry in touched.items():
            bar = entry.bar
            created = bar.version == 0
            bar.version += 1
            entry.payload = bar.encode()
            self._w.execute(
                f"INSERT OR REPLACE INTO {_BAR_TABLE[resolution]}(inst, start_ms, version, trades, payload) "
                "VALUES(?, ?, ?, ?, ?)",
                (inst_id, start, bar.version, bar.trades, entry.payload),
            )
            stat = stats.setdefault((inst_id, resolution), _Stat())
            stat.add(1 if created else 0, len(entry.payload) - entry.old_bytes, start, start)
            if resolution == RES_1H:
                self._saving_hours.append((inst_id, resolution, start))
        return stats

    def write_trades(self, writes: Sequence[TradeWrite], now_ms: int) -> WriteResult:
        outcomes, valid = screen_writes(writes, self._ticks)
        result = WriteResult(outcomes)
        if not valid:
            return result
        touched: dict[tuple[int, int, int], _Touched] = {}
        minute_now = now_ms - now_ms % MINUTE_MS
        with self._transaction(touched, "commit"):
            trade_stats: dict[int, _Stat] = {}
            for index, write, tick in valid:
                instrument = write.instrument
                inst_id = self._inst_id(instrument, write.tick_size)
                inserted, size = self._insert_trades(inst_id, write.trades)
                late: set[int] = set()
                stat = trade_stats.setdefault(inst_id, _Stat())
                newest = 0
                minute_start = hour_start = -1
                minute_bar = hour_bar = Bar(0, tick)  # placeholders, replaced at the first trade
                same_grid = True
                for n in inserted:
                    trade = write.trades[n]
                    t = trade.exchange_time_ms
                    start = t - t % MINUTE_MS
                    if start != minute_start:
                        minute_start = start
                        minute_bar = self._touch(touched, instrument, inst_id, RES_1M, start, tick)
                        if start - start % HOUR_MS != hour_start:
                            hour_start = start - start % HOUR_MS
                            hour_bar = self._touch(touched, instrument, inst_id, RES_1H, hour_start, tick)
                        same_grid = minute_bar.same_grid(hour_bar)
                        if start < minute_now:
                            late.add(start)
                    is_buy = trade.side == common_pb2.SIDE_BUY
                    price = trade.price
                    units, volume = minute_bar.add(price, trade.size, is_buy, t)
                    if same_grid:
                        hour_bar.add_parsed(price, units, volume, is_buy, t)
                    else:
                        hour_bar.add(price, trade.size, is_buy, t)
                    stat.add(1, 0, t, t)
                    if t > newest:
                        newest = t
                stat.bytes += size
                if newest:
                    result.newest_ms[instrument] = max(result.newest_ms.get(instrument, 0), newest)
                outcomes[index] = WriteOutcome(len(inserted), len(write.trades) - len(inserted), len(late))
            bar_stats = self._finish_bars(touched, live=True)
            for inst_id, stat in trade_stats.items():
                self._bump_stat("trades", inst_id, stat)
            for (inst_id, resolution), stat in bar_stats.items():
                self._bump_stat(_BAR_TABLE[resolution], inst_id, stat)
            self._w.execute("INSERT OR REPLACE INTO meta VALUES('next_seq', ?)", (self._next_seq,))
        for (_, resolution, start), entry in touched.items():
            if start < minute_now and entry.payload:  # (a deferred 1h bar has none yet)
                result.changed_bars.append(
                    ChangedBar(entry.instrument, resolution, start, entry.bar.version, entry.payload)
                )
        return result

    def _touch(
        self,
        touched: dict[tuple[int, int, int], _Touched],
        instrument: InstrumentId,
        inst_id: int,
        resolution: int,
        start: int,
        tick: str,
    ) -> Bar:
        """The bar this transaction updates at (resolution, start), loaded on first use."""
        key = (inst_id, resolution, start)
        entry = touched.get(key)
        if entry is None:
            bar, old_bytes = self._bar(inst_id, resolution, start, tick)
            entry = touched[key] = _Touched(instrument, bar, old_bytes)
        return entry.bar

    def _raw_trades(self, inst_id: int, start: int, end: int) -> list[tuple[str, str, bool]]:
        """(price, size, is_buy) of the stored trades in [start, end), in (exchange time, sequence) order."""
        out: list[tuple[str, str, bool]] = []
        buy = common_pb2.SIDE_BUY
        for (payload,) in self._w.execute(
            "SELECT payload FROM trades WHERE inst=? AND t>=? AND t<? ORDER BY t, seq", (inst_id, start, end)
        ):
            trade = trade_of(payload)
            out.append((trade.price, trade.size, trade.side == buy))
        return out

    def _finish_bars(
        self, touched: dict[tuple[int, int, int], _Touched], *, live: bool = False
    ) -> dict[tuple[int, int], _Stat]:
        """Complete and store the bars a transaction touched: 1m bars a trade landed inside of get their
        price fields from their raw trades; then 1h bars that are new, had a trade land inside, hold such
        a minute, or are stale are made the merge of their hour's 1m bars again; the rest were updated in
        place. `live` (write_trades): a 1h bar saved less than HOUR_SAVE_INTERVAL_S ago is deferred, and
        deferred bars whose interval is over are saved with this transaction (and added to `touched`)."""
        minutes = {k: e for k, e in touched.items() if k[1] == RES_1M}
        hours = {k: e for k, e in touched.items() if k[1] == RES_1H}
        rebuild: set[tuple[int, int, int]] = set()
        for (inst_id, _, start), entry in minutes.items():
            if entry.bar.needs_recompute:
                entry.bar.recompute(self._raw_trades(inst_id, start, start + MINUTE_MS))
                rebuild.add((inst_id, RES_1H, start - start % HOUR_MS))
        stats = self._save_bars(minutes)
        now = time.monotonic()
        save: dict[tuple[int, int, int], _Touched] = {}
        for key, entry in hours.items():
            bar = entry.bar
            if key in rebuild or key in self._stale_hours or bar.needs_recompute or bar.version == 0:
                self._rebuild_hour(key, entry)
            elif live and now - self._hour_saved.get(key, -HOUR_SAVE_INTERVAL_S) < HOUR_SAVE_INTERVAL_S:
                self._deferred[key] = entry
                continue
            save[key] = entry
        if live:
            for key, entry in self._deferred.items():
                if key not in hours and now - self._hour_saved.get(key, 0.0) >= HOUR_SAVE_INTERVAL_S:
                    save[key] = touched[key] = entry
        stats.update(self._save_bars(save))
        return stats

    def has_deferred(
        self, instrument: InstrumentId | None = None, start_ms: int = 0, end_ms: int = 0
    ) -> bool:
        """Whether 1h bars wait for a save (of `instrument` overlapping [start_ms, end_ms), when given).
        Called from other threads: it reads a snapshot of the keys."""
        keys = [*self._deferred, *self._stale_hours]
        if instrument is None:
            return bool(keys)
        inst_id = self._inst_ids.get(instrument)
        return any(i == inst_id and start_ms < start + HOUR_MS and start < end_ms for i, _, start in keys)

    def flush_deferred(self, now_ms: int) -> list[ChangedBar]:
        """Save every deferred 1h bar, and rebuild stale ones from their 1m bars, in one transaction;
        the bars saved."""
        if not self._deferred and not self._stale_hours:
            return []
        touched = dict(self._deferred)
        with self._transaction(touched, "commit"):
            for key in list(self._stale_hours):
                inst_id, _, start = key
                instrument = self._inst_keys.get(inst_id)
                if instrument is None:
                    self._stale_hours.discard(key)
                    continue
                self._touch(touched, instrument, inst_id, RES_1H, start, self._ticks.get(instrument, ""))
                self._rebuild_hour(key, touched[key])
            for (inst_id, resolution), stat in self._save_bars(touched).items():
                self._bump_stat(_BAR_TABLE[resolution], inst_id, stat)
        minute_now = now_ms - now_ms % MINUTE_MS
        return [
            ChangedBar(e.instrument, RES_1H, start, e.bar.version, e.payload)
            for (_, _, start), e in touched.items()
            if start < minute_now
        ]

    def _recover_hours(self) -> None:
        """Rebuild the 1h bars that hold fewer trades than their 1m bars: a deferred save that a crash
        cut off. Only an instrument's newest hours can be such (deferral is for live writes)."""
        conn = self._w
        newest = conn.execute("SELECT inst, max(start_ms) FROM footprints_1m GROUP BY inst").fetchall()
        for inst_id, last in newest:
            first = last - last % HOUR_MS - (_RECOVERY_HOURS - 1) * HOUR_MS
            for hour, minute_trades, hour_trades in conn.execute(
                "SELECT m.hour, m.trades, coalesce(h.trades, 0) FROM ("
                f"SELECT start_ms - start_ms % {HOUR_MS} AS hour, sum(trades) AS trades FROM footprints_1m "
                "WHERE inst=? AND start_ms>=? GROUP BY hour) AS m "
                "LEFT JOIN footprints_1h AS h ON h.inst=? AND h.start_ms=m.hour",
                (inst_id, first, inst_id),
            ).fetchall():
                if minute_trades > hour_trades:
                    self._stale_hours.add((inst_id, RES_1H, hour))
        if self._stale_hours:
            log.info("rebuilding 1h bars a crash left behind", extra={"bars": len(self._stale_hours)})
            self.flush_deferred(int(time.time() * 1000))

    def _rebuild_hour(self, key: tuple[int, int, int], entry: _Touched) -> None:
        """Make a 1h bar the merge of its hour's stored 1m bars (this transaction's included). When
        retention removed some of those 1m bars, keep the bar's rows and take its price fields from the
        hour's raw trades (unknown if those are gone too)."""
        inst_id, _, hour = key
        minutes = [
            Bar.decode(payload)
            for (payload,) in self._w.execute(
                "SELECT payload FROM footprints_1m WHERE inst=? AND start_ms>=? AND start_ms<? ORDER BY start_ms",
                (inst_id, hour, hour + HOUR_MS),
            )
        ]
        bar = entry.bar
        if minutes and sum(m.trades for m in minutes) >= bar.trades:
            merged = roll_up(minutes)[hour]
            merged.version = bar.version
            entry.bar = self._bars[key] = merged
        else:
            bar.recompute(self._raw_trades(inst_id, hour, hour + HOUR_MS))

    @contextlib.contextmanager
    def _transaction(self, touched: dict[tuple[int, int, int], _Touched], what: str) -> Iterator[None]:
        """One write transaction changing bars: committed at the end; on any failure rolled back, the
        bars it changed dropped from the cache (_forget), and a store error raised as StoreUnavailable."""
        try:
            self._begin()
            yield
            self._commit()
        except sqlite3.Error as exc:
            self._forget(touched)
            raise StoreUnavailable(f"{what} failed: {exc}") from exc
        except BaseException:
            self._forget(touched)
            raise

    def _forget(self, touched: dict[tuple[int, int, int], _Touched]) -> None:
        """After a failed transaction: roll back, and drop the cached bars it changed (a deferred 1h bar
        among them held committed changes too: it becomes stale)."""
        self._abort()
        for key in touched:
            self._bars.pop(key, None)
            if self._deferred.pop(key, None) is not None:
                self._stale_hours.add(key)

    def _bump_stat(self, collection: str, inst_id: int, stat: _Stat) -> None:
        if stat.count == 0 and stat.bytes == 0:
            return
        self._w.execute(
            "INSERT INTO stats VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(collection, inst) DO UPDATE SET "
            "count = count + excluded.count, bytes = bytes + excluded.bytes, "
            "oldest = CASE WHEN oldest = 0 THEN excluded.oldest "
            "WHEN excluded.oldest = 0 THEN oldest ELSE min(oldest, excluded.oldest) END, "
            "newest = max(newest, excluded.newest)",
            (collection, inst_id, stat.count, stat.bytes, stat.oldest, stat.newest),
        )

    def read_trades(
        self,
        instrument: InstrumentId,
        start_ms: int,
        end_ms: int,
        after: tuple[int, int] | None,
        limit: int,
        chunk: int,
        min_size: int = 0,
    ) -> Iterator[TradeChunk]:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return
        if min_size:
            yield from self._read_large_trades(inst_id, start_ms, end_ms, after, limit, chunk, min_size)
            return
        with self._reader() as conn:
            conn.execute("BEGIN")  # one snapshot for the whole read
            queries: list[tuple[str, tuple[Any, ...]]] = []
            if after is not None:
                queries.append(
                    (
                        "SELECT t, seq, payload FROM trades WHERE inst=? AND t=? AND seq>? ORDER BY t, seq",
                        (inst_id, after[0], after[1]),
                    )
                )
                start_ms = after[0] + 1
            queries.append(
                (
                    "SELECT t, seq, payload FROM trades WHERE inst=? AND t>=? AND t<? ORDER BY t, seq",
                    (inst_id, start_ms, end_ms),
                )
            )
            left = limit if limit > 0 else -1
            for sql, params in queries:
                if left == 0:
                    break
                if left > 0:
                    sql += f" LIMIT {left}"
                cursor = conn.execute(sql, params)
                while True:
                    rows = cursor.fetchmany(chunk)
                    if not rows:
                        break
                    last = rows[-1]
                    if left > 0:
                        left -= len(rows)
                    yield TradeChunk(b"".join([r[2] for r in rows]), len(rows), (last[0], last[1]))

    def last_trades(self, instrument: InstrumentId, cap: int) -> list[bytes]:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return []
        with self._reader() as conn:
            conn.execute("BEGIN")  # the newest time and its trades from one snapshot
            # Both walk the (inst, t, seq) primary key backwards: no scan however much is stored.
            row = conn.execute("SELECT max(t) FROM trades WHERE inst=?", (inst_id,)).fetchone()
            if row is None or row[0] is None:
                conn.execute("COMMIT")
                return []
            rows = conn.execute(
                "SELECT payload FROM trades WHERE inst=? AND t=? ORDER BY seq DESC LIMIT ?",
                (inst_id, row[0], cap),
            ).fetchall()
            conn.execute("COMMIT")
        return [r[0] for r in reversed(rows)]

    def _read_large_trades(
        self,
        inst_id: int,
        start_ms: int,
        end_ms: int,
        after: tuple[int, int] | None,
        limit: int,
        chunk: int,
        min_size: int,
    ) -> Iterator[TradeChunk]:
        """read_trades filtered by size: every trade of the range is read and its size compared exactly
        (sizes live inside the stored message), so the filter saves transfer, not the scan."""
        with self._reader() as conn:
            conn.execute("BEGIN")
            sql = "SELECT t, seq, payload FROM trades WHERE inst=? AND t>=? AND t<? "
            if after is None:
                cursor = conn.execute(sql + "ORDER BY t, seq", (inst_id, start_ms, end_ms))
            else:
                cursor = conn.execute(
                    sql + "AND (t>? OR seq>?) ORDER BY t, seq",
                    (inst_id, after[0], end_ms, after[0], after[1]),
                )
            left = limit if limit > 0 else -1
            parts: list[bytes] = []
            last = (0, 0)
            while left != 0 and (rows := cursor.fetchmany(4096)):
                for t, seq, payload in rows:
                    if not large_enough(payload, min_size):
                        continue
                    parts.append(payload)
                    last = (t, seq)
                    left -= 1
                    if len(parts) >= chunk or left == 0:
                        yield TradeChunk(b"".join(parts), len(parts), last)
                        parts = []
                        if left == 0:
                            break
            if parts:
                yield TradeChunk(b"".join(parts), len(parts), last)

    # --- book snapshots ----------------------------------------------------------------------------

    def write_book_snapshots(
        self, batches: Sequence[Sequence[order_book_pb2.OrderBookSnapshot]]
    ) -> list[WriteOutcome | InvalidBatch]:
        outcomes: list[WriteOutcome | InvalidBatch] = []
        checked: list[tuple[int, list[InstrumentId]]] = []
        for index, batch in enumerate(batches):
            try:
                instruments = [validate_snapshot(s, f"snapshots[{n}]") for n, s in enumerate(batch)]
            except InvalidBatch as exc:
                outcomes.append(exc)
                continue
            outcomes.append(WriteOutcome(0, 0))
            checked.append((index, instruments))
        if not checked:
            return outcomes
        conn = self._w
        try:
            self._begin()
            stats: dict[int, _Stat] = {}
            for index, instruments in checked:
                inserted = 0
                for snapshot, instrument in zip(batches[index], instruments, strict=True):
                    inst_id = self._inst_id(instrument, "")
                    payload = length_delimited(_SNAPSHOT_TAG, snapshot.SerializeToString())
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO book_snapshots VALUES(?, ?, ?, ?)",
                        (inst_id, snapshot.exchange_time_ms, snapshot.update_id, payload),
                    )
                    if cursor.rowcount > 0:
                        inserted += 1
                        t = snapshot.exchange_time_ms
                        stats.setdefault(inst_id, _Stat()).add(1, len(payload), t, t)
                outcomes[index] = WriteOutcome(inserted, len(batches[index]) - inserted)
            for inst_id, stat in stats.items():
                self._bump_stat("book_snapshots", inst_id, stat)
            self._commit()
        except sqlite3.Error as exc:
            self._abort()
            raise StoreUnavailable(f"commit failed: {exc}") from exc
        except BaseException:
            self._abort()
            raise
        return outcomes

    def count_book_snapshots(self, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int) -> int:
        return self.count_range("book_snapshots", instrument, start_ms, end_ms, cap)

    def read_book_snapshots(
        self, instrument: InstrumentId, start_ms: int, end_ms: int, limit: int
    ) -> Iterator[list[bytes]]:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return
        with self._reader() as conn:
            conn.execute("BEGIN")
            sql = "SELECT payload FROM book_snapshots WHERE inst=? AND t>=? AND t<? ORDER BY t, update_id"
            if limit > 0:
                sql += f" LIMIT {limit}"
            cursor = conn.execute(sql, (inst_id, start_ms, end_ms))
            while rows := cursor.fetchmany(256):
                yield [unframe(r[0]) for r in rows]

    # --- footprints --------------------------------------------------------------------------------

    def read_footprints(
        self, instrument: InstrumentId, resolution: int, start_ms: int, end_ms: int
    ) -> list[StoredBar]:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return []
        table = _BAR_TABLE[resolution]
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT start_ms, version, payload FROM {table} WHERE inst=? AND start_ms>=? AND start_ms<? "
                "ORDER BY start_ms",
                (inst_id, start_ms, end_ms),
            ).fetchall()
        return [StoredBar(r[0], r[1], r[2]) for r in rows]

    def put_bars(
        self, instrument: InstrumentId, resolution: int, bars: Sequence[bytes], replace: bool
    ) -> int:
        if not bars:
            return 0
        table = _BAR_TABLE[resolution]
        touched: dict[tuple[int, int, int], _Touched] = {}
        with self._transaction(touched, "commit"):
            inst_id = self._inst_id(instrument, "")
            for payload in bars:
                incoming = Bar.decode(payload)
                start = incoming.start_ms - incoming.start_ms % BAR_MS[resolution]
                key = (inst_id, resolution, start)
                entry = touched.get(key)
                if entry is None:
                    exists = self._w.execute(
                        f"SELECT 1 FROM {table} WHERE inst=? AND start_ms=?", (inst_id, start)
                    ).fetchone()
                    if exists is not None and not replace:
                        continue
                    current, old_bytes = self._bar(inst_id, resolution, start, incoming.row_size)
                    fresh = Bar(start, incoming.row_size, resolution)
                    fresh.version = current.version
                    self._bars[key] = fresh
                    entry = touched[key] = _Touched(instrument, fresh, old_bytes)
                entry.bar.merge(incoming)
            for (inst_id, res), stat in self._save_bars(touched).items():
                self._bump_stat(_BAR_TABLE[res], inst_id, stat)
        return len(touched)

    # --- stats, health -----------------------------------------------------------------------------

    def stats(self) -> list[CollectionStat]:
        out: list[CollectionStat] = []
        with self._reader() as conn:
            rows = conn.execute("SELECT collection, inst, count, bytes, oldest, newest FROM stats").fetchall()
            keys = dict(conn.execute("SELECT id, key FROM instruments").fetchall())
            for collection, inst_id, count, size, oldest, newest in rows:
                key = keys.get(inst_id)
                if key is None:
                    continue
                out.append(CollectionStat(collection, InstrumentId.parse(key), count, size, oldest, newest))
        return out

    def store_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def disk_path(self) -> str | None:
        return str(self.path.parent)

    def probe(self) -> None:
        """Commit a write that needs room (a 64 KiB row, removed in the same transaction): a full disk
        or a store at its size cap fails it, as it would fail real writes."""
        try:
            self._begin()
            self._w.execute(
                "INSERT OR REPLACE INTO heartbeat VALUES(2, ?, zeroblob(65536))", (int(time.time() * 1000),)
            )
            self._w.execute("DELETE FROM heartbeat WHERE id = 2")
            self._w.execute("INSERT OR REPLACE INTO heartbeat VALUES(1, ?, NULL)", (int(time.time() * 1000),))
            self._commit()
        except sqlite3.Error as exc:
            self._abort()
            raise StoreUnavailable(f"probe write failed: {exc}") from exc

    # --- retention ---------------------------------------------------------------------------------

    def oldest(self, collection: str, instrument: InstrumentId) -> int | None:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return None
        column = _TIME_COLUMN[collection]
        with self._reader() as conn:
            row = conn.execute(f"SELECT min({column}) FROM {collection} WHERE inst=?", (inst_id,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def count_range(
        self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int = 0
    ) -> int:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return 0
        column = _TIME_COLUMN[collection]
        inner = f"SELECT 1 FROM {collection} WHERE inst=? AND {column}>=? AND {column}<?"
        if cap > 0:
            inner += f" LIMIT {cap + 1}"
        with self._reader() as conn:
            row = conn.execute(f"SELECT count(*) FROM ({inner})", (inst_id, start_ms, end_ms)).fetchone()
        return int(row[0])

    def export_range(
        self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int
    ) -> Iterator[list[bytes]]:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return
        column = _TIME_COLUMN[collection]
        framed = collection in ("trades", "book_snapshots")
        order = "t, seq" if collection == "trades" else ("t, update_id" if framed else "start_ms")
        with self._reader() as conn:
            conn.execute("BEGIN")
            cursor = conn.execute(
                f"SELECT payload FROM {collection} WHERE inst=? AND {column}>=? AND {column}<? ORDER BY {order}",
                (inst_id, start_ms, end_ms),
            )
            while rows := cursor.fetchmany(4096):
                yield [unframe(r[0]) for r in rows] if framed else [r[0] for r in rows]

    def delete_range(self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int) -> int:
        inst_id = self._inst_ids.get(instrument)
        if inst_id is None:
            return 0
        column = _TIME_COLUMN[collection]
        conn = self._w
        where = f"WHERE inst=? AND {column}>=? AND {column}<?"
        try:
            self._begin()
            count, size = conn.execute(
                f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM {collection} {where}",
                (inst_id, start_ms, end_ms),
            ).fetchone()
            conn.execute(f"DELETE FROM {collection} {where}", (inst_id, start_ms, end_ms))
            oldest, newest = conn.execute(
                f"SELECT coalesce(min({column}), 0), coalesce(max({column}), 0) FROM {collection} WHERE inst=?",
                (inst_id,),
            ).fetchone()
            conn.execute(
                "UPDATE stats SET count = max(0, count - ?), bytes = max(0, bytes - ?), oldest = ?, newest = ? "
                "WHERE collection = ? AND inst = ?",
                (count, size, oldest, newest, collection, inst_id),
            )
            self._commit()
        except sqlite3.Error as exc:
            self._abort()
            raise StoreUnavailable(f"delete failed: {exc}") from exc
        if collection.startswith("footprints"):
            resolution = RES_1M if collection == "footprints_1m" else RES_1H
            for key in [*self._bars, *self._deferred, *self._stale_hours]:
                if key[0] == inst_id and key[1] == resolution and start_ms <= key[2] < end_ms:
                    self._bars.pop(key, None)
                    self._deferred.pop(key, None)
                    self._stale_hours.discard(key)
        return int(count)

    def restore_trades(
        self,
        instrument: InstrumentId,
        tick_size: str,
        trades: Sequence[common_pb2.Trade],
        session: RestoreSession,
    ) -> WriteOutcome:
        validate_trades(trades, "trades")
        tick = self._ticks.get(instrument) or tick_size
        if not tick:
            raise InvalidBatch(f"tick_size: unknown for {instrument.key}")
        validate_tick(tick)
        touched: dict[tuple[int, int, int], _Touched] = {}
        with self._transaction(touched, "restore"):
            inst_id = self._inst_id(instrument, "" if instrument in self._ticks else tick)
            inserted, size = self._insert_trades(inst_id, trades)
            kept: set[tuple[int, int]] = set()  # (resolution, start) of bars that hold these trades already
            created = {RES_1M: session.created_bars, RES_1H: session.created_hours}
            stat = _Stat()
            for n in inserted:
                trade = trades[n]
                t = trade.exchange_time_ms
                stat.add(1, 0, t, t)
                for resolution, start in ((RES_1M, t - t % MINUTE_MS), (RES_1H, t - t % HOUR_MS)):
                    if (resolution, start) in kept:
                        continue
                    key = (inst_id, resolution, start)
                    if key not in touched:
                        exists = self._w.execute(
                            f"SELECT 1 FROM {_BAR_TABLE[resolution]} WHERE inst=? AND start_ms=?",
                            (inst_id, start),
                        ).fetchone()
                        if exists is not None and (inst_id, start) not in created[resolution]:
                            kept.add((resolution, start))  # retention kept this bar: it counts these trades
                            continue
                    bar = self._touch(touched, instrument, inst_id, resolution, start, tick)
                    bar.add(trade.price, trade.size, trade.side == common_pb2.SIDE_BUY, t)
            stat.bytes = size
            for (i, res), bar_stat in self._finish_bars(touched).items():
                self._bump_stat(_BAR_TABLE[res], i, bar_stat)
            self._bump_stat("trades", inst_id, stat)
            self._w.execute("INSERT OR REPLACE INTO meta VALUES('next_seq', ?)", (self._next_seq,))
        for inst, resolution, start in touched:
            created[resolution].add((inst, start))

        return WriteOutcome(len(inserted), len(trades) - len(inserted))
