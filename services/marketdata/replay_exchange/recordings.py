"""Replaying recorded files: one timeline per (file, market), paced by the recorded receive times.

A market's timeline starts when its first subscription arrives plus the start delay, so all of a
client's initial subscriptions land before the first frame. Gaps are divided by `speed` (0: as fast
as possible, yielding to the event loop between batches).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from marketdata.core.capture import RecordedFrame, read_frames
from marketdata.core.instruments import MarketKey, parse_symbol
from marketdata.replay_exchange import binance, bybit
from marketdata.replay_exchange.config import RecordingSource
from marketdata.replay_exchange.feeds import MarketFeed

# Frames due within this much time go out in the current batch instead of after a sleep.
EARLY_S = 0.001
# With speed 0, send this many frames between two yields to the event loop.
FAST_BATCH = 512


@dataclass
class RecordingTimeline:
    """The frames of one market in one file."""

    path: Path
    market: MarketKey
    source_market: MarketKey | None  # what the caller said (passed back to read_frames)
    frames: int = 0
    symbols: set[str] = field(default_factory=set)
    played: int = 0
    passes: int = 0
    done: bool = False

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "market": self.market.value,
            "frames": self.frames,
            "symbols": sorted(self.symbols),
            "played": self.played,
            "passes": self.passes,
            "done": self.done,
        }

    def read(self) -> Iterator[RecordedFrame]:
        for frame in read_frames(self.path, self.source_market):
            if frame.market == self.market:
                yield frame


def scan(source: RecordingSource) -> list[RecordingTimeline]:
    """Read a file once to learn its markets and symbols (bad files fail here, at start-up)."""
    timelines: dict[MarketKey, RecordingTimeline] = {}
    for frame in read_frames(source.path, source.market):
        timeline = timelines.get(frame.market)
        if timeline is None:
            timeline = timelines[frame.market] = RecordingTimeline(source.path, frame.market, source.market)
        timeline.frames += 1
        symbol = _frame_symbol(frame)
        if symbol is not None:
            timeline.symbols.add(symbol)
    return list(timelines.values())


def _frame_symbol(frame: RecordedFrame) -> str | None:
    if frame.market.is_binance:
        split = binance.split_combined(frame.text)
        if split is not None:
            name = split[0]
        else:
            try:
                name = binance.derive_stream(orjson.loads(frame.text)) or ""
            except orjson.JSONDecodeError:
                return None
        head = name.partition("@")[0]
    else:
        topic = bybit.frame_topic(frame.text)
        if topic is None:
            return None
        head = bybit.topic_symbol(topic)
    if not head or head.startswith("!"):
        return None
    try:
        return parse_symbol(head)
    except ValueError:
        return None


async def play(
    timeline: RecordingTimeline,
    feed: MarketFeed,
    *,
    speed: float,
    loop: bool,
    start_delay: float,
    flush: Callable[[], None],
) -> None:
    """Wait for the market's first subscription, then replay the timeline (again and again with loop)."""
    await feed.hub.first_subscription.wait()
    await asyncio.sleep(start_delay)
    clock = asyncio.get_running_loop()
    since_yield = 0
    while True:
        timeline.passes += 1
        keep_history = timeline.passes == 1
        first_ns: int | None = None
        started = clock.time()
        for frame in timeline.read():
            if first_ns is None:
                first_ns = frame.receive_ns
            if speed > 0:
                due = started + (frame.receive_ns - first_ns) / 1e9 / speed
                wait = due - clock.time()
                if wait > EARLY_S:
                    flush()
                    await asyncio.sleep(wait)
            elif since_yield >= FAST_BATCH:
                flush()
                since_yield = 0
                await asyncio.sleep(0)
            feed.publish_recorded(frame, keep_history)
            timeline.played += 1
            since_yield += 1
        flush()
        if not loop or first_ns is None:
            break
        await asyncio.sleep(0)  # a short file looped at speed 0 must not starve the event loop
    timeline.done = True
