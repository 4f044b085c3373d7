"""Instrument identity: the market keys, instrument keys ("binance-spot:BTCUSDT") and their proto form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from marketdata.v1 import common_pb2


class MarketKey(StrEnum):
    """The four collected markets. The value is the text used in configuration and instrument keys."""

    BINANCE_SPOT = "binance-spot"
    BINANCE_FUTURES = "binance-futures"
    BYBIT_SPOT = "bybit-spot"
    BYBIT_LINEAR = "bybit-linear"

    @property
    def exchange(self) -> common_pb2.Exchange:
        if self in (MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES):
            return common_pb2.EXCHANGE_BINANCE
        return common_pb2.EXCHANGE_BYBIT

    @property
    def market(self) -> common_pb2.Market:
        if self in (MarketKey.BINANCE_SPOT, MarketKey.BYBIT_SPOT):
            return common_pb2.MARKET_SPOT
        return common_pb2.MARKET_LINEAR

    @property
    def is_binance(self) -> bool:
        return bool(self.exchange == common_pb2.EXCHANGE_BINANCE)

    @classmethod
    def from_proto(cls, exchange: common_pb2.Exchange, market: common_pb2.Market) -> MarketKey:
        for key in cls:
            if key.exchange == exchange and key.market == market:
                return key
        raise ValueError(
            f"no market for exchange {common_pb2.Exchange.Name(exchange)} "
            f"and market {common_pb2.Market.Name(market)}"
        )

    @classmethod
    def parse(cls, text: str) -> MarketKey:
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown market {text!r}; known markets: {known}") from None


# Exchange symbols: upper-case letters and digits, with '_' or '-' in dated contracts
# (Binance BTCUSDT_251226, Bybit BTC-26DEC25).
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,39}$")


@dataclass(frozen=True, slots=True)
class InstrumentId:
    """One symbol on one market; hashable, used as the partition key everywhere."""

    market: MarketKey
    symbol: str

    @property
    def key(self) -> str:
        return f"{self.market.value}:{self.symbol}"

    def __str__(self) -> str:
        return self.key

    def to_proto(self) -> common_pb2.Instrument:
        return common_pb2.Instrument(
            exchange=self.market.exchange, market=self.market.market, symbol=self.symbol
        )

    @classmethod
    def from_proto(cls, msg: common_pb2.Instrument) -> InstrumentId:
        """Build from the proto form; raises ValueError naming what is wrong."""
        if msg.exchange == common_pb2.EXCHANGE_UNSPECIFIED:
            raise ValueError("exchange is unspecified")
        if msg.market == common_pb2.MARKET_UNSPECIFIED:
            raise ValueError("market is unspecified")
        market = MarketKey.from_proto(msg.exchange, msg.market)
        return cls(market, parse_symbol(msg.symbol))

    @classmethod
    def parse(cls, text: str) -> InstrumentId:
        """Parse "market:SYMBOL"; raises ValueError naming what is wrong."""
        market_text, sep, symbol_text = text.strip().partition(":")
        if not sep:
            raise ValueError(f"instrument {text!r} must be market:SYMBOL, e.g. binance-spot:BTCUSDT")
        return cls(MarketKey.parse(market_text), parse_symbol(symbol_text))


def parse_symbol(text: str) -> str:
    symbol = text.strip().upper()
    if not _SYMBOL.match(symbol):
        raise ValueError(f"symbol {text!r} is not an exchange symbol (letters and digits, e.g. BTCUSDT)")
    return symbol


def parse_instrument_list(text: str) -> tuple[InstrumentId, ...]:
    """Parse a comma-separated list; duplicates are an error (they would double-subscribe)."""
    result: list[InstrumentId] = []
    for position, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            continue
        try:
            instrument = InstrumentId.parse(entry)
        except ValueError as exc:
            raise ValueError(f"entry {position} ({entry.strip()!r}): {exc}") from None
        if instrument in result:
            raise ValueError(f"entry {position} ({entry.strip()!r}) is listed twice")
        result.append(instrument)
    return tuple(result)
