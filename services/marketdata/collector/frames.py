"""What an exchange adapter makes of one WebSocket frame, and the checks every parser shares."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any, TypeGuard

import orjson

from marketdata.collector.trade_runs import FastPart, TradeRun
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2

Trade = common_pb2.Trade

# Exchange decimals: ASCII digits, optionally a fraction. Anything else (exponents, signs, "NaN",
# Unicode digits) is refused so that no value that could not be binned exactly travels downstream.
_DECIMAL = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?\Z")
# Largest set of decimal strings a parser remembers as already checked (remember_decimal).
KNOWN_DECIMALS_MAX = 4096
# Times, ids and sequences travel as int64 (proto) fields.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
INT64_MIN, INT64_MAX = _INT64_MIN, _INT64_MAX


class FrameError(ValueError):
    """A frame that cannot be used: counted as a parse error and skipped."""


class FrameKind(Enum):
    TRADES = auto()  # trades of one instrument
    SUBSCRIBED = auto()  # a subscription was acknowledged
    REJECTED = auto()  # a subscription or request was refused; detail says why
    PONG = auto()  # answer to our keepalive
    SHUTDOWN = auto()  # the server announced it will close this connection (Binance serverShutdown)
    IGNORED = auto()  # a valid frame we do not use (other streams, info messages)
    BOOK = auto()  # an order-book update or snapshot of one instrument (`book`)
    BOOK_INVALID = auto()  # a depth frame that cannot be used; `instrument` when known, detail says why


@dataclass(slots=True)
class BookUpdate:
    """One depth message as the exchange sent it; levels are [price, size] string pairs, unvalidated
    (the book validates them as it applies them).

    Binance: first_id/last_id are `U`/`u`, prev_id is USD-M `pu` (-1 on spot). Bybit: first_id and
    last_id are both `u`, prev_id is -1, `snapshot` marks type=snapshot.
    """

    first_id: int
    last_id: int
    prev_id: int
    bids: list[Any]
    asks: list[Any]
    exchange_time_ms: int  # Binance `T` (USD-M) or `E`; Bybit `cts` or `ts`
    event_time_ms: int  # Binance `E`; Bybit `ts`
    receive_ns: int
    snapshot: bool = False
    cross_sequence: int = 0  # Bybit `seq`


@dataclass(slots=True)
class Frame:
    kind: FrameKind
    instrument: InstrumentId | None = None
    # TRADES: the frame's trades as wire bytes with their ids (collector/trade_runs.py); a Sequence
    # of protobuf Trades for code that wants the objects.
    trades: TradeRun = field(default_factory=lambda: TradeRun(b"", [], 0))
    detail: str = ""
    book: BookUpdate | None = None


IGNORED = Frame(FrameKind.IGNORED)
PONG = Frame(FrameKind.PONG)


def decimal_text(value: object, name: str) -> str:
    """The exchange's decimal string, unchanged, or FrameError naming the field."""
    if type(value) is not str or not _DECIMAL.match(value):
        raise FrameError(f"{name} is not a decimal string: {value!r}")
    return value


def remember_decimal(known: set[str], value: object, name: str) -> None:
    """decimal_text() for a parser's hot loop: `known` holds the strings it already accepted (prices
    and sizes repeat, and a set lookup costs a fifth of the pattern match), so the loop checks
    `type(v) is str and v in known` inline and calls this only for a new string, which is checked
    and remembered; FrameError naming the field as decimal_text. The set is emptied when it
    reaches KNOWN_DECIMALS_MAX strings."""
    text = decimal_text(value, name)
    if len(known) >= KNOWN_DECIMALS_MAX:
        known.clear()
    known.add(text)


def integer(value: object, name: str) -> int:
    """An int64 given as a JSON integer or a string of ASCII digits, or FrameError naming the field."""
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise FrameError(f"{name} is not an integer: {value!r}")


def is_int64(value: object) -> TypeGuard[int]:
    """A JSON integer that fits the int64 fields it travels in (update ids, times)."""
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def optional_text(value: object, name: str) -> str:
    """An optional string field ("" when absent or null), or FrameError naming the field."""
    if value is None:
        return ""
    if type(value) is not str:
        raise FrameError(f"{name} is not a string: {value!r}")
    return value


def json_object(text: str | bytes) -> dict[str, Any]:
    """The frame as a JSON object, or FrameError saying why not."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if type(message) is not dict:
        raise FrameError("frame is not a JSON object")
    return message


def fast_trades_frame(
    fast: Callable[[str | bytes, int], FastPart | None] | None,
    keys: Mapping[str, InstrumentId],
    text: str | bytes,
    receive_ns: int,
) -> Frame | None:
    """The TRADES frame of a parser's C fast path (`fast`, keyed by `keys`: Binance symbols or Bybit
    topics), or None when there is none, it declines, or the key is not this connection's."""
    found = fast(text, receive_ns) if fast is not None else None
    if found is None:
        return None
    key, wire, ids, last_time_ms, last_offset = found
    instrument = keys.get(key)
    if instrument is None:
        return None
    return Frame(FrameKind.TRADES, instrument, TradeRun(wire, ids, last_offset, last_time_ms))
