"""Coverage of an analytics answer: whole minutes expected and covered, and the gaps we know of.

Shared by the volume-profile and order-flow services, whose answers carry the same figures
(docs/volume-profile.md, "Coverage"). Known gaps are: the part of a range before an instrument's oldest
stored footprint (or all of it when nothing is stored and the live stream does not cover it), the
collector's trade-id gaps that are not repaired (being repaired or unrepaired), and the future. Both
lookups are cached briefly, so answering costs no extra round trip per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketdata.core.bar_sources import LiveTrades, StorageSource
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import volume_profile_service_pb2 as vp_pb

MINUTE_MS = 60_000
OLDEST_TTL_S = 30.0  # storage statistics: the oldest stored footprint per instrument
GAPS_TTL_S = 5.0  # the collector's feed status

# (instrument, start, end): the stretch of the range one instrument is read over (a composite's feed
# changes along the range; a plain instrument covers all of it)
Source = tuple[InstrumentId, int, int]


@dataclass
class Coverage:
    minutes_expected: int
    minutes_covered: int
    minutes_with_trades: int
    known_gaps: list[vp_pb.TimeGap] = field(default_factory=list)
    partial: bool = False
    includes_live: bool = False

    def fill(self, message: Any) -> None:
        """Copy into a service's coverage message (ProfileCoverage, OrderFlowCoverage: same fields)."""
        message.minutes_expected = self.minutes_expected
        message.minutes_covered = self.minutes_covered
        message.minutes_with_trades = self.minutes_with_trades
        message.known_gaps.extend(self.known_gaps)
        message.partial = self.partial
        message.includes_live = self.includes_live


class CoverageSource:
    """The oldest stored footprint per instrument and the collector's open trade gaps, cached."""

    def __init__(self, storage: StorageSource, live: LiveTrades | None) -> None:
        self.storage = storage
        self.live = live
        self._oldest: tuple[float, dict[InstrumentId, int]] | None = None
        self._gaps: tuple[float, list[common_pb2.TradeGap]] | None = None

    async def oldest(self, instruments: Iterable[InstrumentId]) -> dict[InstrumentId, int]:
        wanted = list(dict.fromkeys(instruments))
        cached = self._oldest
        if (
            cached is not None
            and time.monotonic() - cached[0] < OLDEST_TTL_S
            and all(i in cached[1] for i in wanted)
        ):
            return cached[1]
        oldest = await self.storage.oldest_bar_ms(wanted)
        self._oldest = (time.monotonic(), oldest)
        return oldest

    async def feed_gaps(self) -> list[common_pb2.TradeGap]:
        if self.live is None:
            return []
        cached = self._gaps
        if cached is not None and time.monotonic() - cached[0] < GAPS_TTL_S:
            return cached[1]
        gaps = await self.live.feed_gaps()
        self._gaps = (time.monotonic(), gaps)
        return gaps

    async def measure(
        self,
        sources: Sequence[Source],
        start: int,
        end: int,
        now: int,
        minutes_with_trades: Iterable[int],
        includes_live: bool,
    ) -> Coverage:
        """Coverage of [start, end) read from `sources`; minutes after the open one are not expected."""
        open_minute_end = now - now % MINUTE_MS + MINUTE_MS
        expected_end = min(end, open_minute_end)
        expected = max(0, (expected_end - start) // MINUTE_MS)
        gaps: list[vp_pb.TimeGap] = []
        covered_from = start
        oldest = await self.oldest(i for i, _, _ in sources)
        for instrument, a, b in sources:
            stop = min(b, expected_end)
            first = oldest.get(instrument)
            if first is None:
                if not includes_live and stop > a:
                    gaps.append(_gap(a, stop, f"no stored footprints for {instrument.key}"))
                    if a == start:
                        covered_from = max(covered_from, stop)
            elif first > a:
                gap_end = min(first - first % MINUTE_MS, stop)
                if gap_end > a:
                    gaps.append(_gap(a, gap_end, f"before the oldest stored footprint of {instrument.key}"))
                    if a == start:
                        covered_from = max(covered_from, gap_end)
        for gap in await self.feed_gaps():
            try:
                instrument = InstrumentId.from_proto(gap.instrument)
            except ValueError:
                continue
            for source, a, b in sources:
                if source != instrument or not (gap.from_time_ms < b and gap.to_time_ms > a):
                    continue
                state = "being repaired" if gap.state == common_pb2.GAP_STATE_REPAIRING else "unrepaired"
                missing = f", {gap.missing_trades} trades missing" if gap.missing_trades else ""
                gaps.append(
                    _gap(
                        max(a, gap.from_time_ms),
                        min(b, gap.to_time_ms),
                        f"{instrument.key}: trade-id gap {state} (collector){missing}",
                    )
                )
        if end > open_minute_end:
            gaps.append(_gap(open_minute_end, end, "in the future"))
        covered = max(0, (expected_end - covered_from) // MINUTE_MS)
        return Coverage(
            minutes_expected=expected,
            minutes_covered=covered,
            minutes_with_trades=len({m for m in minutes_with_trades if start <= m < end}),
            known_gaps=gaps,
            partial=bool(gaps) or covered < expected,
            includes_live=includes_live,
        )


def _gap(start: int, end: int, reason: str) -> vp_pb.TimeGap:
    return vp_pb.TimeGap(start_time_ms=start, end_time_ms=end, reason=reason)
