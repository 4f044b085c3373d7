"""The storage backend interface, shared by the embedded (SQLite) and MongoDB stores.

Backends are synchronous (sqlite3 and pymongo are); the service runs every write on one writer
thread and reads on a small pool. A write call commits durably before it returns: what it reports
as stored survives a killed process (and, with the default settings, a power loss).

Validation lives here too, so that every backend rejects the same input with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from marketdata.core.instruments import InstrumentId
from marketdata.storage.footprints import is_plain_decimal, parse_tick, volume_units
from marketdata.v1 import common_pb2, order_book_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2

COLLECTIONS = ("trades", "book_snapshots", "footprints_1m", "footprints_1h")
MAX_TRADE_ID_LENGTH = 128
_TRADE_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces


class InvalidBatch(ValueError):
    """A batch that can never be stored; the message names the offending field."""


class StoreUnavailable(RuntimeError):
    """The store cannot commit now (full disk, unreachable database); nothing of the call was stored."""


@dataclass(frozen=True, slots=True)
class TradeWrite:
    """One batch to store: trades of one instrument and (optionally) its tick size."""

    instrument: InstrumentId
    trades: Sequence[common_pb2.Trade]
    tick_size: str = ""


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    inserted: int
    duplicates: int
    late_bars: int = 0


@dataclass(frozen=True, slots=True)
class CollectionStat:
    collection: str
    instrument: InstrumentId
    count: int
    bytes: int
    oldest_ms: int
    newest_ms: int

    def to_proto(self) -> storage_pb2.CollectionStats:
        return storage_pb2.CollectionStats(
            collection=self.collection,
            instrument=self.instrument.to_proto(),
            count=self.count,
            bytes=self.bytes,
            oldest_time_ms=self.oldest_ms,
            newest_time_ms=self.newest_ms,
        )


@dataclass(frozen=True, slots=True)
class TradeChunk:
    """Stored trades, each already framed as a TradeBatch.trades field, ready to concatenate."""

    framed: bytes
    count: int
    # (exchange time, storage sequence) of the last trade: where a next page starts.
    last: tuple[int, int]


@dataclass(frozen=True, slots=True)
class StoredBar:
    start_ms: int
    version: int
    payload: bytes  # a serialized FootprintBar


@dataclass
class ChangedBar:
    """A bar a write changed, reported so that a cache can be refreshed (closed bars only)."""

    instrument: InstrumentId
    resolution: int
    start_ms: int
    version: int
    payload: bytes


@dataclass
class WriteResult:
    """What one commit did: per-write outcomes (or why a write was rejected) and the bars it changed."""

    outcomes: list[WriteOutcome | InvalidBatch]
    changed_bars: list[ChangedBar] = field(default_factory=list)
    newest_ms: dict[InstrumentId, int] = field(default_factory=dict)


@dataclass
class RestoreSession:
    """Bars created by a restore so far: later trades of the same bar are added to them.
    (instrument key or id, bar start) of 1m bars, and separately of 1h bars."""

    created_bars: set[tuple[int, int]] = field(default_factory=set)
    created_hours: set[tuple[int, int]] = field(default_factory=set)


class Backend(Protocol):
    name: str
    # open() migrated stored bars (their payloads changed without a write: caches of them are stale)
    migrated: bool

    def open(self) -> None: ...

    def close(self) -> None: ...

    def tick_sizes(self) -> dict[InstrumentId, str]:
        """Instruments with stored trades and the row size their footprints use."""
        ...

    def known_instruments(self) -> set[InstrumentId]:
        """Instruments with anything stored (trades, snapshots or bars)."""
        ...

    def write_trades(self, writes: Sequence[TradeWrite], now_ms: int) -> WriteResult:
        """Store the valid writes in one durable commit (raises StoreUnavailable when it cannot)."""
        ...

    def write_book_snapshots(
        self, batches: Sequence[Sequence[order_book_pb2.OrderBookSnapshot]]
    ) -> list[WriteOutcome | InvalidBatch]: ...

    def count_trades(
        self, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int, min_size: int = 0
    ) -> int:
        """Trades in [start, end) (of size >= min_size volume units), counting no further than cap + 1."""
        ...

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
        """Stored trades in (time, sequence) order; with min_size (volume units, see
        footprints.volume_units) only those at least that size; `limit` counts the trades returned."""
        ...

    def last_trades(self, instrument: InstrumentId, cap: int) -> list[bytes]:
        """The stored trades (framed as TradeBatch.trades fields) of the instrument's newest exchange
        millisecond, in storage order; the last `cap` when there are more; [] when nothing is stored."""
        ...

    def count_book_snapshots(self, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int) -> int: ...

    def read_book_snapshots(
        self, instrument: InstrumentId, start_ms: int, end_ms: int, limit: int
    ) -> Iterator[list[bytes]]:
        """Serialized OrderBookSnapshot messages, oldest first, in lists of a few hundred."""
        ...

    def read_footprints(
        self, instrument: InstrumentId, resolution: int, start_ms: int, end_ms: int
    ) -> list[StoredBar]: ...

    def stats(self) -> list[CollectionStat]: ...

    def store_bytes(self) -> int: ...

    def disk_path(self) -> str | None:
        """A directory whose free space limits the store (None when the store is remote)."""
        ...

    def probe(self) -> None:
        """Prove the store answers and commits (a tiny durable write); raise StoreUnavailable if not."""
        ...

    def has_deferred(
        self, instrument: InstrumentId | None = None, start_ms: int = 0, end_ms: int = 0
    ) -> bool:
        """Whether bar saves wait for flush_deferred (of `instrument` overlapping [start_ms, end_ms), when
        given). A backend that saves every bar at its commit always answers False."""
        ...

    def flush_deferred(self, now_ms: int) -> list[ChangedBar]:
        """Save what write_trades deferred (one durable commit); the bars it saved."""
        ...

    # Retention and archive -------------------------------------------------------------------------

    def oldest(self, collection: str, instrument: InstrumentId) -> int | None: ...

    def count_range(
        self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int = 0
    ) -> int: ...

    def export_range(
        self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int
    ) -> Iterator[list[bytes]]:
        """Stored messages (Trade, OrderBookSnapshot or FootprintBar, serialized) in [start, end)."""
        ...

    def delete_range(self, collection: str, instrument: InstrumentId, start_ms: int, end_ms: int) -> int: ...

    def put_bars(
        self, instrument: InstrumentId, resolution: int, bars: Sequence[bytes], replace: bool
    ) -> int:
        """Store FootprintBar messages: replace=True overwrites existing bars (a roll-up, recomputed in
        full), replace=False stores only bars that are absent (restore). Returns how many were written."""
        ...

    def restore_trades(
        self,
        instrument: InstrumentId,
        tick_size: str,
        trades: Sequence[common_pb2.Trade],
        session: RestoreSession,
    ) -> WriteOutcome:
        """Put archived trades back without counting them again: bars that exist already hold them."""
        ...


# --- shared helpers --------------------------------------------------------------------------------


def unframe(framed: bytes) -> bytes:
    """Strip the tag and length varint off a framed payload."""
    position = 1
    while framed[position] & 0x80:
        position += 1
    return framed[position + 1 :]


def trade_of(framed: bytes) -> common_pb2.Trade:
    """A stored trade (framed as a TradeBatch.trades field) as a message."""
    return common_pb2.Trade.FromString(unframe(framed))


def large_enough(framed: bytes, min_size: int) -> bool:
    """The stored trade's size is at least min_size volume units (an exact decimal compare)."""
    return volume_units(trade_of(framed).size) >= min_size


