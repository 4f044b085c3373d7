"""Bad frames for the `malformed` fault: what a collector must count and skip without crashing."""

from __future__ import annotations

import orjson

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange import binance, bybit
from marketdata.replay_exchange.peers import OP_BINARY, Peer, ws_frame

NOT_JSON = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
BINARY = b"\x00\x01\x02\xfe\xffnot text"
# `oversized`: bigger than any real exchange frame, and than the collector's frame limit (16 MiB).
OVERSIZED_FRAME_BYTES = 20 * 1024 * 1024


def bad_frame(variant: str, peer: Peer, symbol: str, last_id: int | str, now_ms: int) -> bytes:
    """One framed bad message of `variant` in the shape the peer's market and form would carry.

    Trades reuse the last id already sent, so a collector that skipped them sees no id gap.
    """
    if variant == "text":
        return ws_frame(NOT_JSON)
    if variant == "binary":
        return ws_frame(BINARY, OP_BINARY)
    if variant == "oversized":
        padding = b"x" * OVERSIZED_FRAME_BYTES
        return ws_frame(b'{"e":"oversized","s":"' + symbol.encode() + b'","pad":"' + padding + b'"}')
    if peer.market.is_binance:
        body = _binance_body(variant, peer.market, symbol, last_id, now_ms)
        stream = binance.trade_stream(symbol)
        payload = binance.combined(stream, body) if peer.combined else body
    else:
        payload = _bybit_body(variant, peer.market, symbol, last_id, now_ms)
    if variant == "truncated":
        payload = payload[: len(payload) // 2]
    return ws_frame(payload)


def _binance_body(variant: str, market: MarketKey, symbol: str, last_id: int | str, now_ms: int) -> bytes:
    if variant == "unknown_event":
        return orjson.dumps({"e": "mysteryEvent", "E": now_ms, "s": symbol})
    trade: dict[str, object] = {
        "e": "trade",
        "E": now_ms,
        "s": symbol,
        "t": last_id,
        "p": "65000.10" if market == MarketKey.BINANCE_FUTURES else "65000.10000000",
        "q": "0.001" if market == MarketKey.BINANCE_FUTURES else "0.00100000",
        "T": now_ms,
        "m": True,
    }
    if variant == "missing_field":
        del trade["p"]
    elif variant == "bad_price":
        trade["p"] = "sixty-five thousand"
    return orjson.dumps(trade)


def _bybit_body(variant: str, market: MarketKey, symbol: str, last_id: int | str, now_ms: int) -> bytes:
    if variant == "unknown_event":
        return orjson.dumps({"topic": f"mysteryTopic.{symbol}", "type": "snapshot", "ts": now_ms, "data": []})
    item: dict[str, object] = {
        "T": now_ms,
        "s": symbol,
        "S": "Buy",
        "v": "0.001",
        "p": "65000.10",
        "i": str(last_id),
        "BT": False,
        "RPI": False,
        "seq": 1,
    }
    if market == MarketKey.BYBIT_LINEAR:
        item["L"] = "ZeroPlusTick"
    if variant == "missing_field":
        del item["p"]
    elif variant == "bad_price":
        item["p"] = "sixty-five thousand"
    return orjson.dumps(
        {"topic": bybit.trade_topic(symbol), "type": "snapshot", "ts": now_ms, "data": [item]}
    )
