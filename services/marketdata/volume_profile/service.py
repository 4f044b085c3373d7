"""VolumeProfileService over gRPC: request validation, data assembly, profile computation."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import grpc

from marketdata.core.analytics.exact import format_scaled
from marketdata.core.analytics.profile import (
    Grid,
    Histogram,
    Profile,
    VaMethod,
    VolumeUnit,
    compute_profile,
    parse_pct,
    row_count,
    share_text,
)
from marketdata.core.analytics.timeframes import (
    MINUTE_MS,
    TIMEFRAMES_MS,
    lookback_range,
    session_range,
    utc_day,
    utc_week,
)
from marketdata.core.analytics_requests import HANDLED, RequestError, TickSizes, abort_for, row_grid
from marketdata.core.bar_sources import LiveTrades, MinuteBar, StorageSource, build_histogram, now_ms
from marketdata.core.composite import (
    CompositeError,
    CompositeResolver,
    CompositeUnavailable,
    ResolvedComposite,
    segments_of,
)
from marketdata.core.config import Settings, env_name, format_duration
from marketdata.core.coverage import CoverageSource
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2
from marketdata.v1 import volume_profile_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2_grpc as pb_grpc
from marketdata.volume_profile.cache import CLOSED_GRACE_MS, RangeCache

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VolumeProfileService"].full_name
MAX_INSTRUMENTS = 16
MAX_LOOKBACK = 100_000
MIN_INTERVAL_MS = 100
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

_METHODS = {
    pb.VALUE_AREA_METHOD_UNSPECIFIED: VaMethod.DUAL_ROW,
    pb.VALUE_AREA_METHOD_DUAL_ROW: VaMethod.DUAL_ROW,
    pb.VALUE_AREA_METHOD_SINGLE_ROW: VaMethod.SINGLE_ROW,
}
_METHOD_PROTO = {
    VaMethod.DUAL_ROW: pb.VALUE_AREA_METHOD_DUAL_ROW,
    VaMethod.SINGLE_ROW: pb.VALUE_AREA_METHOD_SINGLE_ROW,
}
_UNITS = {
    pb.VOLUME_UNIT_UNSPECIFIED: VolumeUnit.BASE,
    pb.VOLUME_UNIT_BASE: VolumeUnit.BASE,
    pb.VOLUME_UNIT_QUOTE: VolumeUnit.QUOTE,
}
_UNIT_PROTO = {VolumeUnit.BASE: pb.VOLUME_UNIT_BASE, VolumeUnit.QUOTE: pb.VOLUME_UNIT_QUOTE}


@dataclass
class Query:
    instruments: list[InstrumentId]
    start: int
    end: int
    grid: Grid
    row_ticks: int
    tick: str
    pct: Fraction
    method: VaMethod
    unit: VolumeUnit
    node_window: int
    volume_scale: int
    anchor: int = pb.ANCHOR_UNSPECIFIED
    session: pb.Session | None = None
    composites: list[ResolvedComposite] = field(default_factory=list)

    def sources(self, start: int, end: int) -> list[tuple[InstrumentId, int, int]]:
        """(instrument, from, to) read for [start, end): each instrument over all of it, each
        composite's followed feed over its own stretches (core/composite.py rule)."""
        out = [(i, start, end) for i in self.instruments]
        for composite in self.composites:
            out += [(s.instrument, s.start_ms, s.end_ms) for s in segments_of(composite.failover, start, end)]
        return out

    @property
    def failovers(self) -> list[collector_pb2.Failover]:
        return [c.failover for c in self.composites]


@dataclass
class Assembled:
    histogram: Histogram
    minutes_with_trades: set[int] = field(default_factory=set)
    includes_live: bool = False


def _minutes_of(bars: Sequence[MinuteBar]) -> set[int]:
    """Minutes holding trades (1h bars: see MinuteBar.minutes)."""
    return {minute for bar in bars for minute in bar.minutes()}


