"""TradeRun: the trades of one instrument, in arrival order, carried as protobuf wire bytes.

From the parser to the subscribers and storage, a trade is never a Python object on the usual path:
the frame parser (the C fast path in `_fastframes`, or the Python parser whose trades are serialized
once) writes each trade as the `TradeBatch.trades` field (key 0x12, length, `Trade` bytes), runs of
one turn are joined by concatenation, and the bus and the storage writer put the same bytes behind a
header. Building a protobuf `Trade` per trade, and serializing it again per batch, was half the
collector's CPU.

What the sequencers decide on travels beside the bytes: the trade ids (ints for Binance, whose ids
are consecutive; the exchange's text for Bybit, deduplicated by id) and the last trade's exchange
time. Anything that needs the trades themselves (a gap being repaired, a duplicate to drop) gets
them from `trades()`, which parses the bytes back: the rare path pays, the usual one does not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from marketdata.core.wire import length_delimited
from marketdata.v1 import common_pb2

__all__ = ["TRADE_KEY", "FastPart", "RunPart", "TradeRun", "fastframes", "wire_offset"]

Trade = common_pb2.Trade
TRADE_KEY = 0x12  # TradeBatch.trades: field 2, length-delimited
# A frame's trades as the C fast path returns them: (key, wire, ids, last_time_ms, last_offset), the
# key being the Binance symbol or the Bybit topic. Readers keep these until the turn's run is made.
RunPart = tuple[str | None, bytes, list[int] | list[str], int, int]
FastPart = tuple[str, bytes, list[int] | list[str], int, int]  # as the C functions return it

try:  # the C extension (setup.py); without a compiler the parsers' Python code and the forms below do
    from marketdata.collector import _fastframes as fastframes
except ImportError:  # pragma: no cover - CI builds it (tests/collector/test_fastframes.py)
    fastframes = None  # type: ignore[assignment]


def _wire_offset_py(wire: bytes, n: int) -> int:
    """Byte offset of the n-th framed entry of `wire` (len(wire) for n == entries)."""
    offset, size = 0, len(wire)
    for _ in range(n):
        if offset >= size or wire[offset] != TRADE_KEY:
            raise ValueError(f"trade wire: no entry {n} (entry at byte {offset} is missing or not a trade)")
        offset += 1
        length = shift = 0
        while True:
            if offset >= size:
                raise ValueError("trade wire: truncated length")
            byte = wire[offset]
            offset += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        offset += length
        if offset > size:
            raise ValueError("trade wire: an entry runs past the end")
    return offset


wire_offset = fastframes.wire_offset if fastframes is not None else _wire_offset_py


class TradeRun(Sequence[Trade]):
    """Trades of one instrument as framed wire bytes, with their ids and the last one's time.

    A Sequence of `Trade` for code that wants the objects (tests, gap repair): they are parsed from
    the bytes on first use. The hot path reads `wire`, `ids` and `count` only.
    """

    __slots__ = ("_last_time_ms", "_trades", "ids", "last_offset", "wire")

    def __init__(
        self, wire: bytes, ids: list[int] | list[str], last_offset: int, last_time_ms: int | None = None
    ) -> None:
        self.wire = wire
        # Binance: int ids (consecutive per symbol); Bybit: the `i` text. One per trade, in order.
        self.ids = ids
        self.last_offset = last_offset  # where the last trade's entry starts in `wire`
        self._last_time_ms = last_time_ms
        self._trades: list[Trade] | None = None

    @classmethod
    def of(cls, trades: Sequence[Trade], int_ids: bool) -> TradeRun:
        """The run of protobuf trades (REST backfill, the Python parser, repaired gaps)."""
        entries = [length_delimited(TRADE_KEY, t.SerializeToString()) for t in trades]
        ids: list[int] | list[str] = (
            [int(t.trade_id) for t in trades] if int_ids else [t.trade_id for t in trades]
        )
        last_offset = sum(map(len, entries[:-1])) if entries else 0
        run = cls(b"".join(entries), ids, last_offset, trades[-1].exchange_time_ms if trades else None)
        run._trades = list(trades)
        return run

    @classmethod
    def join(cls, runs: Sequence[TradeRun]) -> TradeRun:
        """One run of several, in order (a bus batch)."""
        if len(runs) == 1:
            return runs[0]
        last = runs[-1]
        return cls._concat(
            [r.wire for r in runs], [r.ids for r in runs], last.last_offset, last._last_time_ms
        )

    @classmethod
    def join_parts(cls, parts: Sequence[RunPart]) -> TradeRun:
        """One run of a reader's turn: the frames' parts, in order."""
        if len(parts) == 1:
            _, wire, ids, last_time_ms, last_offset = parts[0]
            return cls(wire, ids, last_offset, last_time_ms)
        last = parts[-1]
        return cls._concat([p[1] for p in parts], [p[2] for p in parts], last[4], last[3])

    @classmethod
    def _concat(
        cls,
        wires: list[bytes],
        id_lists: list[list[int] | list[str]],
        last_offset: int,
        last_time_ms: int | None,
    ) -> TradeRun:
        """The wires and ids joined; `last_offset` is within the last wire."""
        ids: list = []  # type: ignore[type-arg]
        for part_ids in id_lists:
            ids += part_ids
        before_last = sum(map(len, wires)) - len(wires[-1])
        return cls(b"".join(wires), ids, before_last + last_offset, last_time_ms)

    def part(self) -> RunPart:
        """This run as a reader's part (the Python parser's frames join the fast path's)."""
        return (None, self.wire, self.ids, self.last_time_ms, self.last_offset)

    @property
    def last_trade_id(self) -> str:
        return str(self.ids[-1])

    @property
    def last_time_ms(self) -> int:
        """The last trade's exchange time (parsed from its bytes when the run was cut from another)."""
        if self._last_time_ms is None:
            self._last_time_ms = self.last().exchange_time_ms
        return self._last_time_ms

    def last(self) -> Trade:
        """The last trade as a protobuf message (one parse, not the whole run's)."""
        if self._trades is not None:
            return self._trades[-1]
        return common_pb2.TradeBatch.FromString(self.wire[self.last_offset :]).trades[0]

    def trades(self) -> list[Trade]:
        """Every trade as a protobuf message (parsed once, then kept)."""
        if self._trades is None:
            self._trades = list(common_pb2.TradeBatch.FromString(self.wire).trades)
        return self._trades

    def split(self, size: int) -> list[TradeRun]:
        """Runs of at most `size` trades, in order (the bus's largest batch)."""
        count = len(self.ids)
        if count <= size:
            return [self]
        wire, ids = self.wire, self.ids
        pieces: list[TradeRun] = []
        start_byte = 0
        for start in range(0, count, size):
            end = min(start + size, count)
            end_byte = wire_offset(wire, end) if end < count else len(wire)
            piece = wire[start_byte:end_byte]
            last_offset = wire_offset(piece, end - start - 1)
            last_time = self._last_time_ms if end == count else None
            pieces.append(TradeRun(piece, ids[start:end], last_offset, last_time))
            start_byte = end_byte
        return pieces

    # -- Sequence[Trade] ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Trade: ...
    @overload
    def __getitem__(self, index: slice) -> list[Trade]: ...
    def __getitem__(self, index: int | slice) -> Trade | list[Trade]:
        return self.trades()[index]

    def __iter__(self) -> Iterator[Trade]:
        return iter(self.trades())

    def __repr__(self) -> str:
        return f"TradeRun({len(self.ids)} trades, {len(self.wire)} bytes, last id {self.ids[-1] if self.ids else None})"
