"""Trades as the replay exchange keeps them: one bounded tape per instrument that the REST endpoints,
the control API and the WebSocket fan-out all read."""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal

from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.specs import InstrumentSpec


class Trade:
    """One trade with its wire text already formatted (prices and sizes exactly as the exchange prints)."""

    __slots__ = (
        "bybit_seq",
        "is_buy",
        "price",
        "qty",
        "sent",
        "sent_ns",
        "tick_direction",
        "time_ms",
        "trade_id",
    )

    def __init__(
        self,
        trade_id: int | str,
        price: str,
        qty: str,
        is_buy: bool,
        time_ms: int,
        bybit_seq: int = 0,
        tick_direction: str = "",
    ) -> None:
        self.trade_id = trade_id
        self.price = price
        self.qty = qty
        self.is_buy = is_buy  # aggressor (taker) side: Binance m=true means the taker SOLD
        self.time_ms = time_ms
        self.bybit_seq = bybit_seq
        self.tick_direction = tick_direction
        self.sent = False  # went out on WebSocket to at least one connection
        self.sent_ns = 0  # wall clock when it was first queued for sending (latency benchmarks)

    def quote_qty(self) -> str:
        """price x qty, exact, without trailing zeros (Binance prints "48.000012")."""
        return f"{(Decimal(self.price) * Decimal(self.qty)).normalize():f}"

    def to_control(self) -> dict[str, object]:
        return {
            "id": self.trade_id,
            "price": self.price,
            "size": self.qty,
            "side": "buy" if self.is_buy else "sell",
            "time": self.time_ms,
            "sent": self.sent,
            "sent_ns": self.sent_ns,
        }


class Tape:
    """The trades of one instrument (bounded: the newest `capacity`) and its counters."""

    def __init__(self, spec: InstrumentSpec, capacity: int) -> None:
        self.spec = spec
        self.capacity = capacity
        self._trades: list[Trade] = []
        self.total = 0  # trades ever appended (generated or recorded)
        self.trades_sent = 0  # trades that went out on WebSocket
        self.frames_sent = 0  # frames written to connections (one per receiving connection)
        self.skipped = 0  # trades withheld from WebSocket by a skip fault

    @property
    def instrument(self) -> InstrumentId:
        return self.spec.instrument

    def append(self, trade: Trade) -> None:
        self._trades.append(trade)
        self.total += 1
        self._trim()

    def extend(self, trades: list[Trade]) -> None:
        self._trades.extend(trades)
        self.total += len(trades)
        self._trim()

    def _trim(self) -> None:
        # Trim in chunks (amortised O(1)) and keep exactly the newest `capacity` visible.
        if len(self._trades) > self.capacity + max(1024, self.capacity // 2):
            del self._trades[: len(self._trades) - self.capacity]

    def _window_start(self) -> int:
        return max(0, len(self._trades) - self.capacity)

    @property
    def evicted(self) -> int:
        return self.total - (len(self._trades) - self._window_start())

    def all(self) -> list[Trade]:
        return self._trades[self._window_start() :]

    def latest(self, limit: int) -> list[Trade]:
        """The newest `limit` trades, oldest first."""
        start = max(self._window_start(), len(self._trades) - limit)
        return self._trades[start:]

    def from_id(self, from_id: int, limit: int) -> list[Trade]:
        """Up to `limit` trades with integer id >= from_id, oldest first (Binance ids ascend)."""
        start = self._window_start()
        index = bisect_left(self._trades, from_id, lo=start, key=_int_id)
        return self._trades[index : index + limit]

    def last(self) -> Trade | None:
        return self._trades[-1] if self._trades else None


def _int_id(trade: Trade) -> int:
    return trade.trade_id if isinstance(trade.trade_id, int) else int(trade.trade_id)