def chunk_edges(start: int, end: int) -> list[int]:
    """Cache chunk boundaries of [start, end): whole UTC days where the range holds them, whole UTC
    hours elsewhere, cut by the range's own start and end."""
    edges = [start]
    t = start
    while t < end:
        if t % DAY_MS == 0 and t + DAY_MS <= end:
            t += DAY_MS
        else:
            t = min(end, t - t % HOUR_MS + HOUR_MS)
        edges.append(t)
    return edges


def resolve_range(
    message: pb.ProfileRange, now: int, max_range_s: float, prefix: str = "range"
) -> tuple[int, int]:
    """[start, end) of a ProfileRange, whole minutes (start floored, end rounded up)."""
    has_times = bool(message.start_time_ms or message.end_time_ms)
    chosen = [
        n
        for n, on in (
            ("start/end", has_times),
            ("timeframe", bool(message.timeframe)),
            ("anchor", message.anchor != pb.ANCHOR_UNSPECIFIED),
        )
        if on
    ]
    if len(chosen) > 1:
        raise RequestError(
            prefix, f"give one of start/end, timeframe+lookback or anchor, not {' and '.join(chosen)}"
        )
    if not chosen:
        raise RequestError(prefix, "give start_time_ms/end_time_ms, timeframe+lookback or an anchor")
    at = message.at_time_ms or now
    back = message.sessions_back
    if message.anchor != pb.ANCHOR_UNSPECIFIED:
        if message.anchor == pb.ANCHOR_UTC_DAY:
            start, end = utc_day(at)
            start, end = start - back * 86_400_000, end - back * 86_400_000
        elif message.anchor == pb.ANCHOR_UTC_WEEK:
            start, end = utc_week(at)
            start, end = start - back * 7 * 86_400_000, end - back * 7 * 86_400_000
        elif message.anchor == pb.ANCHOR_SESSION:
            s = message.session
            try:
                start, end = session_range(at, s.time_zone, s.start, s.end, back)
            except ValueError as exc:
                raise RequestError(f"{prefix}.session", str(exc)) from None
        else:
            raise RequestError(f"{prefix}.anchor", f"unknown anchor {message.anchor}")
    elif message.timeframe:
        if message.timeframe not in TIMEFRAMES_MS:
            raise RequestError(
                f"{prefix}.timeframe",
                f"unknown timeframe {message.timeframe!r}; one of {', '.join(TIMEFRAMES_MS)}",
            )
        if not 1 <= message.lookback <= MAX_LOOKBACK:
            raise RequestError(
                f"{prefix}.lookback", f"must be within 1..{MAX_LOOKBACK}, got {message.lookback}"
            )
        start, end = lookback_range(at, message.timeframe, message.lookback)
    else:
        start, end = message.start_time_ms, message.end_time_ms
        if start < 0:
            raise RequestError(f"{prefix}.start_time_ms", "must be >= 0")
        if end <= start:
            raise RequestError(f"{prefix}.end_time_ms", f"must be after start_time_ms ({end} <= {start})")
    start -= start % MINUTE_MS
    end += (-end) % MINUTE_MS
    if max_range_s and (end - start) / 1000 > max_range_s:
        raise RequestError(
            f"{prefix}.end_time_ms",
            f"the range is {format_duration((end - start) / 1000)}, longer than the limit of "
            f"{format_duration(max_range_s)} ({env_name('volume_profile_max_range')})",
        )
    return start, end


