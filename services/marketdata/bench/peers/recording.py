"""The recorded Binance sessions (/work/shared/fixtures/recorded, cryptofeed's sample-data format) as
raw text, read the same way by `marketdata bench book` and by the cryptofeed script beside it.

Standard library only: cryptofeed_book.py imports it as `recording` under the peer virtualenv's
interpreter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

# The recordings, by market, as (websocket frames, REST snapshots) file names.
RECORDINGS = {
    "spot": ("cryptofeed-BINANCE.ws.1.0", "cryptofeed-BINANCE.http.0.0"),
    "futures": ("cryptofeed-BINANCE_FUTURES.ws.1.0", "cryptofeed-BINANCE_FUTURES.http.0.0"),
}


def load_depth(ws: Path, http: Path) -> tuple[list[str], dict[str, str]]:
    """The depthUpdate frames' raw text in received order (a `<receive s>: <frame>` line each, after the
    connect line), and each symbol's raw REST snapshot body (a `<url> -> <receive s>: <body>` line)."""
    frames = []
    for line in ws.read_text().splitlines()[1:]:
        text = line.partition(": ")[2]
        if '"depthUpdate"' in text:
            frames.append(text)
    snapshots = {}
    for line in http.read_text().splitlines():
        url, _, rest = line.partition(" -> ")
        symbol = re.search(r"symbol=(\w+)", url)
        if symbol:
            snapshots[symbol[1]] = rest.partition(": ")[2]
    if not frames or not snapshots:
        raise ValueError(f"no depth frames in {ws} or no snapshots in {http}")
    return frames, snapshots


def best_of(
    one_pass: Callable[[], tuple[float, float, int]], seconds: float, repeats: int
) -> tuple[int, float, float, int]:
    """(level updates, wall s, CPU s, passes) of the fastest of `repeats` repeats, each of enough
    passes over the stream to take about seconds / repeats. `one_pass()` returns its (wall s, CPU s,
    level updates), the same number of level updates every time; two untimed passes come first, a
    warm-up and the one the pass count is taken from."""
    per_pass = one_pass()[2]
    if per_pass == 0:
        raise ValueError("no level update applied: the recording does not fit its snapshots")
    calibrate = one_pass()[0]
    passes = max(1, math.ceil(seconds / repeats / max(calibrate, 1e-6)))
    best: tuple[int, float, float, int] | None = None
    for _ in range(repeats):
        applied, wall, cpu = 0, 0.0, 0.0
        for _ in range(passes):
            w, c, n = one_pass()
            applied, wall, cpu = applied + n, wall + w, cpu + c
        if applied != per_pass * passes:
            raise AssertionError(f"{applied} level updates over {passes} passes, expected {per_pass} each")
        if best is None or applied / wall > best[0] / best[1]:
            best = (applied, wall, cpu, passes)
    assert best is not None
    return best
