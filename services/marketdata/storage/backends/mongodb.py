"""MongoDB backend (pymongo), for production.

Collection types:
- `trades` is a regular collection, not a time-series one: time-series collections cannot carry a
  unique index, and identity must be enforced by the database so that two storage replicas, resends
  and backfills never store a trade twice. `_id` is "<instrument>|<trade id>" (the identity, unique by
  construction, no second unique index to maintain); a compound index {i, t, s} serves range queries
  in exchange order; a TTL index on `ts` (a Date of the exchange time) is a safety net set a week past
  the trades retention, so the scheduled retention (which archives first and keeps the statistics
  right) normally removes data, and a stopped retention cannot fill the disk. Inserts are unordered
  bulk writes; duplicate-key errors (11000) are the duplicates, anything else fails the write.
- `book_snapshots` is a time-series collection (timeField `ts`, metaField `meta`): snapshots need no
  database-enforced identity, and resends are dropped at query time by (time, update id).
- `footprints_1m` / `footprints_1h`: regular collections keyed by "<instrument>|<bar start>", rows
  as a sub-document of Decimal128 volumes (exact decimal, 34 digits) updated with atomic $inc upserts.
  Every write updates the trade's 1m bar and its 1h bar the same way, so a 1h bar holds the merge of
  its hour's 1m bars (once both updates of a write are applied; recovery applies both).

Price fields (open/high/low/close, delta extremes) depend on the order of a bar's trades, which atomic
increments from concurrent writers cannot keep. They are derived instead, and stamped with the trade
count they were derived at (`pc`): a bar whose `pc` differs from its count `c` is completed ("finished")
before anyone sees it: a 1m bar from its raw trades in (exchange time, sequence) order, a 1h bar as the
merge of its (finished) 1m bars, or from the hour's raw trades when retention removed 1m bars. The
writer finishes the closed bars each write touched (so late trades are folded in at once) and readers
finish whatever is still stale (the open minute and hour). A bar whose raw trades are no longer all
stored keeps empty price fields (`px` false) until its count changes. Finishing is a compare-and-set on
the count, so a finish racing a write is simply redone by the next reader.

Exactly-once footprints without multi-document transactions (which a standalone server lacks):
trades are inserted first, tagged with the writer's id `w` and write number `n`; then each touched
bar gets one $inc update guarded by `a.<w> < n` that also sets `a.<w> = n`, so applying the same write
twice is impossible (the guard fails; the upsert then hits a duplicate _id, which means "already
applied"). If a writer dies between the insert and the bar updates, its lease in `writers` expires and
any storage process re-applies, in write order, the writes of that writer that no bar has seen yet
(`recover_dead_writers`). A writer whose own write failed half-way repairs it before its next write.
Acknowledgements use write concern majority with journaling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from bson import Binary, Decimal128
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError, PyMongoError

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
from marketdata.storage.footprints import (
    BAR_MS,
    HOUR_MS,
    MINUTE_MS,
    RES_1H,
    RES_1M,
    VOLUME_SCALE,
    Bar,
    format_units,
    format_volume,
    parse_tick,
    roll_up,
    to_units,
    volume_units,
)
from marketdata.v1 import common_pb2, order_book_pb2

log = logging.getLogger(__name__)

LEASE_S = 60.0
RENEW_BEFORE_S = 30.0
TTL_MARGIN_S = 7 * 86400
_BARS = {RES_1M: "footprints_1m", RES_1H: "footprints_1h"}
_TIME_FIELD = {"trades": "t", "book_snapshots": "t", "footprints_1m": "m", "footprints_1h": "m"}
_TRADE_TAG = 0x12
# open, high, low, close, max_delta, min_delta (exact decimal text) in a bar document
_PRICE_KEYS = ("o", "h", "lo", "cl", "mx", "mn")
SCHEMA_VERSION = 2  # 2: 1h bars on ingest and price fields (see open: _migrate_v1)


def _row_key(units: int, decimals: int) -> str:
    """A row's field name: its price without trailing zeros, '.' as '_' (dots are path separators)."""
    text = format_units(units, decimals)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", "_")


def _dec(units: int) -> Decimal128:
    return Decimal128(format_volume(units))