class VolumeProfileServicer:
    def __init__(
        self,
        settings: Settings,
        storage: StorageSource,
        live: LiveTrades | None,
        cache: RangeCache,
        tick_sizes: dict[InstrumentId, str] | None = None,
        composites: CompositeResolver | None = None,
    ) -> None:
        self.settings = settings
        # `best:SYMBOL` keys resolved against the collector's failover history (None: no collector)
        self.composites = composites or CompositeResolver(None)
        self.storage = storage
        self.live = live
        self.cache = cache
        self.ticks = TickSizes(settings, storage, tick_sizes)
        self.coverage_source = CoverageSource(storage, live)

    # --- request parsing -------------------------------------------------------------------------

    def _instruments(
        self, messages: Sequence[common_pb2.Instrument], composites: int = 0
    ) -> list[InstrumentId]:
        if not messages and not composites:
            raise RequestError("instruments", "give at least one instrument (or a composite)")
        if len(messages) + composites > MAX_INSTRUMENTS:
            raise RequestError(
                "instruments",
                f"{len(messages) + composites} given with composites, above the limit of {MAX_INSTRUMENTS}",
            )
        out: list[InstrumentId] = []
        for index, message in enumerate(messages):
            try:
                instrument = InstrumentId.from_proto(message)
            except ValueError as exc:
                raise RequestError(f"instruments[{index}]", str(exc)) from None
            if instrument in out:
                raise RequestError(f"instruments[{index}]", f"{instrument.key} is given twice")
            out.append(instrument)
        return out

    async def _composites(
        self, keys: Sequence[str], instruments: list[InstrumentId], start: int, end: int
    ) -> list[ResolvedComposite]:
        try:
            resolved = list((await self.composites.resolve(keys, start, end)).values())
        except CompositeError as exc:
            raise RequestError(exc.field, exc.reason) from None
        except CompositeUnavailable as exc:
            raise RequestError("composites", str(exc), grpc.StatusCode.UNAVAILABLE) from None
        for index, composite in enumerate(resolved):
            for instrument in composite.followed:
                if instrument in instruments:
                    raise RequestError(
                        f"composites[{index}]",
                        f"{composite.key} follows {instrument.key}, also given in "
                        f"instruments[{instruments.index(instrument)}] (it would be counted twice)",
                    )
        return resolved

    async def query(self, request: Any, now: int, *, developing: bool = False) -> Query:
        instruments = self._instruments(request.instruments, len(request.composites))
        if developing:
            rng = pb.ProfileRange()
            rng.CopyFrom(request.range)
            if not rng.anchor and not rng.start_time_ms and not rng.timeframe:
                rng.anchor = pb.ANCHOR_UTC_DAY
            if rng.start_time_ms or rng.end_time_ms:
                rng.end_time_ms = now + 1
            start, end = resolve_range(rng, now, self.settings.volume_profile_max_range)
        else:
            start, end = resolve_range(request.range, now, self.settings.volume_profile_max_range)
        params = request.parameters
        pct = parse_pct(params.value_area_pct) if params.value_area_pct else Fraction(70)
        if not 0 < pct <= 100:
            raise RequestError(
                "parameters.value_area_pct", f"must be within (0, 100], got {params.value_area_pct}"
            )
        if params.va_method not in _METHODS:
            raise RequestError("parameters.va_method", f"unknown method {params.va_method}")
        if params.volume_unit not in _UNITS:
            raise RequestError("parameters.volume_unit", f"unknown unit {params.volume_unit}")
        window = params.node_window or self.settings.volume_profile_node_window
        if window % 2 == 0 or window > 101:
            raise RequestError("parameters.node_window", f"must be odd and at most 101, got {window}")
        composites = await self._composites(request.composites, instruments, start, end)
        followed = [i for c in composites for i in c.followed if i not in instruments]
        ticks = await self.ticks.of([*instruments, *dict.fromkeys(followed)])
        grid, row_ticks, tick = row_grid(params.row_size, params.row_ticks, ticks)
        unit = _UNITS[params.volume_unit]
        scale = 18 + (grid.decimals if unit is VolumeUnit.QUOTE else 0)
        return Query(
            instruments,
            start,
            end,
            grid,
            row_ticks,
            tick,
            pct,
            _METHODS[params.va_method],
            unit,
            window,
            scale,
            request.range.anchor or (pb.ANCHOR_UTC_DAY if developing else pb.ANCHOR_UNSPECIFIED),
            request.range.session if request.range.anchor == pb.ANCHOR_SESSION else None,
            composites,
        )

    # --- data ------------------------------------------------------------------------------------

    async def _storage_histogram(
        self, instrument: InstrumentId, start: int, end: int, q: Query
    ) -> tuple[Histogram, set[int]]:
        bars = await self.storage.bars(instrument, start, end)
        return build_histogram(bars, q.grid, q.unit, q.volume_scale), _minutes_of(bars)

    async def _closed_histograms(
        self, instrument: InstrumentId, start: int, end: int, q: Query
    ) -> list[tuple[Histogram, set[int]]]:
        """A closed stretch as UTC-hour chunks (cached, so overlapping and rolling ranges reuse them);
        chunks not cached come from one storage query."""
        if not self.cache.enabled:
            return [await self._storage_histogram(instrument, start, end, q)]
        chunks = list(itertools.pairwise(chunk_edges(start, end)))
        keys = [RangeCache.key(instrument.key, a, b, q.grid, q.unit.value, q.volume_scale) for a, b in chunks]
        found: dict[int, tuple[Histogram, set[int]]] = {}
        for index, key in enumerate(keys):
            hit = await self.cache.get(key, q.grid, q.volume_scale)
            if hit is not None:
                found[index] = (hit[0], set(hit[1]))
        missing = [i for i in range(len(chunks)) if i not in found]
        if missing:
            first, last = chunks[missing[0]][0], chunks[missing[-1]][1]
            bars = await self.storage.bars(instrument, first, last)
            by_chunk: dict[int, list[MinuteBar]] = {i: [] for i in missing}
            starts = [a for a, _ in chunks]
            for bar in bars:
                index = bisect.bisect_right(starts, bar.start_ms) - 1
                if index in by_chunk:
                    by_chunk[index].append(bar)
            for index, members in by_chunk.items():
                histogram = build_histogram(members, q.grid, q.unit, q.volume_scale)
                minutes = _minutes_of(members)
                found[index] = (histogram, minutes)
                await self.cache.put(keys[index], histogram, sorted(minutes))
        return [found[i] for i in range(len(chunks))]

    async def assemble(self, q: Query, start: int, end: int, now: int) -> Assembled:
        out = Assembled(Histogram(q.grid, q.volume_scale))
        if end <= start:
            return out
        closed = now - now % MINUTE_MS - CLOSED_GRACE_MS

        async def one(
            instrument: InstrumentId, start: int, end: int
        ) -> tuple[list[tuple[Histogram, set[int]]], list[MinuteBar]]:
            live_from = self.live.live_from(instrument, now) if self.live is not None else None
            stored_end = end if live_from is None else max(start, min(end, live_from))
            parts: list[tuple[Histogram, set[int]]] = []
            # split the stored part at the closed horizon so the closed piece can be cached
            cut = max(start, min(stored_end, closed - closed % MINUTE_MS))
            if cut > start:
                parts.extend(await self._closed_histograms(instrument, start, cut, q))
            if stored_end > cut:
                parts.append(await self._storage_histogram(instrument, cut, stored_end, q))
            live_bars: list[MinuteBar] = []
            if live_from is not None and self.live is not None and end > live_from:
                live_bars = self.live.bars(instrument, max(start, live_from), end, q.tick)
            return parts, live_bars

        sources = q.sources(start, end)
        results = await asyncio.gather(*(one(i, a, b) for i, a, b in sources))
        for parts, live_bars in results:
            for histogram, minutes in parts:
                out.histogram.merge(histogram)
                out.minutes_with_trades |= minutes
            for bar in live_bars:
                bar.add_to(out.histogram, q.unit)
                out.minutes_with_trades.add(bar.start_ms)
            if live_bars or (
                self.live is not None
                and any(self.live.live_from(i, now) is not None for i, _, _ in sources)
                and end > now - now % MINUTE_MS
            ):
                out.includes_live = True
        return out

    async def coverage(self, q: Query, assembled: Assembled, now: int) -> pb.ProfileCoverage:
        figures = await self.coverage_source.measure(
            q.sources(q.start, q.end),
            q.start,
            q.end,
            now,
            assembled.minutes_with_trades,
            assembled.includes_live,
        )
        coverage = pb.ProfileCoverage()
        figures.fill(coverage)
        return coverage

    # --- output ----------------------------------------------------------------------------------

    def _check_rows(self, q: Query, histogram: Histogram) -> None:
        rows = row_count(histogram.rows, q.grid.row_units)
        limit = self.settings.volume_profile_max_rows
        if rows > limit:
            raise RequestError(
                "parameters.row_ticks",
                f"the profile would have {rows} rows (row size {q.grid.row_size}), above the limit of "
                f"{limit} ({env_name('volume_profile_max_rows')}); use a larger row size",
            )

    @staticmethod
    def echo(q: Query) -> pb.EchoedParameters:
        return pb.EchoedParameters(
            instruments=[i.to_proto() for i in q.instruments],
            start_time_ms=q.start,
            end_time_ms=q.end,
            row_size=q.grid.row_size,
            row_ticks=q.row_ticks,
            tick_size=q.tick,
            value_area_pct=format_scaled(q.pct.numerator * 10**6 // q.pct.denominator, 6),
            va_method=_METHOD_PROTO[q.method],
            volume_unit=_UNIT_PROTO[q.unit],
            node_window=q.node_window,
        )

    @staticmethod
    def to_proto(profile: Profile, include_rows: bool = True) -> pb.VolumeProfile:
        vol = profile.volume
        rows = profile.rows
        message = pb.VolumeProfile(
            poc=profile.price(profile.poc),
            value_area_high=profile.price(profile.va_high),
            value_area_low=profile.price(profile.va_low),
            total_volume=vol(profile.total),
            buy_volume=vol(profile.buy),
            sell_volume=vol(profile.sell),
            delta=vol(profile.buy - profile.sell),
            value_area_volume=vol(profile.va_volume),
            value_area_share=share_text(profile.value_area_share),
            high_volume_nodes=[
                pb.VolumeNode(price=profile.price(i), total_volume=vol(rows[i].total)) for i in profile.hvn
            ],
            low_volume_nodes=[
                pb.VolumeNode(price=profile.price(i), total_volume=vol(rows[i].total)) for i in profile.lvn
            ],
        )
        if include_rows:
            price = profile.grid.price
            add = message.rows.add
            for r in rows:
                buy, sell = r.buy, r.sell
                if buy or sell:
                    add(
                        price=price(r.price_units),
                        buy_volume=vol(buy),
                        sell_volume=vol(sell),
                        total_volume=vol(buy + sell),
                        delta=vol(buy - sell),
                    )
                else:
                    add(
                        price=price(r.price_units),
                        buy_volume="0",
                        sell_volume="0",
                        total_volume="0",
                        delta="0",
                    )
        return message

    async def compute(self, q: Query, now: int) -> tuple[Profile, Assembled]:
        assembled = await self.assemble(q, q.start, q.end, now)
        self._check_rows(q, assembled.histogram)
        return compute_profile(assembled.histogram, q.pct, q.method, q.node_window), assembled

    # --- naked POCs --------------------------------------------------------------------------------

    def _session_bounds(self, q: Query, now: int, back: int) -> tuple[int, int]:
        at = min(q.start, now)
        if q.anchor == pb.ANCHOR_UTC_WEEK:
            s, e = utc_week(at)
            return s - back * 7 * 86_400_000, e - back * 7 * 86_400_000
        if q.anchor == pb.ANCHOR_SESSION and q.session is not None:
            return session_range(at, q.session.time_zone, q.session.start, q.session.end, back)
        s, e = utc_day(at)
        return s - back * 86_400_000, e - back * 86_400_000

    async def naked_pocs(self, q: Query, now: int, sessions: int) -> list[pb.NakedPoc]:
        """POCs of the `sessions` sessions before the one holding the range's start that no trade
        from the session's end until now has touched (touched: a trade in the POC's row)."""
        bounds = [self._session_bounds(q, now, back) for back in range(1, sessions + 1)]
        bounds = [(s, e) for s, e in bounds if e <= now]
        if not bounds:
            return []
        # histograms of each session and of the stretches between consecutive session ends
        points = sorted({p for s, e in bounds for p in (s, e)} | {now - now % MINUTE_MS + MINUTE_MS})
        segments: dict[tuple[int, int], Histogram] = {}
        for a, b in itertools.pairwise(points):
            segments[(a, b)] = (await self.assemble(q, a, b, now)).histogram
        out: list[pb.NakedPoc] = []
        for s, e in bounds:  # newest first
            histogram = Histogram(q.grid, q.volume_scale)
            for (a, b), part in segments.items():
                if s <= a and b <= e:
                    histogram.merge(part)
            profile = compute_profile(histogram, q.pct, q.method, q.node_window)
            if profile.poc < 0:
                continue
            poc_units = profile.rows[profile.poc].price_units
            touched = any(
                a >= e and (row := part.rows.get(poc_units)) is not None and (row[0] or row[1])
                for (a, _), part in segments.items()
            )
            if not touched:
                out.append(
                    pb.NakedPoc(
                        price=profile.price(profile.poc), session_start_time_ms=s, session_end_time_ms=e
                    )
                )
        return out

    # --- RPCs --------------------------------------------------------------------------------------

    async def GetVolumeProfile(
        self, request: pb.GetVolumeProfileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetVolumeProfileResponse:
        now = now_ms()
        try:
            q = await self.query(request, now)
            profile, assembled = await self.compute(q, now)
            coverage = await self.coverage(q, assembled, now)
        except HANDLED as exc:
            await abort_for(context, exc)
            raise
        return pb.GetVolumeProfileResponse(
            profile=self.to_proto(profile), parameters=self.echo(q), coverage=coverage, failovers=q.failovers
        )

    async def GetVolumeProfileLevels(
        self, request: pb.GetVolumeProfileLevelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetVolumeProfileLevelsResponse:
        now = now_ms()
        try:
            q = await self.query(request, now)
            sessions = request.naked_poc_sessions or self.settings.volume_profile_naked_poc_sessions
            if sessions > 366:
                raise RequestError("naked_poc_sessions", f"must be at most 366, got {sessions}")
            profile, assembled = await self.compute(q, now)
            coverage = await self.coverage(q, assembled, now)
            naked = await self.naked_pocs(q, now, sessions)
        except HANDLED as exc:
            await abort_for(context, exc)
            raise
        levels = self.to_proto(profile, include_rows=False)
        return pb.GetVolumeProfileLevelsResponse(
            poc=levels.poc,
            value_area_high=levels.value_area_high,
            value_area_low=levels.value_area_low,
            high_volume_nodes=levels.high_volume_nodes,
            low_volume_nodes=levels.low_volume_nodes,
            naked_pocs=naked,
            parameters=self.echo(q),
            coverage=coverage,
            failovers=q.failovers,
        )

    async def StreamVolumeProfile(
        self, request: pb.StreamVolumeProfileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamVolumeProfileResponse]:
        now = now_ms()
        try:
            if request.interval_ms and request.interval_ms < MIN_INTERVAL_MS:
                raise RequestError(
                    "interval_ms", f"must be 0 or >= {MIN_INTERVAL_MS}, got {request.interval_ms}"
                )
            q = await self.query(request, now, developing=True)
        except HANDLED as exc:
            await abort_for(context, exc)
            raise
        bar_close = False
        while True:
            now = now_ms()
            try:
                if (q.end <= now - now % MINUTE_MS and request.range.anchor) or request.composites:
                    # the next session began, or a composite may have switched
                    q = await self.query(request, now, developing=True)
                profile, assembled = await self.compute(q, now)
                coverage = await self.coverage(q, assembled, now)
            except HANDLED as exc:
                await abort_for(context, exc)
                raise
            yield pb.StreamVolumeProfileResponse(
                as_of_time_ms=now,
                bar_close=bar_close,
                profile=self.to_proto(profile, include_rows=request.include_rows),
                parameters=self.echo(q),
                coverage=coverage,
                failovers=q.failovers,
            )
            next_close = now - now % MINUTE_MS + MINUTE_MS
            wake = next_close
            if request.interval_ms:
                wake = min(wake, now + request.interval_ms)
            await asyncio.sleep(max(0.0, (wake - now_ms()) / 1000))
            bar_close = wake == next_close


def add_volume_profile_service(servicer: VolumeProfileServicer, server: grpc.aio.Server) -> None:
    pb_grpc.add_VolumeProfileServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
