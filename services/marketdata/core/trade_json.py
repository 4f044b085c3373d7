"""The JSON form of a trade, shared by `marketdata tail --json` and the storage archive files.

Decimals stay strings exactly as the exchange sent them; optional exchange flags appear only when set.
"""

from __future__ import annotations

from typing import Any

from marketdata.v1 import common_pb2

SIDES = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}
_SIDE_OF = {v: k for k, v in SIDES.items()}
SOURCES = {
    common_pb2.TRADE_SOURCE_WEBSOCKET: "websocket",
    common_pb2.TRADE_SOURCE_REST_BACKFILL: "rest_backfill",
}
_SOURCE_OF = {v: k for k, v in SOURCES.items()}


def trade_to_record(trade: common_pb2.Trade) -> dict[str, Any]:
    """Identity, exact price and size, aggressor side, both times, source, and the set flags."""
    record: dict[str, Any] = {
        "trade_id": trade.trade_id,
        "price": trade.price,
        "size": trade.size,
        "side": SIDES.get(trade.side, "unknown"),
        "exchange_time_ms": trade.exchange_time_ms,
        "receive_time_ns": trade.receive_time_ns,
        "source": SOURCES.get(trade.source, "unspecified"),
    }
    if trade.event_time_ms:
        record["event_time_ms"] = trade.event_time_ms
    if trade.execution_type:
        record["execution_type"] = trade.execution_type
    if trade.cross_sequence:
        record["cross_sequence"] = trade.cross_sequence
    if trade.tick_direction:
        record["tick_direction"] = trade.tick_direction
    if trade.block_trade:
        record["block_trade"] = True
    if trade.rpi:
        record["rpi"] = True
    if trade.aggregated:
        record["aggregated"] = True
    return record


def trade_from_record(record: dict[str, Any]) -> common_pb2.Trade:
    """The inverse of trade_to_record (extra keys such as "instrument" are ignored)."""
    return common_pb2.Trade(
        trade_id=record["trade_id"],
        price=record["price"],
        size=record["size"],
        side=_SIDE_OF.get(record["side"], common_pb2.SIDE_UNSPECIFIED),
        exchange_time_ms=record["exchange_time_ms"],
        receive_time_ns=record.get("receive_time_ns", 0),
        event_time_ms=record.get("event_time_ms", 0),
        source=_SOURCE_OF.get(record.get("source", ""), common_pb2.TRADE_SOURCE_UNSPECIFIED),
        execution_type=record.get("execution_type", ""),
        cross_sequence=record.get("cross_sequence", 0),
        tick_direction=record.get("tick_direction", ""),
        block_trade=record.get("block_trade", False),
        rpi=record.get("rpi", False),
        aggregated=record.get("aggregated", False),
    )