class _Delta:
    """The increments one write makes to one bar."""

    __slots__ = ("count", "first", "instrument", "last", "rows", "start", "tick")

    def __init__(self, instrument: InstrumentId, start: int, tick: str) -> None:
        self.instrument = instrument
        self.start = start
        self.tick = tick
        self.rows: dict[int, list[int]] = {}
        self.count = 0
        self.first = 0
        self.last = 0

    def add(self, trade: common_pb2.Trade, tick_units: int, decimals: int) -> None:
        units = to_units(trade.price, decimals)
        key = units - units % tick_units
        row = self.rows.setdefault(key, [0, 0, 0, 0])
        volume = volume_units(trade.size)
        if trade.side == common_pb2.SIDE_BUY:
            row[0] += volume
            row[2] += 1
        else:
            row[1] += volume
            row[3] += 1
        self.count += 1
        t = trade.exchange_time_ms
        self.first = t if self.first == 0 else min(self.first, t)
        self.last = max(self.last, t)

    def update(self, writer: str, n: int, *, guarded: bool = True) -> UpdateOne:
        _, decimals = parse_tick(self.tick)
        inc: dict[str, Any] = {"c": self.count, "v": 1}
        for units, (buy, sell, buy_n, sell_n) in self.rows.items():
            prefix = f"r.{_row_key(units, decimals)}"
            if buy_n:
                inc[f"{prefix}.b"] = _dec(buy)
                inc[f"{prefix}.bn"] = buy_n
            if sell_n:
                inc[f"{prefix}.s"] = _dec(sell)
                inc[f"{prefix}.sn"] = sell_n
        key = self.instrument.key
        query: dict[str, Any] = {"_id": f"{key}|{self.start}"}
        update: dict[str, Any] = {
            "$inc": inc,
            "$min": {"f": self.first},
            "$max": {"l": self.last},
            "$setOnInsert": {"i": key, "m": self.start, "rs": self.tick},
        }
        if guarded:
            query["$or"] = [{f"a.{writer}": {"$exists": False}}, {f"a.{writer}": {"$lt": n}}]
            update["$max"][f"a.{writer}"] = n
        return UpdateOne(query, update, upsert=True)


def _bar_of(doc: dict[str, Any], resolution: int) -> Bar:
    bar = Bar(int(doc["m"]), str(doc["rs"]), resolution)
    bar.version = int(doc.get("v", 1))
    bar.first_ms = int(doc.get("f", 0))
    bar.last_ms = int(doc.get("l", 0))
    trades = 0
    for key, row in (doc.get("r") or {}).items():
        units = to_units(key.replace("_", "."), bar.decimals)
        buy = volume_units(_plain(row.get("b")))
        sell = volume_units(_plain(row.get("s")))
        buy_n, sell_n = int(row.get("bn", 0)), int(row.get("sn", 0))
        bar.rows[units] = [buy, sell, buy_n, sell_n]
        bar.buy += buy
        bar.sell += sell
        trades += buy_n + sell_n
    bar.trades = trades
    fresh = int(doc.get("pc", -1)) == int(doc.get("c", trades)) and bool(doc.get("px"))
    bar.set_price_fields([str(doc[k]) for k in _PRICE_KEYS] if fresh else None)
    return bar


