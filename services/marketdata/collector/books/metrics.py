"""Book counters as Prometheus metrics (read at scrape time, like collector/stats.py) and as the
book fields of GetFeedStatus."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from marketdata.collector.books.manager import BookManager
from marketdata.collector.books.sync import SYNCED
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_book_pb2

PREFIX = "marketdata_collector_book_"


class BookStatsExporter(Collector):
    def __init__(self, manager: BookManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        now = time.time_ns()
        labels = ["feed", "instrument"]
        resyncs = CounterMetricFamily(
            PREFIX + "resyncs", "Order-book resyncs (rebuilds) by reason", labels=[*labels, "reason"]
        )
        synced = GaugeMetricFamily(
            PREFIX + "synced", "1 while the order book is in sync, else 0", labels=labels
        )
        updates = CounterMetricFamily(PREFIX + "updates", "Order-book level updates applied", labels=labels)
        age = GaugeMetricFamily(
            PREFIX + "age_seconds",
            "Seconds since the order book's last applied update (-1 before the first)",
            labels=labels,
        )
        crossed = CounterMetricFamily(
            PREFIX + "crossed", "Order-book updates refused because they would cross the book", labels=labels
        )
        snapshot_errors = CounterMetricFamily(
            PREFIX + "snapshot_errors", "Failed REST depth snapshot calls", labels=labels
        )
        for instrument, sync in self._manager.syncs.items():
            stats = sync.stats
            key = [instrument.market.value, instrument.key]
            for reason, count in stats.resyncs.items():
                resyncs.add_metric([*key, reason], count)
            synced.add_metric(key, 1 if stats.state == SYNCED else 0)
            updates.add_metric(key, stats.updates)
            age.add_metric(key, -1 if not stats.applied_ns else max(0.0, (now - stats.applied_ns) / 1e9))
            crossed.add_metric(key, stats.crossed)
            snapshot_errors.add_metric(key, stats.snapshot_errors)
        invalid = CounterMetricFamily(
            PREFIX + "invalid_frames",
            "Depth frames that could not be used (no book for the symbol, unreadable)",
            labels=["feed"],
        )
        for market, count in self._manager.invalid_frames.items():
            if any(i.market == market for i in self._manager.syncs):
                invalid.add_metric([market.value], count)
        yield resyncs
        yield synced
        yield updates
        yield age
        yield crossed
        yield snapshot_errors
        yield invalid


def add_book_status(manager: BookManager | None, feed: collector_pb2.FeedStatus, now_ns: int) -> None:
    """Fill the book fields of a FeedStatus (and its InstrumentStatus entries) in place."""
    market = MarketKey.parse(feed.feed)
    syncs = manager.syncs if manager is not None else {}
    books = [s for i, s in syncs.items() if i.market == market]
    feed.books = len(books)
    feed.books_synced = sum(1 for s in books if s.stats.state == SYNCED)
    feed.book_resyncs = sum(s.stats.total_resyncs for s in books)
    feed.book_invalid_frames = manager.invalid_frames[market] if manager is not None else 0
    for status in feed.instruments:
        sync = syncs.get(InstrumentId.from_proto(status.instrument))
        if sync is None:
            status.book_state = order_book_pb2.BOOK_SYNC_STATE_OFF
            continue
        stats = sync.stats
        status.book_state = stats.state  # type: ignore[assignment]
        status.book_resyncs = stats.total_resyncs
        status.book_last_resync_reason = stats.last_reason
        status.book_updates = stats.updates
        status.book_crossed = stats.crossed
        status.book_update_id = stats.update_id
        status.book_age_ms = -1 if not stats.applied_ns else max(0, (now_ns - stats.applied_ns) // 1_000_000)