class TradeCounting:
    """count_trades for both backends (they differ only in read_trades and count_range)."""

    def count_trades(
        self: Backend, instrument: InstrumentId, start_ms: int, end_ms: int, cap: int, min_size: int = 0
    ) -> int:
        """Trades in [start, end) (of size >= min_size volume units), counting no further than cap + 1
        (cap 0: no cap). The size filter needs each payload, so it counts by reading; else the index counts."""
        if not min_size:
            return self.count_range("trades", instrument, start_ms, end_ms, cap)
        chunks = self.read_trades(instrument, start_ms, end_ms, None, 0, 4096, min_size)
        total = 0
        for chunk in chunks:
            total += chunk.count
            if cap and total > cap:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
                break
        return total


# --- validation ------------------------------------------------------------------------------------


def screen_writes(
    writes: Sequence[TradeWrite], known_ticks: Mapping[InstrumentId, str]
) -> tuple[list[WriteOutcome | InvalidBatch], list[tuple[int, TradeWrite, str]]]:
    """Validate a group of batches before any backend touches them.

    Returns one outcome per batch (an InvalidBatch for a refused one, a zero WriteOutcome to be filled
    in for the others) and the valid batches as (index, write, tick size). A batch may omit its tick
    size when storage already knows the instrument's, or an earlier batch of the group gave it.
    """
    outcomes: list[WriteOutcome | InvalidBatch] = []
    valid: list[tuple[int, TradeWrite, str]] = []
    group_ticks: dict[InstrumentId, str] = {}
    for index, write in enumerate(writes):
        try:
            tick = (
                write.tick_size
                or group_ticks.get(write.instrument, "")
                or known_ticks.get(write.instrument, "")
            )
            if not tick:
                raise InvalidBatch(
                    f"tick_size: {write.instrument.key} is new to storage and no tick size was given"
                )
            if write.tick_size:
                validate_tick(write.tick_size)
            validate_trades(write.trades)
        except InvalidBatch as exc:
            outcomes.append(exc)
            continue
        outcomes.append(WriteOutcome(0, 0))
        valid.append((index, write, tick))
        if write.tick_size:
            group_ticks[write.instrument] = write.tick_size
    return outcomes, valid