def _plain(value: Any) -> str:
    if value is None:
        return "0"
    text = format(value.to_decimal() if isinstance(value, Decimal128) else value, "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction[:VOLUME_SCALE]}" if fraction else whole


def _price_set(bar: Bar) -> dict[str, Any]:
    """The $set of a bar's price fields, stamped with the count they hold for."""
    fields = bar.price_fields()
    out: dict[str, Any] = {"pc": bar.trades, "px": fields is not None}
    if fields is not None:
        out.update(zip(_PRICE_KEYS, fields, strict=True))
    return out


def _bar_doc(instrument: InstrumentId, bar: Bar) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for units, (buy, sell, buy_n, sell_n) in bar.rows.items():
        rows[_row_key(units, bar.decimals)] = {"b": _dec(buy), "s": _dec(sell), "bn": buy_n, "sn": sell_n}
    return _price_set(bar) | {
        "_id": f"{instrument.key}|{bar.start_ms}",
        "i": instrument.key,
        "m": bar.start_ms,
        "rs": bar.row_size,
        "v": bar.version,
        "c": bar.trades,
        "f": bar.first_ms,
        "l": bar.last_ms,
        "r": rows,
    }


def _date(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class MongoBackend(TradeCounting):
    name = "mongodb"
    migrated = False

    def __init__(
        self,
        uri: str,
        *,
        database: str | None = None,
        trades_ttl_s: float = 0.0,
        snapshots_ttl_s: float = 0.0,
    ) -> None:
        self.uri = uri
        self._database_name = database
        self.trades_ttl_s = trades_ttl_s
        self.snapshots_ttl_s = snapshots_ttl_s
        self._client: MongoClient[dict[str, Any]] | None = None
        self.writer_id = uuid.uuid4().hex[:16]
        self._n = 0
        self._lease_until = 0.0
        self._repair: list[int] = []
        self._ticks: dict[InstrumentId, str] = {}
        self._known: set[InstrumentId] = set()
        self._last_recovery = 0.0

    @property
    def database_name(self) -> str:
        return str(self.db.name)

    @property
    def db(self) -> Any:
        if self._client is None:
            raise StoreUnavailable("store is closed")
        if self._database_name:
            return self._client[self._database_name]
        return self._client.get_default_database("marketdata")

    def open(self) -> None:
        try:
            self._client = MongoClient(
                self.uri, w="majority", journal=True, serverSelectionTimeoutMS=5000, tz_aware=True
            )
            db = self.db
            db.trades.create_index(
                [("i", ASCENDING), ("t", ASCENDING), ("s", ASCENDING)], name="instrument_time"
            )
            db.trades.create_index([("w", ASCENDING), ("n", ASCENDING)], name="writer_write")
            if self.trades_ttl_s > 0:
                db.trades.create_index(
                    "ts", name="ttl", expireAfterSeconds=int(self.trades_ttl_s + TTL_MARGIN_S)
                )
            for name in _BARS.values():
                db[name].create_index([("i", ASCENDING), ("m", ASCENDING)], name="instrument_start")
            if "book_snapshots" not in db.list_collection_names():
                options: dict[str, Any] = {
                    "timeseries": {"timeField": "ts", "metaField": "meta", "granularity": "seconds"}
                }
                if self.snapshots_ttl_s > 0:
                    options["expireAfterSeconds"] = int(self.snapshots_ttl_s + TTL_MARGIN_S)
                with contextlib.suppress(CollectionInvalid):  # another replica created it meanwhile
                    db.create_collection("book_snapshots", **options)
            for doc in db.instruments.find():
                instrument = InstrumentId.parse(doc["_id"])
                self._known.add(instrument)
                if doc.get("tick_size"):
                    self._ticks[instrument] = doc["tick_size"]
            self._renew_lease()
            self.recover_dead_writers()
            self._migrate_v1()
        except PyMongoError as exc:
            raise StoreUnavailable(f"cannot open MongoDB: {exc}") from exc

    def _migrate_v1(self) -> None:
        """Once per database: give every hour that has 1m bars but no 1h bar (stores from before 1h bars
        were kept on ingest) the roll-up of its 1m bars. Price fields need no migration: bars without
        them are stale by definition (no `pc`) and get finished from raw trades when first read.
        Run it with one storage replica: a replica already writing could create an hour's 1h bar from
        new trades alone while this one is still rolling that hour up."""
        if int((self.db.meta.find_one({"_id": "schema"}) or {}).get("v", 1)) >= SCHEMA_VERSION:
            return
        began = time.monotonic()
        written = 0
        for instrument in sorted(self._known, key=lambda i: i.key):
            key = instrument.key
            have = set(self.db.footprints_1h.distinct("m", {"i": key}))
            group: list[Bar] = []
            for doc in self.db.footprints_1m.find({"i": key}).sort("m", 1):
                bar = _bar_of(doc, RES_1M)
                if (
                    group
                    and bar.start_ms - bar.start_ms % HOUR_MS
                    != group[0].start_ms - group[0].start_ms % HOUR_MS
                ):
                    written += self._put_missing_hour(instrument, group, have)
                    group = []
                group.append(bar)
            if group:
                written += self._put_missing_hour(instrument, group, have)
        self.db.meta.update_one({"_id": "schema"}, {"$max": {"v": SCHEMA_VERSION}}, upsert=True)
        self.migrated = True
        if written:
            log.info(
                "MongoDB store migrated: 1h bars built from 1m bars",
                extra={"hours": written, "seconds": round(time.monotonic() - began, 1)},
            )

    def _put_missing_hour(self, instrument: InstrumentId, minutes: list[Bar], have: set[int]) -> int:
        hour = minutes[0].start_ms - minutes[0].start_ms % HOUR_MS
        if hour in have:
            return 0
        merged = roll_up(minutes)[hour]
        merged.version = 1
        doc = _bar_doc(instrument, merged)
        doc["pc"] = -1  # price fields are finished on first read (from the finished 1m bars)
        with contextlib.suppress(DuplicateKeyError):  # another replica built it meanwhile
            self.db.footprints_1h.insert_one(doc)
            return 1
        return 0

    def close(self) -> None:
        if self._client is not None:
            try:
                if not self._repair:
                    self.db.writers.delete_one({"_id": self.writer_id})
            except PyMongoError:
                pass
            self._client.close()
            self._client = None

    def drop_database(self) -> None:
        if self._client is not None:
            self._client.drop_database(self.db.name)

    def tick_sizes(self) -> dict[InstrumentId, str]:
        return dict(self._ticks)

    def known_instruments(self) -> set[InstrumentId]:
        return set(self._known)

    # --- leases and recovery -----------------------------------------------------------------------

    def _renew_lease(self) -> None:
        until = time.time() + LEASE_S
        self.db.writers.update_one(
            {"_id": self.writer_id},
            {"$set": {"lease": _date(int(until * 1000)), "host": os.uname().nodename}, "$max": {"n_done": 0}},
            upsert=True,
        )
        self._lease_until = until

    def recover_dead_writers(self) -> int:
        """Apply to bars the writes of writers whose lease expired (died between insert and bars)."""
        recovered = 0
        for doc in self.db.writers.find({"lease": {"$lt": datetime.now(tz=UTC)}}):
            writer = doc["_id"]
            numbers = sorted(
                self.db.trades.distinct("n", {"w": writer, "n": {"$gt": int(doc.get("n_done", 0))}})
            )
            for n in numbers:
                recovered += self._apply_write(writer, n)
            self.db.writers.delete_one({"_id": writer, "lease": doc["lease"]})
            if numbers:
                log.warning(
                    "re-applied footprints of a dead storage writer",
                    extra={"writer": writer, "writes": len(numbers)},
                )
        self._last_recovery = time.monotonic()
        return recovered

    def _apply_write(self, writer: str, n: int) -> int:
        """Idempotently apply one write's trades to their bars (guarded by the writer's ledger)."""
        deltas: dict[tuple[int, str, int], _Delta] = {}
        for doc in self.db.trades.find({"w": writer, "n": n}, {"p": 1, "i": 1}).sort([("t", 1), ("s", 1)]):
            instrument = InstrumentId.parse(doc["i"])
            tick = self._tick_of(instrument)
            tick_units, decimals = parse_tick(tick)
            trade = common_pb2.Trade.FromString(unframe(bytes(doc["p"])))
            for resolution in (RES_1M, RES_1H):
                start = trade.exchange_time_ms - trade.exchange_time_ms % BAR_MS[resolution]
                delta = deltas.get((resolution, doc["i"], start))
                if delta is None:
                    delta = deltas[(resolution, doc["i"], start)] = _Delta(instrument, start, tick)
                delta.add(trade, tick_units, decimals)
        for resolution in (RES_1M, RES_1H):
            self._bulk_bars(
                [d.update(writer, n) for k, d in deltas.items() if k[0] == resolution], resolution
            )
        return len(deltas)

    # --- price fields ------------------------------------------------------------------------------

    def _raw_trades(self, key: str, start: int, end: int) -> list[tuple[str, str, bool]]:
        """(price, size, is_buy) of the stored trades in [start, end), in (exchange time, sequence) order."""
        out: list[tuple[str, str, bool]] = []
        cursor = self.db.trades.find({"i": key, "t": {"$gte": start, "$lt": end}}, {"p": 1, "_id": 0}).sort(
            [("t", 1), ("s", 1)]
        )
        for doc in cursor:
            trade = trade_of(bytes(doc["p"]))
            out.append((trade.price, trade.size, trade.side == common_pb2.SIDE_BUY))
        return out

    def _finish(self, resolution: int, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The bar documents with price fields current for their trade count (see the module notes)."""
        return [doc if doc.get("pc") == doc.get("c") else self._finish_one(resolution, doc) for doc in docs]

    def _finish_one(self, resolution: int, doc: dict[str, Any]) -> dict[str, Any]:
        key, start, count = str(doc["i"]), int(doc["m"]), int(doc.get("c", 0))
        bar = _bar_of(doc, resolution)
        bar.trades = count
        merged: Bar | None = None
        if resolution == RES_1H:
            minute_docs = list(
                self.db.footprints_1m.find({"i": key, "m": {"$gte": start, "$lt": start + HOUR_MS}}).sort(
                    "m", 1
                )
            )
            minutes = [_bar_of(d, RES_1M) for d in self._finish(RES_1M, minute_docs)]
            if minutes and sum(m.trades for m in minutes) == count:
                merged = roll_up(minutes)[start]
        if merged is not None:
            bar.set_price_fields(merged.price_fields())
        else:
            bar.recompute(self._raw_trades(key, start, start + BAR_MS[resolution]))
        fields = _price_set(bar)
        # compare-and-set on the count: a write that landed meanwhile leaves the bar stale for the next reader
        done = self.db[_BARS[resolution]].find_one_and_update(
            {"_id": doc["_id"], "c": count}, {"$set": fields, "$inc": {"v": 1}}, return_document=True
        )
        return dict(done) if done is not None else doc | fields

    def _tick_of(self, instrument: InstrumentId) -> str:
        tick = self._ticks.get(instrument)
        if tick is None:
            doc = self.db.instruments.find_one({"_id": instrument.key})
            tick = str(doc["tick_size"]) if doc and doc.get("tick_size") else ""
            if not tick:
                raise StoreUnavailable(f"no tick size known for {instrument.key}")
            self._ticks[instrument] = tick
        return tick

    def _bulk_bars(self, updates: list[UpdateOne], resolution: int) -> int:
        """Run guarded bar updates; a duplicate-key error means the update was applied before."""
        if not updates:
            return 0
        try:
            result = self.db[_BARS[resolution]].bulk_write(updates, ordered=False)
            return len(result.upserted_ids or {})
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            return len(exc.details.get("upserted", []))

    # --- trades ------------------------------------------------------------------------------------

    def _register(self, instrument: InstrumentId, tick: str) -> None:
        if instrument in self._known and (not tick or self._ticks.get(instrument) == tick):
            return
        update: dict[str, Any] = {"$setOnInsert": {"created": datetime.now(tz=UTC)}}
        if tick:
            update["$set"] = {"tick_size": tick}
        else:
            update["$setOnInsert"]["tick_size"] = ""
        self.db.instruments.update_one({"_id": instrument.key}, update, upsert=True)
        self._known.add(instrument)
        if tick:
            self._ticks[instrument] = tick

    def _reserve_seq(self, count: int) -> int:
        doc = self.db.meta.find_one_and_update(
            {"_id": "seq"}, {"$inc": {"v": count}}, upsert=True, return_document=True
        )
        return int(doc["v"]) - count

    def _insert(self, docs: list[dict[str, Any]]) -> set[int]:
        """Unordered insert; the indexes of the documents that were new."""
        if not docs:
            return set()
        try:
            self.db.trades.insert_many(docs, ordered=False)
            return set(range(len(docs)))
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            duplicates = {int(e["index"]) for e in errors}
            return set(range(len(docs))) - duplicates

    def write_trades(self, writes: Sequence[TradeWrite], now_ms: int) -> WriteResult:
        outcomes, valid = screen_writes(writes, self._ticks)
        result = WriteResult(outcomes)
        if not valid:
            return result
        try:
            while self._repair:
                self._apply_write(self.writer_id, self._repair[0])
                self._repair.pop(0)
            if time.time() > self._lease_until - RENEW_BEFORE_S:
                self._renew_lease()
            self._n += 1
            n = self._n
            total = sum(len(w.trades) for _, w, _ in valid)
            seq = self._reserve_seq(total)
            docs: list[dict[str, Any]] = []
            for _, write, _tick in valid:
                self._register(write.instrument, write.tick_size)
                key = write.instrument.key
                for trade in write.trades:
                    t = trade.exchange_time_ms
                    docs.append(
                        {
                            "_id": f"{key}|{trade.trade_id}",
                            "i": key,
                            "t": t,
                            "s": seq,
                            "ts": _date(t),
                            "p": Binary(length_delimited(_TRADE_TAG, trade.SerializeToString())),
                            "w": self.writer_id,
                            "n": n,
                        }
                    )
                    seq += 1
            try:
                new = self._insert(docs)
            except PyMongoError:
                self._repair.append(n)  # some may be in: their bars are applied before the next write
                raise
            deltas: dict[tuple[InstrumentId, int], _Delta] = {}
            hour_deltas: dict[tuple[InstrumentId, int], _Delta] = {}
            position = 0
            minute_now = now_ms - now_ms % MINUTE_MS
            for index, write, tick in valid:
                tick_units, decimals = parse_tick(tick)
                inserted = 0
                size = 0
                oldest = newest = 0
                late: set[int] = set()
                for trade in write.trades:
                    if position in new:
                        inserted += 1
                        size += len(docs[position]["p"])
                        t = trade.exchange_time_ms
                        start = t - t % MINUTE_MS
                        delta = deltas.get((write.instrument, start))
                        if delta is None:
                            delta = deltas[(write.instrument, start)] = _Delta(write.instrument, start, tick)
                        delta.add(trade, tick_units, decimals)
                        hour = start - start % HOUR_MS
                        hour_delta = hour_deltas.get((write.instrument, hour))
                        if hour_delta is None:
                            hour_delta = hour_deltas[(write.instrument, hour)] = _Delta(
                                write.instrument, hour, tick
                            )
                        hour_delta.add(trade, tick_units, decimals)
                        if start < minute_now:
                            late.add(start)
                        oldest = t if oldest == 0 else min(oldest, t)
                        newest = max(newest, t)
                    position += 1
                outcomes[index] = WriteOutcome(inserted, len(write.trades) - inserted, len(late))
                if inserted:
                    self._bump_stat("trades", write.instrument, inserted, size, oldest, newest)
                    result.newest_ms[write.instrument] = max(
                        result.newest_ms.get(write.instrument, 0), newest
                    )
            try:
                self._bulk_bars([d.update(self.writer_id, n) for d in deltas.values()], RES_1M)
                self._bulk_bars([d.update(self.writer_id, n) for d in hour_deltas.values()], RES_1H)
            except PyMongoError:
                self._repair.append(n)
                raise
            self.db.writers.update_one({"_id": self.writer_id}, {"$max": {"n_done": n}})
            # closed bars this write changed: finish them now (late trades), and report them
            for resolution, touched in ((RES_1M, deltas), (RES_1H, hour_deltas)):
                closed = [d for d in touched.values() if d.start + BAR_MS[resolution] <= minute_now]
                if not closed:
                    continue
                docs = self.db[_BARS[resolution]].find(
                    {"_id": {"$in": [f"{d.instrument.key}|{d.start}" for d in closed]}}
                )
                for doc in self._finish(resolution, list(docs)):
                    bar = _bar_of(doc, resolution)
                    result.changed_bars.append(
                        ChangedBar(
                            InstrumentId.parse(doc["i"]), resolution, bar.start_ms, bar.version, bar.encode()
                        )
                    )
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB write failed: {exc}") from exc
        return result

    def _bump_stat(
        self, collection: str, instrument: InstrumentId, count: int, size: int, oldest: int, newest: int
    ) -> None:
        update: dict[str, Any] = {"$inc": {"count": count, "bytes": size}}
        if count:
            update["$min"] = {"oldest": oldest}
            update["$max"] = {"newest": newest}
        self.db.stats.update_one({"_id": f"{collection}|{instrument.key}"}, update, upsert=True)

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
        query: dict[str, Any] = {"i": instrument.key, "t": {"$gte": start_ms, "$lt": end_ms}}
        if after is not None:
            query["$or"] = [{"t": after[0], "s": {"$gt": after[1]}}, {"t": {"$gt": after[0]}}]
        try:
            cursor = self.db.trades.find(query, {"p": 1, "t": 1, "s": 1, "_id": 0}).sort([("t", 1), ("s", 1)])
            if limit > 0 and not min_size:
                cursor = cursor.limit(limit)
            cursor = cursor.batch_size(max(chunk, 256))
            parts: list[bytes] = []
            last = (0, 0)
            returned = 0
            for doc in cursor:
                payload = bytes(doc["p"])
                if min_size and not large_enough(payload, min_size):  # sizes live inside the message
                    continue
                parts.append(payload)
                last = (int(doc["t"]), int(doc["s"]))
                returned += 1
                if len(parts) >= chunk or returned == limit:
                    yield TradeChunk(b"".join(parts), len(parts), last)
                    parts = []
                    if returned == limit:
                        return
            if parts:
                yield TradeChunk(b"".join(parts), len(parts), last)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB read failed: {exc}") from exc

    def last_trades(self, instrument: InstrumentId, cap: int) -> list[bytes]:
        key = instrument.key
        try:
            # The instrument_time index (i, t, s) serves both reads from its end.
            newest = self.db.trades.find_one({"i": key}, {"t": 1, "_id": 0}, sort=[("t", -1), ("s", -1)])
            if newest is None:
                return []
            docs = list(
                self.db.trades.find({"i": key, "t": newest["t"]}, {"p": 1, "_id": 0})
                .sort([("s", -1)])
                .limit(cap)
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"reading the last trades failed: {exc}") from exc
        return [bytes(doc["p"]) for doc in reversed(docs)]

    # --- book snapshots ----------------------------------------------------------------------------

    def write_book_snapshots(
        self, batches: Sequence[Sequence[order_book_pb2.OrderBookSnapshot]]
    ) -> list[WriteOutcome | InvalidBatch]:
        outcomes: list[WriteOutcome | InvalidBatch] = []
        try:
            for batch in batches:
                try:
                    instruments = [validate_snapshot(s, f"snapshots[{n}]") for n, s in enumerate(batch)]
                except InvalidBatch as exc:
                    outcomes.append(exc)
                    continue
                docs: list[dict[str, Any]] = []
                for snapshot, instrument in zip(batch, instruments, strict=True):
                    self._register(instrument, "")
                    docs.append(
                        {
                            "ts": _date(snapshot.exchange_time_ms),
                            "meta": {"i": instrument.key},
                            "t": snapshot.exchange_time_ms,
                            "u": snapshot.update_id,
                            "p": Binary(snapshot.SerializeToString()),
                        }
                    )
                # Time-series collections hold no unique index: a resend is found here and skipped.
                existing = set()
                for instrument in set(instruments):
                    times = [d["t"] for d in docs if d["meta"]["i"] == instrument.key]
                    for doc in self.db.book_snapshots.find(
                        {
                            "meta.i": instrument.key,
                            "ts": {"$gte": _date(min(times)), "$lte": _date(max(times))},
                        },
                        {"t": 1, "u": 1, "_id": 0},
                    ):
                        existing.add((instrument.key, doc["t"], doc["u"]))
                fresh = [d for d in docs if (d["meta"]["i"], d["t"], d["u"]) not in existing]
                if fresh:
                    self.db.book_snapshots.insert_many(fresh, ordered=False)
                    for doc in fresh:
                        self._bump_stat(
                            "book_snapshots",
                            InstrumentId.parse(doc["meta"]["i"]),
                            1,
                            len(doc["p"]),
                            doc["t"],
                            doc["t"],
                        )
                outcomes.append(WriteOutcome(len(fresh), len(docs) - len(fresh)))
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB write failed: {exc}") from exc
        return outcomes

    def count_book_snapshots(self, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int) -> int:
        return self.count_range("book_snapshots", instrument, start_ms, end_ms, cap)

    def read_book_snapshots(
        self, instrument: InstrumentId, start_ms: int, end_ms: int, limit: int
    ) -> Iterator[list[bytes]]:
        query = {"meta.i": instrument.key, "ts": {"$gte": _date(start_ms), "$lt": _date(end_ms)}}
        cursor = self.db.book_snapshots.find(query, {"p": 1, "t": 1, "u": 1, "_id": 0}).sort(
            [("ts", 1), ("u", 1)]
        )
        seen: set[tuple[int, int]] = set()
        out: list[bytes] = []
        count = 0
        for doc in cursor:
            key = (int(doc["t"]), int(doc["u"]))
            if key in seen:
                continue
            seen.add(key)
            out.append(bytes(doc["p"]))
            count += 1
            if len(out) >= 256:
                yield out
                out = []
            if limit and count >= limit:
                break
        if out:
            yield out

    # --- footprints --------------------------------------------------------------------------------

    def read_footprints(
        self, instrument: InstrumentId, resolution: int, start_ms: int, end_ms: int
    ) -> list[StoredBar]:
        try:
            docs = (
                self.db[_BARS[resolution]]
                .find({"i": instrument.key, "m": {"$gte": start_ms, "$lt": end_ms}})
                .sort("m", 1)
            )
            out = []
            for doc in self._finish(resolution, list(docs)):
                bar = _bar_of(doc, resolution)
                out.append(StoredBar(bar.start_ms, bar.version, bar.encode()))
            return out
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB read failed: {exc}") from exc

    def put_bars(
        self, instrument: InstrumentId, resolution: int, bars: Sequence[bytes], replace: bool
    ) -> int:
        collection = self.db[_BARS[resolution]]
        written = 0
        try:
            self._register(instrument, "")
            for payload in bars:
                incoming = Bar.decode(payload)
                start = incoming.start_ms - incoming.start_ms % BAR_MS[resolution]
                fresh = Bar(start, incoming.row_size, resolution)
                fresh.merge(incoming)
                current = collection.find_one({"_id": f"{instrument.key}|{start}"}, {"v": 1})
                if current is not None and not replace:
                    continue
                fresh.version = (int(current["v"]) if current else 0) + 1
                if current is None:
                    try:
                        collection.insert_one(_bar_doc(instrument, fresh))
                    except DuplicateKeyError:
                        if not replace:
                            continue
                        collection.replace_one(
                            {"_id": f"{instrument.key}|{start}"}, _bar_doc(instrument, fresh)
                        )
                else:
                    collection.replace_one({"_id": f"{instrument.key}|{start}"}, _bar_doc(instrument, fresh))
                written += 1
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB write failed: {exc}") from exc
        return written

    # --- stats, health -----------------------------------------------------------------------------

    def stats(self) -> list[CollectionStat]:
        out: list[CollectionStat] = []
        for doc in self.db.stats.find():
            collection, _, key = str(doc["_id"]).partition("|")
            if collection.startswith("footprints"):
                continue
            out.append(
                CollectionStat(
                    collection,
                    InstrumentId.parse(key),
                    int(doc.get("count", 0)),
                    int(doc.get("bytes", 0)),
                    int(doc.get("oldest", 0)),
                    int(doc.get("newest", 0)),
                )
            )
        for name in _BARS.values():
            pipeline = [
                {
                    "$group": {
                        "_id": "$i",
                        "count": {"$sum": 1},
                        "oldest": {"$min": "$m"},
                        "newest": {"$max": "$m"},
                        "bytes": {"$sum": {"$bsonSize": "$$ROOT"}},
                    }
                }
            ]
            for doc in self.db[name].aggregate(pipeline):
                out.append(
                    CollectionStat(
                        name,
                        InstrumentId.parse(doc["_id"]),
                        int(doc["count"]),
                        int(doc["bytes"]),
                        int(doc["oldest"]),
                        int(doc["newest"]),
                    )
                )
        return out

    def store_bytes(self) -> int:
        return int(self.db.command("dbStats").get("storageSize", 0))

    def disk_path(self) -> str | None:
        return None

    def probe(self) -> None:
        try:
            self.db.command("ping")
            self.db.heartbeat.update_one(
                {"_id": self.writer_id}, {"$set": {"t": datetime.now(tz=UTC)}}, upsert=True
            )
            if time.time() > self._lease_until - RENEW_BEFORE_S:
                self._renew_lease()
            if time.monotonic() - self._last_recovery > 30:
                self.recover_dead_writers()
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB unreachable: {exc}") from exc

    def has_deferred(
        self, instrument: InstrumentId | None = None, start_ms: int = 0, end_ms: int = 0
    ) -> bool:
        return False  # bars are updated by $inc per row at each commit: nothing is deferred

    def flush_deferred(self, now_ms: int) -> list[ChangedBar]:
        return []

    # --- retention ---------------------------------------------------------------------------------

    def _range_query(
        self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int
    ) -> dict[str, Any]:
        if collection == "book_snapshots":
            return {"meta.i": instrument.key, "ts": {"$gte": _date(start_ms), "$lt": _date(end_ms)}}
        return {"i": instrument.key, _TIME_FIELD[collection]: {"$gte": start_ms, "$lt": end_ms}}

    def oldest(self, collection: str, instrument: InstrumentId) -> int | None:
        field = _TIME_FIELD[collection]
        query = {"meta.i": instrument.key} if collection == "book_snapshots" else {"i": instrument.key}
        doc = self.db[collection].find_one(
            query, {field: 1}, sort=[(field if collection != "book_snapshots" else "ts", 1)]
        )
        return int(doc[field]) if doc else None

    def count_range(
        self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int = 0
    ) -> int:
        options = {"limit": cap + 1} if cap > 0 else {}
        return int(
            self.db[collection].count_documents(
                self._range_query(collection, instrument, start_ms, end_ms), **options
            )
        )

    def export_range(
        self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int
    ) -> Iterator[list[bytes]]:
        query = self._range_query(collection, instrument, start_ms, end_ms)
        if collection.startswith("footprints"):
            resolution = RES_1M if collection == "footprints_1m" else RES_1H
            bars = self.read_footprints(instrument, resolution, start_ms, end_ms)
            if bars:
                yield [b.payload for b in bars]
            return
        sort = [("t", 1), ("s", 1)] if collection == "trades" else [("ts", 1)]
        out: list[bytes] = []
        for doc in self.db[collection].find(query, {"p": 1}).sort(sort):
            payload = bytes(doc["p"])
            out.append(unframe(payload) if collection == "trades" else payload)
            if len(out) >= 4096:
                yield out
                out = []
        if out:
            yield out

    def delete_range(self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int) -> int:
        query = self._range_query(collection, instrument, start_ms, end_ms)
        try:
            size = 0
            if not collection.startswith("footprints"):
                for doc in self.db[collection].aggregate(
                    [{"$match": query}, {"$group": {"_id": None, "b": {"$sum": {"$binarySize": "$p"}}}}]
                ):
                    size = int(doc["b"])
            deleted = int(self.db[collection].delete_many(query).deleted_count)
            if not collection.startswith("footprints") and deleted:
                oldest = self.oldest(collection, instrument) or 0
                self.db.stats.update_one(
                    {"_id": f"{collection}|{instrument.key}"},
                    {"$inc": {"count": -deleted, "bytes": -size}, "$set": {"oldest": oldest}},
                )
            return deleted
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB delete failed: {exc}") from exc

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
        try:
            self._register(instrument, "" if instrument in self._ticks else tick)
            seq = self._reserve_seq(len(trades))
            key = instrument.key
            docs: list[dict[str, Any]] = [
                {
                    "_id": f"{key}|{t.trade_id}",
                    "i": key,
                    "t": t.exchange_time_ms,
                    "s": seq + n,
                    "ts": _date(t.exchange_time_ms),
                    "p": Binary(length_delimited(_TRADE_TAG, t.SerializeToString())),
                    "w": "restore",
                    "n": 0,
                }
                for n, t in enumerate(trades)
            ]
            new = self._insert(docs)
            tick_units, decimals = parse_tick(tick)
            deltas: dict[tuple[int, int], _Delta] = {}
            kept: set[tuple[int, int]] = set()  # (resolution, start) of bars that hold these trades already
            created = {RES_1M: session.created_bars, RES_1H: session.created_hours}
            for n in sorted(new):
                trade = trades[n]
                for resolution in (RES_1M, RES_1H):
                    start = trade.exchange_time_ms - trade.exchange_time_ms % BAR_MS[resolution]
                    if (resolution, start) in kept:
                        continue
                    if (resolution, start) not in deltas:
                        exists = self.db[_BARS[resolution]].find_one({"_id": f"{key}|{start}"}, {"_id": 1})
                        if exists is not None and (0, start) not in created[resolution]:
                            kept.add((resolution, start))
                            continue
                        deltas[(resolution, start)] = _Delta(instrument, start, tick)
                    deltas[(resolution, start)].add(trade, tick_units, decimals)
            for resolution in (RES_1M, RES_1H):
                self._bulk_bars(
                    [d.update("restore", 0, guarded=False) for k, d in deltas.items() if k[0] == resolution],
                    resolution,
                )
            for resolution, start in deltas:
                created[resolution].add((0, start))
            if new:
                times = [trades[n].exchange_time_ms for n in new]
                self._bump_stat(
                    "trades",
                    instrument,
                    len(new),
                    sum(len(docs[n]["p"]) for n in new),
                    min(times),
                    max(times),
                )
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB restore failed: {exc}") from exc
        return WriteOutcome(len(new), len(trades) - len(new))
