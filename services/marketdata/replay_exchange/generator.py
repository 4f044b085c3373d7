"""The seeded synthetic trade generator.

Each instrument has its own random stream (seeded from the run seed and the instrument key), so the
sequence of ids, prices, sizes and sides is the same every run whatever the timing; only the trade
times (the real wall clock at generation) differ.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange.specs import InstrumentSpec, format_units
from marketdata.replay_exchange.trades import Trade

SIDE_PERSISTENCE = 0.7  # chance the next aggressor is on the same side (order flow comes in runs)
MOVE_PROBABILITY = 0.35  # chance a trade prints at a new price
SIZE_SIGMA = 1.0  # log-normal spread of trade sizes
# Most trades on busy books print within a few bp of the last one.
MOVE_SIGMA_FRACTION = 2e-5
REVERSION = 0.0005  # pull toward the start price, so long runs stay on a plausible range


class InstrumentWalk:
    """Random walk of one instrument on its tick grid, with exchange-shaped ids."""

    def __init__(self, spec: InstrumentSpec, seed: int) -> None:
        self.spec = spec
        self.market = spec.instrument.market
        # A str seed is hashed with SHA-512 by `random`, identically in every process.
        self.rng = random.Random(f"{seed}:{spec.instrument.key}")
        rng = self.rng
        self.start_ticks = int(spec.start_price / spec.tick)
        self.price_ticks = self.start_ticks
        self.sigma_ticks = max(1.0, float(spec.start_price) * MOVE_SIGMA_FRACTION / float(spec.tick))
        self.size_mu = math.log(max(1.0, float(spec.typical_qty / spec.step)))
        self.is_buy = rng.random() < 0.5
        self.last_move_up = True
        self.next_int_id = rng.randrange(10**8, 10**10)  # Binance ids: consecutive per symbol
        self.next_spot_id = rng.randrange(2 * 10**18, 3 * 10**18)  # Bybit spot: rising, not consecutive
        self.seq = rng.randrange(10**10, 10**11)  # Bybit cross sequence
        self.previous_ticks = self.price_ticks
        self.lag_ms = 0  # `lag` fault: trades are stamped this far in the past
        self.tick_units = spec.tick_units
        self.step_units = spec.step_units
        self.price_decimals = spec.price_decimals
        self.qty_decimals = spec.qty_decimals

    def next_trades(self, count: int, time_ms: int) -> list[Trade]:
        # Hot loop (hundreds of thousands of trades a second): attributes are hoisted into locals.
        rng = self.rng
        random_, gauss, exp = rng.random, rng.gauss, math.exp
        sigma, size_mu, start = self.sigma_ticks, self.size_mu, self.start_ticks
        tick_units, step_units = self.tick_units, self.step_units
        price_decimals, qty_decimals = self.price_decimals, self.qty_decimals
        linear = self.market == MarketKey.BYBIT_LINEAR
        bybit_spot = self.market == MarketKey.BYBIT_SPOT
        out: list[Trade] = []
        time_ms -= self.lag_ms
        price_ticks = self.price_ticks
        is_buy = self.is_buy
        seq = self.seq
        for _ in range(count):
            if random_() >= SIDE_PERSISTENCE:
                is_buy = not is_buy
            if random_() < MOVE_PROBABILITY:
                move = int(abs(gauss(0.0, sigma)) + 0.5) or 1
                move += int((start - price_ticks) * REVERSION)
                # Buyers lift offers, sellers hit bids: the price moves with the aggressor.
                price_ticks = max(1, price_ticks + (move if is_buy else -move))
            steps = int(exp(size_mu + SIZE_SIGMA * gauss(0.0, 1.0)) + 0.5) or 1
            price = format_units(price_ticks * tick_units, price_decimals)
            qty = format_units(steps * step_units, qty_decimals)
            direction = ""
            trade_id: int | str
            if linear:
                direction = self._tick_direction(price_ticks)
                trade_id = _uuid_text(rng.getrandbits(128))
            elif bybit_spot:
                self.next_spot_id += 1 + int(random_() * 39)
                trade_id = str(self.next_spot_id)
            else:
                trade_id = self.next_int_id
                self.next_int_id += 1
            seq += 1 + int(random_() * 63)
            out.append(Trade(trade_id, price, qty, is_buy, time_ms, seq, direction))
        self.price_ticks = price_ticks
        self.is_buy = is_buy
        self.seq = seq
        return out

    def drift(self, bps: float) -> int:
        """Move the walk (and the level it reverts to) by `bps`; returns the move in ticks."""
        ticks = round(self.start_ticks * bps / 10_000)
        self.start_ticks = max(1, self.start_ticks + ticks)
        self.price_ticks = max(1, self.price_ticks + ticks)
        return ticks

    def _tick_direction(self, price_ticks: int) -> str:
        # Bybit `L`: compare with the previous trade; unchanged prints keep the last direction.
        previous = self.previous_ticks
        self.previous_ticks = price_ticks
        if price_ticks > previous:
            self.last_move_up = True
            return "PlusTick"
        if price_ticks < previous:
            self.last_move_up = False
            return "MinusTick"
        return "ZeroPlusTick" if self.last_move_up else "ZeroMinusTick"


def _uuid_text(bits: int) -> str:
    """A version-5-looking UUID from 128 seeded bits (Bybit linear ids look like 2a74ac78-691c-5b54-...)."""
    text = f"{bits:032x}"
    variant = "89ab"[int(text[16], 16) & 3]
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{variant}{text[17:20]}-{text[20:32]}"


@dataclass
class GeneratorSlot:
    """Scheduling state of one instrument in the generator."""

    walk: InstrumentWalk
    rate: float  # trades per second
    max_trades: int | None
    generated: int = 0
    carry: float = 0.0  # fractional trades due, carried to the next tick
    started_at: float | None = None  # loop time it starts producing; None until started

    @property
    def done(self) -> bool:
        return self.max_trades is not None and self.generated >= self.max_trades


class TradeGenerator:
    """Decides which trades are due on each tick, across instruments."""

    # Never catch up more than this much time in one tick (after a pause or a busy loop).
    MAX_CATCH_UP_S = 0.25

    def __init__(
        self,
        specs: list[InstrumentSpec],
        *,
        rate: float,
        seed: int,
        max_trades: int | None,
    ) -> None:
        share = rate / len(specs) if specs else 0.0
        self.slots: dict[InstrumentId, GeneratorSlot] = {
            spec.instrument: GeneratorSlot(InstrumentWalk(spec, seed), share, max_trades) for spec in specs
        }
        self.paused = False
        self.last_tick: float | None = None

    @property
    def rate(self) -> float:
        return sum(slot.rate for slot in self.slots.values())

    def set_rate(self, rate: float, instrument: InstrumentId | None = None) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a finite number >= 0, got {rate}")
        if instrument is not None:
            self.slots[instrument].rate = rate
            return
        share = rate / len(self.slots) if self.slots else 0.0
        for slot in self.slots.values():
            slot.rate = share

    def busy(self) -> bool:
        """True when some instrument is (or is about to start) producing trades."""
        return not self.paused and any(
            s.started_at is not None and not s.done and s.rate > 0 for s in self.slots.values()
        )

    def start(self, instrument: InstrumentId, at: float) -> None:
        slot = self.slots.get(instrument)
        if slot is not None and slot.started_at is None:
            slot.started_at = at

    def tick(self, now: float) -> list[tuple[InstrumentId, list[Trade]]]:
        """The trades due since the previous tick, per instrument, stamped with the wall clock."""
        elapsed = 0.0 if self.last_tick is None else min(now - self.last_tick, self.MAX_CATCH_UP_S)
        self.last_tick = now
        if self.paused or elapsed <= 0:
            return []
        time_ms = time.time_ns() // 1_000_000
        out: list[tuple[InstrumentId, list[Trade]]] = []
        for instrument, slot in self.slots.items():
            if slot.started_at is None or now < slot.started_at or slot.done:
                continue
            due = slot.carry + slot.rate * min(elapsed, now - slot.started_at)
            count = int(due)
            slot.carry = due - count
            if slot.max_trades is not None:
                count = min(count, slot.max_trades - slot.generated)
            if count <= 0:
                continue
            slot.generated += count
            out.append((instrument, slot.walk.next_trades(count, time_ms)))
        return out
