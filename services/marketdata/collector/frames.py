"""What an exchange adapter makes of one WebSocket frame, and the checks every parser shares."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

import orjson

from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2

Trade = common_pb2.Trade

# Exchange decimals: digits, optionally a fraction. Anything else (exponents, signs, "NaN") is refused
# so that no value that could not be binned exactly travels downstream.
_DECIMAL = re.compile(r"\d{1,30}(?:\.\d{1,30})?\Z")


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
    trades: list[common_pb2.Trade] = field(default_factory=list)
    detail: str = ""
    book: BookUpdate | None = None


IGNORED = Frame(FrameKind.IGNORED)
PONG = Frame(FrameKind.PONG)


def decimal_text(value: object, name: str) -> str:
    """The exchange's decimal string, unchanged, or FrameError naming the field."""
    if type(value) is not str or not _DECIMAL.match(value):
        raise FrameError(f"{name} is not a decimal string: {value!r}")
    return value


def integer(value: object, name: str) -> int:
    if type(value) is int:
        return value
    if type(value) is str and value.isdigit():
        return int(value)
    raise FrameError(f"{name} is not an integer: {value!r}")


def json_object(text: str | bytes) -> dict[str, Any]:
    """The frame as a JSON object, or FrameError saying why not."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if type(message) is not dict:
        raise FrameError("frame is not a JSON object")
    return message
