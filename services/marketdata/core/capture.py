"""Capture files: raw exchange frames with their receive time, written by `marketdata record` and
replayed by the replay exchange.

Our own format is JSON lines. The first line is a header
    {"format":"marketdata-capture","version":1,"started_ns":...,"instruments":["binance-spot:BTCUSDT",...]}
then one line per received frame
    {"t":<receive ns>,"m":"<market key>","f":"<raw frame text>"}
The frame is kept as the exact text the exchange sent, so a replay is byte-identical.

`read_frames` also reads two formats of public recordings (shared/fixtures/recorded):
- cryptofeed's `*.ws.*` files: first line `<connect url> <-> <ts>`, then `<receive_ts_seconds>: <raw json>`;
  the market comes from the URL (stream.binance.com = binance-spot, fstream.binance.com = binance-futures,
  stream.bybit.com/v5/public/{spot,linear} = bybit-{spot,linear});
- `<receive_ts_ns> <raw json>` lines (the Bybit fixture); the market comes from the caller or the file name.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import orjson

from marketdata.core.instruments import InstrumentId, MarketKey

CAPTURE_FORMAT = "marketdata-capture"
CAPTURE_VERSION = 1

# A write() call only appends to memory; the buffer goes to the OS in one write once it reaches this
# size, so a caller on the event loop never waits for more than one page-cache write of this size.
DEFAULT_BUFFER_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One frame as it arrived: receive time (ns, our clock), its market and its exact text."""

    receive_ns: int
    market: MarketKey
    text: str


