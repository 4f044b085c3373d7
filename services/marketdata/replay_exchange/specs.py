"""Contract specifications of the served instruments: tick size, lot step and how the exchange prints them.

Prices and sizes are kept as integers (ticks and lot steps) and printed with the exchange's decimals, so
every number on the wire is exact (Binance spot prints 8 decimals: "65000.10000000"; USD-M and Bybit
print the contract's own decimals: "65000.10", "0.012").
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from decimal import Decimal

from marketdata.core.instruments import InstrumentId, MarketKey

# Binance spot prints every price and quantity with 8 decimals (the asset precision).
BINANCE_SPOT_DECIMALS = 8

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "DAI")


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    instrument: InstrumentId
    tick: Decimal  # price grid (PRICE_FILTER tickSize / priceFilter.tickSize)
    step: Decimal  # size grid (LOT_SIZE stepSize / lotSizeFilter.qtyStep)
    price_decimals: int  # decimals printed on the wire
    qty_decimals: int
    start_price: Decimal
    typical_qty: Decimal  # median trade size of the synthetic generator

    def __post_init__(self) -> None:
        for name, value, decimals in (
            ("tick", self.tick, self.price_decimals),
            ("step", self.step, self.qty_decimals),
        ):
            if value <= 0 or (value * 10**decimals) % 1 != 0:
                raise ValueError(f"{self.instrument}: {name} {value} does not fit {decimals} decimals")

    @property
    def base_asset(self) -> str:
        return split_symbol(self.instrument.symbol)[0]

    @property
    def quote_asset(self) -> str:
        return split_symbol(self.instrument.symbol)[1]

    @property
    def tick_units(self) -> int:
        """One tick in units of the last printed price decimal."""
        return int(self.tick * 10**self.price_decimals)

    @property
    def step_units(self) -> int:
        return int(self.step * 10**self.qty_decimals)

    def format_price(self, ticks: int) -> str:
        return format_units(ticks * self.tick_units, self.price_decimals)

    def format_qty(self, steps: int) -> str:
        return format_units(steps * self.step_units, self.qty_decimals)


def format_units(units: int, decimals: int) -> str:
    """Integer units of 10**-decimals as the exchange prints them ("65000.10")."""
    if decimals == 0:
        return str(units)
    scale = 10**decimals
    return f"{units // scale}.{units % scale:0{decimals}d}"


def split_symbol(symbol: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4] or symbol, symbol[-4:]


# (tick, step, price decimals, qty decimals, start price, typical qty) of well-known contracts, as the
# exchanges list them; Binance spot decimals are always 8.
_KNOWN: dict[tuple[MarketKey, str], tuple[str, str, int, int, str, str]] = {
    (MarketKey.BINANCE_SPOT, "BTCUSDT"): ("0.01", "0.00001", 8, 8, "65000", "0.002"),
    (MarketKey.BINANCE_SPOT, "ETHUSDT"): ("0.01", "0.0001", 8, 8, "3500", "0.05"),
    (MarketKey.BINANCE_SPOT, "SOLUSDT"): ("0.01", "0.001", 8, 8, "150", "2"),
    (MarketKey.BINANCE_SPOT, "BNBUSDT"): ("0.01", "0.001", 8, 8, "600", "0.5"),
    (MarketKey.BINANCE_FUTURES, "BTCUSDT"): ("0.10", "0.001", 2, 3, "65000", "0.01"),
    (MarketKey.BINANCE_FUTURES, "ETHUSDT"): ("0.01", "0.001", 2, 3, "3500", "0.1"),
    (MarketKey.BINANCE_FUTURES, "SOLUSDT"): ("0.01", "1", 2, 0, "150", "5"),
    (MarketKey.BINANCE_FUTURES, "BNBUSDT"): ("0.01", "0.01", 2, 2, "600", "0.5"),
    (MarketKey.BYBIT_LINEAR, "BTCUSDT"): ("0.10", "0.001", 2, 3, "65000", "0.01"),
    (MarketKey.BYBIT_LINEAR, "ETHUSDT"): ("0.01", "0.01", 2, 2, "3500", "0.1"),
    (MarketKey.BYBIT_LINEAR, "SOLUSDT"): ("0.010", "0.1", 3, 1, "150", "5"),
    (MarketKey.BYBIT_SPOT, "BTCUSDT"): ("0.01", "0.000001", 2, 6, "65000", "0.002"),
    (MarketKey.BYBIT_SPOT, "ETHUSDT"): ("0.01", "0.00001", 2, 5, "3500", "0.05"),
    (MarketKey.BYBIT_SPOT, "SOLUSDT"): ("0.01", "0.001", 2, 3, "150", "2"),
}


def spec_for(instrument: InstrumentId) -> InstrumentSpec:
    """The spec of a well-known contract, or a plausible one derived from the symbol (same every run)."""
    known = _KNOWN.get((instrument.market, instrument.symbol))
    if known is not None:
        tick, step, price_decimals, qty_decimals, start, typical = known
        return InstrumentSpec(
            instrument,
            Decimal(tick),
            Decimal(step),
            price_decimals,
            qty_decimals,
            Decimal(start),
            Decimal(typical),
        )
    return _derived_spec(instrument)


def _derived_spec(instrument: InstrumentId) -> InstrumentSpec:
    # crc32, not hash(): Python salts str hashes per process and specs must not change between runs.
    digest = zlib.crc32(instrument.symbol.encode())
    start = Decimal(1 + (digest >> 8) % 9) * Decimal(10) ** (digest % 5 - 1)  # 0.1 .. 90000
    magnitude = math.floor(math.log10(float(start)))
    tick = Decimal(10) ** (magnitude - 4)  # five significant digits, like most listings
    typical = Decimal(200) / start  # about 200 quote units per trade
    step = Decimal(10) ** min(0, math.floor(math.log10(float(typical))) - 2)
    typical = (typical / step).to_integral_value() * step
    if instrument.market == MarketKey.BINANCE_SPOT:
        price_decimals = qty_decimals = BINANCE_SPOT_DECIMALS
        tick = max(tick, Decimal("0.00000001"))
        step = max(step, Decimal("0.00000001"))
    else:
        price_decimals, qty_decimals = _decimals(tick), _decimals(step)
    return InstrumentSpec(instrument, tick, step, price_decimals, qty_decimals, start, typical)


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0
