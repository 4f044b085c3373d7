"""Feed counters: one source of truth for GetFeedStatus and the Prometheus metrics.

The hot path increments plain ints; Prometheus reads them at scrape time through FeedStatsExporter,
so a trade costs no metric-library call.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from marketdata.collector.health.latency import LatencyHistogram
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import common_pb2

log = logging.getLogger(__name__)

RECENT_GAPS = 50


@dataclass(slots=True)
class InstrumentStats:
    instrument: InstrumentId
    trades: int = 0
    duplicates: int = 0
    backfilled: int = 0
    last_receive_ns: int = 0
    last_trade_id: str = ""
    last_exchange_time_ms: int = 0
    repairing: bool = False
    gaps_detected: int = 0
    gaps_repaired: int = 0
    gaps_unrepaired: int = 0


@dataclass(slots=True)
class FeedStats:
    feed: MarketKey
    state: int = collector_pb2.FEED_STATE_CONNECTING
    connections: int = 0
    last_frame_ns: int = 0
    messages: int = 0
    bytes: int = 0
    parse_errors: int = 0
    reconnects: int = 0
    rotations: int = 0
    last_error: str = ""
    instruments: dict[InstrumentId, InstrumentStats] = field(default_factory=dict)
    recent_gaps: deque[common_pb2.TradeGap] = field(default_factory=lambda: deque(maxlen=RECENT_GAPS))
    # Exchange time -> receive time, one sample per trade frame (collector/health/).
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def instrument(self, instrument: InstrumentId) -> InstrumentStats:
        stats = self.instruments.get(instrument)
        if stats is None:
            stats = self.instruments[instrument] = InstrumentStats(instrument)
        return stats

    def record_error(self, message: str) -> None:
        self.last_error = message

    def open_gap(self, gap: common_pb2.TradeGap) -> None:
        """A gap was found; it stays in recent_gaps and is updated in place when it closes."""
        stats = self.instrument(InstrumentId.from_proto(gap.instrument))
        stats.gaps_detected += 1
        self.recent_gaps.append(gap)
        log.warning(
            "trade gap detected",
            extra={"feed": self.feed.value, "instrument": stats.instrument.key, "detail": gap.detail},
        )

    def close_gap(self, gap: common_pb2.TradeGap, repaired: bool, detail: str = "") -> None:
        stats = self.instrument(InstrumentId.from_proto(gap.instrument))
        gap.state = common_pb2.GAP_STATE_REPAIRED if repaired else common_pb2.GAP_STATE_UNREPAIRED
        if detail:
            gap.detail = f"{gap.detail}; {detail}" if gap.detail else detail
        if repaired:
            stats.gaps_repaired += 1
        else:
            stats.gaps_unrepaired += 1
            self.last_error = f"{stats.instrument.key}: unrepaired gap: {gap.detail}"
        log.log(
            logging.INFO if repaired else logging.ERROR,
            "trade gap repaired" if repaired else "trade gap NOT repaired (known gap recorded)",
            extra={
                "feed": self.feed.value,
                "instrument": stats.instrument.key,
                "recovered": gap.recovered_trades,
                "detail": gap.detail,
            },
        )

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(
            ("trades", "duplicates", "backfilled", "gaps_detected", "gaps_repaired", "gaps_unrepaired"), 0
        )
        for s in self.instruments.values():
            out["trades"] += s.trades
            out["duplicates"] += s.duplicates
            out["backfilled"] += s.backfilled
            out["gaps_detected"] += s.gaps_detected
            out["gaps_repaired"] += s.gaps_repaired
            out["gaps_unrepaired"] += s.gaps_unrepaired
        return out

    def to_proto(self, now_ns: int | None = None) -> collector_pb2.FeedStatus:
        now = time.time_ns() if now_ns is None else now_ns
        totals = self.totals()
        return collector_pb2.FeedStatus(
            feed=self.feed.value,
            exchange=self.feed.exchange,
            market=self.feed.market,
            state=self.state,  # type: ignore[arg-type]
            connections=self.connections,
            last_message_age_ms=_age_ms(now, self.last_frame_ns),
            messages=self.messages,
            bytes=self.bytes,
            trades=totals["trades"],
            parse_errors=self.parse_errors,
            reconnects=self.reconnects,
            rotations=self.rotations,
            gaps_detected=totals["gaps_detected"],
            gaps_repaired=totals["gaps_repaired"],
            gaps_unrepaired=totals["gaps_unrepaired"],
            duplicates=totals["duplicates"],
            backfilled_trades=totals["backfilled"],
            last_error=self.last_error,
            instruments=[
                collector_pb2.InstrumentStatus(
                    instrument=s.instrument.to_proto(),
                    trades=s.trades,
                    last_trade_age_ms=_age_ms(now, s.last_receive_ns),
                    last_trade_id=s.last_trade_id,
                    last_exchange_time_ms=s.last_exchange_time_ms,
                    repairing=s.repairing,
                )
                for s in self.instruments.values()
            ],
            recent_gaps=list(self.recent_gaps),
        )


def _age_ms(now_ns: int, then_ns: int) -> int:
    return -1 if then_ns == 0 else max(0, (now_ns - then_ns) // 1_000_000)


class FeedStatsExporter(Collector):
    """Exposes FeedStats as Prometheus metrics at scrape time."""

    def __init__(self, feeds: Iterable[FeedStats]) -> None:
        self._feeds = list(feeds)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        now = time.time_ns()
        prefix = "marketdata_collector_"
        per_feed = {
            "messages": ("Frames received", "messages"),
            "bytes": ("Bytes of frames received", "bytes"),
            "parse_errors": ("Frames that could not be parsed (skipped)", "parse_errors"),
            "reconnects": ("Connections re-established after a loss", "reconnects"),
            "rotations": ("Planned make-before-break connection rotations", "rotations"),
        }
        for name, (doc, attr) in per_feed.items():
            family = CounterMetricFamily(prefix + name, doc, labels=["feed"])
            for f in self._feeds:
                family.add_metric([f.feed.value], getattr(f, attr))
            yield family
        per_instrument = {
            "trades": ("Trades delivered after deduplication", "trades"),
            "duplicate_trades": ("Trades dropped as duplicates", "duplicates"),
            "backfilled_trades": ("Trades recovered through REST backfill", "backfilled"),
            "gaps_detected": ("Trade gaps detected", "gaps_detected"),
            "gaps_repaired": ("Trade gaps fully repaired", "gaps_repaired"),
            "gaps_unrepaired": ("Trade gaps left as known gaps", "gaps_unrepaired"),
        }
        for name, (doc, attr) in per_instrument.items():
            family = CounterMetricFamily(prefix + name, doc, labels=["feed", "instrument"])
            for f in self._feeds:
                for s in f.instruments.values():
                    family.add_metric([f.feed.value, s.instrument.key], getattr(s, attr))
            yield family
        connections = GaugeMetricFamily(prefix + "connections", "Open WebSocket connections", labels=["feed"])
        age = GaugeMetricFamily(
            prefix + "last_message_age_seconds",
            "Seconds since the last frame of any kind (-1 before the first)",
            labels=["feed"],
        )
        state = GaugeMetricFamily(
            prefix + "feed_state",
            "Feed state (1 connecting, 2 connected, 3 reconnecting, 4 stopped)",
            labels=["feed"],
        )
        for f in self._feeds:
            connections.add_metric([f.feed.value], f.connections)
            age.add_metric([f.feed.value], -1 if not f.last_frame_ns else (now - f.last_frame_ns) / 1e9)
            state.add_metric([f.feed.value], f.state)
        trade_age = GaugeMetricFamily(
            prefix + "last_trade_age_seconds",
            "Seconds since the last trade of an instrument (-1 before the first)",
            labels=["feed", "instrument"],
        )
        for f in self._feeds:
            for s in f.instruments.values():
                trade_age.add_metric(
                    [f.feed.value, s.instrument.key],
                    -1 if not s.last_receive_ns else (now - s.last_receive_ns) / 1e9,
                )
        yield connections
        yield age
        yield state
        yield trade_age
