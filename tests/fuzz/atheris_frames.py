"""Coverage-guided fuzzing of the exchange-frame parsers with atheris (libFuzzer), for long hunts
beyond the hypothesis tests beside it. Not collected by pytest; run it from the repository root:

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python -m tests.fuzz.atheris_frames -max_total_time=600 -rss_limit_mb=4096

Each input's first byte picks the parser (one per market), the rest is the frame as received. The
corpus (default .fuzz/frames/, or the first non-flag argument) is seeded with the templates of
test_frames and with the real recorded frames of ../shared/fixtures/recorded, their symbols renamed
to the one the parsers collect. A finding is any exception other than FrameError, or a parsed frame
that breaks test_frames.check (the promise to the rest of the collector); libFuzzer then writes the
input to crash-<sha1> and stops. Replay one with `python -m tests.fuzz.atheris_frames crash-<sha1>`.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from marketdata.collector import binance, bybit, frames  # noqa: F401  (instrumented for coverage)

from marketdata.collector.frames import FrameError

from .test_frames import PARSERS, SYMBOL, check, dumps, templates

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT.parent / "shared" / "fixtures" / "recorded"
SPOT, FUTURES, BYBIT_SPOT, BYBIT_LINEAR = range(4)  # the order of PARSERS (MarketKey's)


def one_input(data: bytes) -> None:
    if not data:
        return
    parser = PARSERS[data[0] % len(PARSERS)]
    try:
        frame = parser.parse(data[1:], time.time_ns())
    except FrameError as exc:
        assert str(exc), "a refusal must say why"
        return
    check(frame)


def _recorded() -> list[tuple[int, str]]:
    """(parser index, frame) from the recordings, symbols renamed to SYMBOL so that they get past the
    instrument lookup."""
    out: list[tuple[int, str]] = []
    for name, index in (("cryptofeed-BINANCE.ws.1.0", SPOT), ("cryptofeed-BINANCE_FUTURES.ws.1.0", FUTURES)):
        path = RECORDED / name
        if not path.exists():
            continue
        lines = path.read_text().splitlines()[1:200]
        for line in lines:
            _, _, frame = line.partition(": ")
            frame = re.sub(r'"s":"[A-Z0-9]+"', f'"s":"{SYMBOL}"', frame)
            out.append((index, re.sub(r'"stream":"[a-z0-9]+@', f'"stream":"{SYMBOL.lower()}@', frame)))
    bybit_file = RECORDED / "bybit-v5-linear-2025-09-25.jsonl"
    if bybit_file.exists():
        for line in bybit_file.read_text().splitlines()[:200]:
            _, _, frame = line.partition(" ")
            out += [(BYBIT_LINEAR, frame), (BYBIT_SPOT, frame)]
    return out


def seed(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    entries = [(i, dumps(t)) for i, parser in enumerate(PARSERS) for t in templates(parser)] + _recorded()
    for n, (index, frame) in enumerate(entries):
        (corpus / f"seed-{n:04d}").write_bytes(bytes([index]) + frame.encode())


def main() -> None:
    args = sys.argv[1:]
    given = [a for a in args if not a.startswith("-")]
    if not given:
        corpus = ROOT / ".fuzz" / "frames"
        seed(corpus)
        args.append(str(corpus))
    elif Path(given[0]).is_dir():
        seed(Path(given[0]))
    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
