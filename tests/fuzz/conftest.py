"""Fuzzing budget: modest and derandomized by default so CI stays quick and reproducible;
`MARKETDATA_FUZZ_SCALE=N` multiplies every test's examples and randomizes them for a long hunt
(docs/reliability.md)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Each test passes its CI-sized example count; the environment variable scales every test alike.
SCALE = float(os.environ.get("MARKETDATA_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """Hypothesis settings for one fuzz test: `examples` in CI, times MARKETDATA_FUZZ_SCALE otherwise."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=SCALE == 1,  # CI: the same examples every run, so a red build is reproducible
    )
