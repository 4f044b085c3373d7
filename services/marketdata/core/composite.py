"""Failover composites (`best:SYMBOL`) for analytics: which feed a composite followed over a time range.

The collector decides what a composite follows (collector/health/failover.py, docs/feed-health.md)
and records every switch (time, from, to, why). Analytics that answer over a past range (volume
profile, order flow, the MCP bridge) ask it for that history (`GetFeedStatus` -> `failovers`) and
split the range into segments, one per followed feed:

Rule (docs/feed-health.md, "Composites in analytics"):
- Each switch takes effect at its time floored to the whole minute: the minute in which a feed
  failed is taken from the feed switched to (analytics read whole-minute bars; the failing feed's
  minute is the suspect one). Several switches in one minute: the last one holds that minute.
- Before the first recorded switch the composite counts as following the feed that switch left
  (`from_feed`), or, when it is the first selection, the feed first selected. So a range older than
  the collector's history uses the first feed it knows of; history is kept in memory by the
  collector (the last 100 switches since it started).
- Consecutive stretches on one feed are merged; stretches of zero length are dropped. The segments
  cover [start, end) exactly, in time order.

Usage (one resolver per service, sharing the collector channel):

    resolver = CompositeResolver(collector_channel)          # None: no collector configured
    try:
        resolved = await resolver.resolve(["best:BTCUSDT"], start_ms, end_ms)
    except CompositeError as exc:          # unknown key/symbol, or no collector: INVALID_ARGUMENT
        await abort_invalid_argument(context, exc.field, exc.reason)    # exc.field = "composites[0]"
    except CompositeUnavailable as exc:    # collector unreachable, or nothing selected yet
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    for key, composite in resolved.items():
        for segment in composite.segments:  # Segment(instrument, start_ms, end_ms)
            ...read segment.instrument over [segment.start_ms, segment.end_ms)...
        response.failovers.append(composite.failover)   # echo: the followed feed and the switches

`resolve(keys, start, end, field="composites")` keeps the order of `keys` (dict insertion order);
duplicate keys are an error naming the second one. The collector's answer is cached for
`cache_s` (1 s) so a stream that resolves every tick costs one GetFeedStatus a second at most.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc

from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc

__all__ = [
    "MINUTE_MS",
    "PREFIX",
    "CompositeError",
    "CompositeResolver",
    "CompositeUnavailable",
    "ResolvedComposite",
    "Segment",
    "is_composite",
    "segments_of",
]

PREFIX = "best:"
MINUTE_MS = 60_000


def is_composite(text: str) -> bool:
    """True for text that is meant as a composite key (`best:...`), valid or not."""
    return text.strip().lower().startswith(PREFIX)


class CompositeError(ValueError):
    """A composite the request may not use: `field` names the request field (e.g. "composites[1]"),
    `reason` says why and names the composites collected. Services answer INVALID_ARGUMENT with
    f"{field}: {reason}" (which is also str(exc))."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class CompositeUnavailable(Exception):
    """The collector cannot answer now (unreachable, or the composite has no feed selected yet):
    services answer UNAVAILABLE with str(exc)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """[start_ms, end_ms) of the range during which the composite followed `instrument`."""

    instrument: InstrumentId
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class ResolvedComposite:
    """One composite over a range: its segments (time order, covering the range) and the collector's
    Failover (followed feed now and the recorded switches), to echo in the answer."""

    key: str
    segments: tuple[Segment, ...]
    failover: collector_pb2.Failover

    @property
    def instruments(self) -> tuple[InstrumentId, ...]:
        """The distinct instruments used over the range, in order of first use."""
        return tuple(dict.fromkeys(s.instrument for s in self.segments))

    @property
    def followed(self) -> tuple[InstrumentId, ...]:
        """Every instrument the composite is known to have followed (now or in a recorded switch),
        e.g. to check tick sizes for other ranges resolved later with segments_of(self.failover, ...)."""
        symbol = self.key[len(PREFIX) :]
        feeds = [f for s in self.failover.switches for f in (s.from_feed, s.to_feed) if f]
        out = [_instrument(f, symbol) for f in feeds]
        if self.failover.HasField("selected"):
            out.append(InstrumentId.from_proto(self.failover.selected))
        return tuple(dict.fromkeys([*self.instruments, *out]))


def _instrument(feed: str, symbol: str) -> InstrumentId:
    return InstrumentId(MarketKey.parse(feed), symbol)


def segments_of(failover: collector_pb2.Failover, start_ms: int, end_ms: int) -> tuple[Segment, ...]:
    """Split [start_ms, end_ms) by the composite's switches, by the rule in the module docstring.

    Raises CompositeUnavailable when the composite has no feed yet (no switch recorded and nothing
    selected)."""
    symbol = failover.composite[len(PREFIX) :]
    switches = sorted(failover.switches, key=lambda s: s.time_ns)
    if switches:
        first = switches[0]
        initial = _instrument(first.from_feed or first.to_feed, symbol)
    elif failover.HasField("selected") and failover.selected.symbol:
        initial = InstrumentId.from_proto(failover.selected)
    else:
        raise CompositeUnavailable(
            f"{failover.composite} has no feed selected yet (the collector selects one within a "
            "second of start); retry shortly"
        )
    # (effective time, instrument) steps; the last switch within one minute wins that minute.
    steps: list[tuple[int, InstrumentId]] = [(start_ms, initial)]
    for switch in switches:
        at_ms = switch.time_ns // 1_000_000
        at_ms -= at_ms % MINUTE_MS
        instrument = _instrument(switch.to_feed, symbol)
        if at_ms <= start_ms:
            steps[0] = (start_ms, instrument)
        elif at_ms < end_ms:
            if steps[-1][0] == at_ms:
                steps[-1] = (at_ms, instrument)
            else:
                steps.append((at_ms, instrument))
    segments: list[Segment] = []
    bounds = [t for t, _ in steps[1:]] + [end_ms]
    for (seg_start, instrument), seg_end in zip(steps, bounds, strict=True):
        if seg_end <= seg_start:
            continue
        if segments and segments[-1].instrument == instrument:
            segments[-1] = Segment(instrument, segments[-1].start_ms, seg_end)
        else:
            segments.append(Segment(instrument, seg_start, seg_end))
    return tuple(segments)


class CompositeResolver:
    """Resolves composite keys against the collector's recorded failovers (GetFeedStatus).

    `channel` is a channel to the collector (core/grpc_client.create_channel); None means no
    collector is configured, and every resolve() fails with CompositeError saying so. The resolver
    does not own the channel (the service closes it)."""

    def __init__(
        self, channel: grpc.aio.Channel | None, *, timeout_s: float = 2.0, cache_s: float = 1.0
    ) -> None:
        self._stub = (
            collector_grpc.CollectorServiceStub(channel)  # type: ignore[no-untyped-call]
            if channel is not None
            else None
        )
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._cached: tuple[float, dict[str, collector_pb2.Failover]] | None = None

    @property
    def configured(self) -> bool:
        return self._stub is not None

    async def failovers(self) -> dict[str, collector_pb2.Failover]:
        """Every composite the collector serves, by key (cached for `cache_s`)."""
        if self._stub is None:
            raise CompositeUnavailable("no collector is configured (MARKETDATA_COLLECTOR_ADDR)")
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self._cache_s:
            return cached[1]
        try:
            response = await self._stub.GetFeedStatus(
                collector_pb2.GetFeedStatusRequest(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise CompositeUnavailable(
                f"the collector cannot say what composites follow: {exc.code().name}: {exc.details()}"
            ) from None
        by_key = {f.composite: f for f in response.failovers}
        self._cached = (time.monotonic(), by_key)
        return by_key

    async def resolve(
        self, keys: Sequence[str], start_ms: int, end_ms: int, *, field: str = "composites"
    ) -> dict[str, ResolvedComposite]:
        """Segments over [start_ms, end_ms) and the Failover of each key (order kept).

        Errors: CompositeError (INVALID_ARGUMENT) for a key that is not `best:SYMBOL`, a symbol no
        feed collects (naming the composites collected), a duplicate key, or no collector
        configured; CompositeUnavailable (UNAVAILABLE) when the collector does not answer."""
        if not keys:
            return {}
        if self._stub is None:
            raise CompositeError(
                field, "composites need the collector, and none is configured (MARKETDATA_COLLECTOR_ADDR)"
            )
        known = await self.failovers()
        out: dict[str, ResolvedComposite] = {}
        for index, raw in enumerate(keys):
            where = f"{field}[{index}]"
            key = _normalize(raw)
            failover = known.get(key)
            if failover is None:
                raise CompositeError(where, _unknown_reason(raw, known))
            if key in out:
                raise CompositeError(where, f"{key} is given twice")
            out[key] = ResolvedComposite(key, segments_of(failover, start_ms, end_ms), failover)
        return out


def _normalize(text: str) -> str:
    """`best:btcusdt ` -> `best:BTCUSDT` (symbols are upper case everywhere)."""
    text = text.strip()
    if text.lower().startswith(PREFIX):
        return PREFIX + text[len(PREFIX) :].strip().upper()
    return text


def _unknown_reason(raw: str, known: Iterable[str]) -> str:
    collected = ", ".join(sorted(known)) or "none"
    if not is_composite(raw):
        return f"{raw!r} is not a composite key (best:SYMBOL); composites: {collected}"
    symbol = raw.strip()[len(PREFIX) :].strip()
    return f"{symbol!r} is not collected on any feed; composites: {collected}"
