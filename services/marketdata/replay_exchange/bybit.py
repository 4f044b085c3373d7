"""Bybit v5 public WebSocket protocol facts: topics, acknowledgements and message shapes
(see shared/reference/collectors.md section 3c)."""

from __future__ import annotations

import base64
import os
import re
import uuid

import orjson

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange.trades import Trade

# Bybit caps publicTrade pushes at 1024 trades; bigger batches are split over several messages.
MAX_TRADES_PER_FRAME = 1024
SPOT_MAX_ARGS = 10

_ORDERBOOK_DEPTHS = ("1", "50", "200", "1000")
_KLINE_INTERVALS = ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9-]*$")


def trade_topic(symbol: str) -> str:
    return f"publicTrade.{symbol}"


def topic_symbol(topic: str) -> str:
    return topic.rsplit(".", 1)[-1]


def check_topic(topic: str, market: MarketKey, symbols: set[str]) -> str | None:
    """None if the topic can be subscribed, else the ret_msg Bybit answers."""
    handler, _, symbol = topic.rpartition(".")
    if not _known_handler(handler, market) or not _SYMBOL.match(symbol):
        return f"error:handler not found,topic:{topic}"
    if symbol not in symbols:
        # Observed answers: spot names the topic in brackets; linear has no handler for it.
        if market == MarketKey.BYBIT_SPOT:
            return f"Invalid symbol :[{topic}]"
        return f"error:handler not found,topic:{topic}"
    return None


def _known_handler(handler: str, market: MarketKey) -> bool:
    if handler in ("publicTrade", "tickers"):
        return True
    head, _, arg = handler.partition(".")
    if head == "orderbook":
        return arg in _ORDERBOOK_DEPTHS or (arg == "full" and market == MarketKey.BYBIT_SPOT)
    if head == "kline":
        return arg in _KLINE_INTERVALS
    return handler == "allLiquidation" and market == MarketKey.BYBIT_LINEAR


def new_conn_id(market: MarketKey) -> str:
    """Connection ids look like the real ones: a UUID on spot, `<20 chars>-<4 chars>` on linear."""
    if market == MarketKey.BYBIT_SPOT:
        return str(uuid.uuid4())
    text = base64.b32encode(os.urandom(15)).decode().lower()  # 24 characters
    return f"{text[:20]}-{text[20:24]}"


def response(
    market: MarketKey, success: bool, ret_msg: str, conn_id: str, op: str, req_id: str | None
) -> bytes:
    """An answer to subscribe/unsubscribe/ping. Linear always carries req_id ("" when not sent);
    spot carries it only when the client sent one."""
    body: dict[str, object] = {"success": success, "ret_msg": ret_msg, "conn_id": conn_id}
    if market == MarketKey.BYBIT_LINEAR:
        body["req_id"] = req_id or ""
    elif req_id is not None:
        body["req_id"] = req_id
    body["op"] = op
    return orjson.dumps(body)


def ack_message(market: MarketKey, op: str) -> str:
    """ret_msg of a successful subscribe/unsubscribe: the op on spot, empty on linear."""
    return op if market == MarketKey.BYBIT_SPOT else ""


def trade_frame(market: MarketKey, symbol: str, trades: list[Trade], ts_ms: int) -> bytes:
    """A publicTrade push; trades ascend by time; spot has no tick direction `L`."""
    if market == MarketKey.BYBIT_LINEAR:
        data = [
            {
                "T": t.time_ms,
                "s": symbol,
                "S": "Buy" if t.is_buy else "Sell",
                "v": t.qty,
                "p": t.price,
                "L": t.tick_direction,
                "i": t.trade_id,
                "BT": False,
                "RPI": False,
                "seq": t.bybit_seq,
            }
            for t in trades
        ]
    else:
        data = [
            {
                "T": t.time_ms,
                "s": symbol,
                "S": "Buy" if t.is_buy else "Sell",
                "v": t.qty,
                "p": t.price,
                "i": t.trade_id,
                "BT": False,
                "RPI": False,
                "seq": t.bybit_seq,
            }
            for t in trades
        ]
    return orjson.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts_ms, "data": data})


_TOPIC_HEAD = '{"topic":"'


def frame_topic(text: str) -> str | None:
    """The topic of a pushed frame as Bybit writes it (`{"topic":"..."` first), else None."""
    if text.startswith(_TOPIC_HEAD):
        end = text.find('"', len(_TOPIC_HEAD))
        if end > 0:
            return text[len(_TOPIC_HEAD) : end]
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    topic = value.get("topic") if isinstance(value, dict) else None
    return topic if isinstance(topic, str) else None


def trades_from_frame(value: object) -> list[Trade]:
    """Trades of a recorded publicTrade push (for the REST history); skips malformed items."""
    out: list[Trade] = []
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, list):
        return out
    for item in data:
        if not isinstance(item, dict):
            continue
        try:
            out.append(
                Trade(
                    str(item["i"]),
                    str(item["p"]),
                    str(item["v"]),
                    item["S"] == "Buy",
                    int(item["T"]),
                    int(item.get("seq", 0)),
                    str(item.get("L", "")),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out
