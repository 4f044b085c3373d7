"""The collector's fast path (_fastframes.c): exchange trade frames straight to TradeBatch.trades wire
bytes (0x12, varint length, serialized Trade per trade). Each frame function returns None to decline
anything but the simple, fully valid frame; the Python parsers then handle it."""

def bybit_trades(text: bytes | str, receive_ns: int, /) -> tuple[str, bytes, list[str], int, int] | None:
    """A Bybit publicTrade push as (topic, wire, ids, last_time_ms, last_offset), or None.

    OverflowError if receive_ns does not fit int64; TypeError for arguments of the wrong type."""

def binance_trade(text: bytes | str, receive_ns: int, /) -> tuple[str, bytes, list[int], int, int] | None:
    """A Binance trade/aggTrade event (combined or raw) as (symbol, wire, [trade_id], time_ms, 0), the
    shape of bybit_trades, or None."""

def wire_offset(wire: bytes | bytearray | memoryview, n: int, /) -> int:
    """Byte offset of the n-th framed entry of `wire` (len(wire) for n == entries); ValueError if the
    wire is malformed or n is out of range."""