class CaptureWriter:
    """Appends frames to a capture file (our format), buffered so it can be used from asyncio."""

    def __init__(
        self,
        path: str | Path,
        instruments: Iterable[InstrumentId],
        *,
        started_ns: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        self.path = Path(path)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._limit = buffer_bytes
        self.frames_written = 0
        header = {
            "format": CAPTURE_FORMAT,
            "version": CAPTURE_VERSION,
            "started_ns": time.time_ns() if started_ns is None else started_ns,
            "instruments": [i.key for i in instruments],
        }
        self._file: IO[bytes] | None = self.path.open("wb")
        self._file.write(orjson.dumps(header) + b"\n")

    def write(self, receive_ns: int, market: MarketKey, text: str) -> None:
        if self._file is None:
            raise ValueError(f"capture {self.path} is closed")
        line = orjson.dumps({"t": receive_ns, "m": market.value, "f": text}) + b"\n"
        self._buffer.append(line)
        self._buffered += len(line)
        self.frames_written += 1
        if self._buffered >= self._limit:
            self.flush()

    def flush(self, fsync: bool = False) -> None:
        """Hand buffered lines to the OS; with fsync, also wait until they are on disk."""
        if self._file is None:
            return
        if self._buffer:
            self._file.write(b"".join(self._buffer))
            self._buffer.clear()
            self._buffered = 0
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is None:
            return
        self.flush()
        self._file.close()
        self._file = None

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_CRYPTOFEED_HEADER = re.compile(r"^(wss?://\S+) <-> \d+(\.\d+)?$")
_CRYPTOFEED_REST_HEADER = re.compile(r"^https?://\S+ -> ")
_NS_LINE = re.compile(r"^(\d{10,20}) (.*)$")


def read_frames(path: str | Path, market: MarketKey | None = None) -> Iterator[RecordedFrame]:
    """Yield the frames of a capture in file order; the format is detected from the first line.

    `market` names the market of a single-market recording whose format does not say it (the
    `<ns> <json>` lines) and overrides the one derived from a cryptofeed URL; for our own capture
    format it selects the frames of that market. Bad input raises ValueError naming file and line.
    """
    file = Path(path)
    try:
        handle = file.open("r", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise ValueError(f"{file}: cannot open: {exc.strerror}") from None
    with handle:
        lines = _numbered_lines(file, handle)
        first = next(lines, None)
        if first is None:
            return
        lineno, text = first
        if text.startswith("{"):
            yield from _read_capture(file, lineno, text, lines, market)
        elif match := _CRYPTOFEED_HEADER.match(text):
            derived = market or _market_from_url(file, lineno, match.group(1))
            yield from _read_cryptofeed(file, lines, derived)
        elif _CRYPTOFEED_REST_HEADER.match(text):
            raise ValueError(
                f"{file}:{lineno}: this is a REST capture (url -> ts: body), not WebSocket frames"
            )
        elif _NS_LINE.match(text):
            derived = market or _market_from_name(file)
            yield _ns_frame(file, lineno, text, derived)
            for lineno, text in lines:
                yield _ns_frame(file, lineno, text, derived)
        else:
            raise ValueError(
                f"{file}:{lineno}: unknown capture format (expected a {CAPTURE_FORMAT} header, "
                f"a cryptofeed '<url> <-> <ts>' line or '<receive_ns> <json>' lines)"
            )


def _numbered_lines(file: Path, handle: IO[str]) -> Iterator[tuple[int, str]]:
    """Non-blank lines without their line end, numbered from 1 as an editor shows them."""
    try:
        for lineno, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if text.strip():
                yield lineno, text
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_capture(
    file: Path,
    lineno: int,
    text: str,
    lines: Iterator[tuple[int, str]],
    market: MarketKey | None,
) -> Iterator[RecordedFrame]:
    header = _json_object(file, lineno, text)
    if header.get("format") != CAPTURE_FORMAT:
        raise ValueError(f"{file}:{lineno}: first line is not a {CAPTURE_FORMAT} header")
    if header.get("version") != CAPTURE_VERSION:
        raise ValueError(
            f"{file}:{lineno}: capture version {header.get('version')!r} is not supported "
            f"(this build reads version {CAPTURE_VERSION})"
        )
    for lineno, text in lines:
        record = _json_object(file, lineno, text)
        receive_ns, market_text, frame = record.get("t"), record.get("m"), record.get("f")
        if not isinstance(receive_ns, int) or isinstance(receive_ns, bool) or receive_ns < 0:
            raise ValueError(f"{file}:{lineno}: field 't' must be the receive time in ns (an integer)")
        if not isinstance(market_text, str):
            raise ValueError(f"{file}:{lineno}: field 'm' must be a market key such as 'binance-spot'")
        if not isinstance(frame, str):
            raise ValueError(f"{file}:{lineno}: field 'f' must be the frame text (a string)")
        try:
            frame_market = MarketKey.parse(market_text)
        except ValueError as exc:
            raise ValueError(f"{file}:{lineno}: {exc}") from None
        if market is None or frame_market == market:
            yield RecordedFrame(receive_ns, frame_market, frame)


def _read_cryptofeed(
    file: Path, lines: Iterator[tuple[int, str]], market: MarketKey
) -> Iterator[RecordedFrame]:
    for lineno, text in lines:
        stamp, sep, frame = text.partition(": ")
        if not sep or not frame:
            raise ValueError(f"{file}:{lineno}: expected '<receive_ts_seconds>: <frame>'")
        try:
            # Decimal keeps the recorded digits exact; a float would round them to ~100 ns.
            receive_ns = int(Decimal(stamp) * 1_000_000_000)
        except InvalidOperation:
            raise ValueError(f"{file}:{lineno}: receive time {stamp!r} is not a number of seconds") from None
        yield RecordedFrame(receive_ns, market, frame)


def _ns_frame(file: Path, lineno: int, text: str, market: MarketKey) -> RecordedFrame:
    match = _NS_LINE.match(text)
    if match is None or not match.group(2):
        raise ValueError(f"{file}:{lineno}: expected '<receive_ns> <frame>'")
    return RecordedFrame(int(match.group(1)), market, match.group(2))


def _json_object(file: Path, lineno: int, text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{file}:{lineno}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{file}:{lineno}: expected a JSON object")
    return value


def _market_from_url(file: Path, lineno: int, url: str) -> MarketKey:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.startswith("fstream") and "binance" in host:
        return MarketKey.BINANCE_FUTURES
    if "binance" in host:
        return MarketKey.BINANCE_SPOT
    if "bybit" in host:
        if parts.path.startswith("/v5/public/spot"):
            return MarketKey.BYBIT_SPOT
        if parts.path.startswith("/v5/public/linear"):
            return MarketKey.BYBIT_LINEAR
    raise ValueError(f"{file}:{lineno}: cannot tell the market from {url!r}; pass the market explicitly")


def _market_from_name(file: Path) -> MarketKey:
    name = file.name.lower()
    if "binance" in name:
        if "futures" in name or "fstream" in name or "usdm" in name:
            return MarketKey.BINANCE_FUTURES
        if "spot" in name:
            return MarketKey.BINANCE_SPOT
    else:
        if "linear" in name:
            return MarketKey.BYBIT_LINEAR
        if "spot" in name:
            return MarketKey.BYBIT_SPOT
    raise ValueError(
        f"{file}: cannot tell the market from the file name; name it with 'linear' or 'spot' "
        "(e.g. bybit-v5-linear-….jsonl) or pass the market explicitly"
    )