def validate_trades(trades: Sequence[common_pb2.Trade], field: str = "batch.trades") -> None:
    """Raise InvalidBatch naming the first bad field (identity, exact decimals, side, time)."""
    match_id, plain = _TRADE_ID.fullmatch, is_plain_decimal
    for n, trade in enumerate(trades):
        if match_id(trade.trade_id) is None:
            raise InvalidBatch(
                f"{field}[{n}].trade_id: {trade.trade_id!r} must be 1..{MAX_TRADE_ID_LENGTH} printable characters"
            )
        if not plain(trade.price):
            raise InvalidBatch(f"{field}[{n}].price: {trade.price!r} is not a plain decimal")
        if not plain(trade.size):
            raise InvalidBatch(f"{field}[{n}].size: {trade.size!r} is not a plain decimal")
        if trade.side not in (common_pb2.SIDE_BUY, common_pb2.SIDE_SELL):
            raise InvalidBatch(f"{field}[{n}].side: must be SIDE_BUY or SIDE_SELL")
        if trade.exchange_time_ms <= 0:
            raise InvalidBatch(f"{field}[{n}].exchange_time_ms: must be > 0")


def validate_tick(tick_size: str, field: str = "tick_size") -> None:
    try:
        parse_tick(tick_size)
    except ValueError as exc:
        raise InvalidBatch(f"{field}: {exc}") from None


def validate_snapshot(snapshot: order_book_pb2.OrderBookSnapshot, field: str) -> InstrumentId:
    try:
        instrument = InstrumentId.from_proto(snapshot.instrument)
    except ValueError as exc:
        raise InvalidBatch(f"{field}.instrument: {exc}") from None
    if snapshot.exchange_time_ms <= 0:
        raise InvalidBatch(f"{field}.exchange_time_ms: must be > 0")
    for side, levels in (("bids", snapshot.bids), ("asks", snapshot.asks)):
        for n, level in enumerate(levels):
            if not is_plain_decimal(level.price):
                raise InvalidBatch(f"{field}.{side}[{n}].price: {level.price!r} is not a plain decimal")
            if not is_plain_decimal(level.size):
                raise InvalidBatch(f"{field}.{side}[{n}].size: {level.size!r} is not a plain decimal")
    return instrument
