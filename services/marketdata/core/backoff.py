"""Jittered exponential backoff ("full jitter"): spreads reconnects so that many clients cut at
once (an exchange restart, Binance's 24 h mark) do not come back in lockstep."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self._initial = initial_s
        self._max = max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay(self) -> float:
        """A delay drawn uniformly from [initial/2, min(max, initial * 2**attempt)]."""
        ceiling = min(self._max, self._initial * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(min(self._initial / 2, ceiling), ceiling)

    def reset(self) -> None:
        self._attempt = 0
