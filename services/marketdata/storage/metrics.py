"""Storage metrics: counters on the write path, and gauges read at scrape time from the last figures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from marketdata.core.instruments import InstrumentId
from marketdata.storage.backends.base import CollectionStat


@dataclass
class StoreState:
    """What health and the gauges report; updated by the service, read at scrape time."""

    writable: bool = True
    last_error: str = ""
    last_write_ok: float = 0.0  # monotonic time of the last successful commit or probe
    disk_free_bytes: int = -1
    disk_free_low: bool = False
    store_bytes: int = 0
    stats: list[CollectionStat] = field(default_factory=list)
    newest_ms: dict[InstrumentId, int] = field(default_factory=dict)


class _Gauges(Collector):
    def __init__(self, state: StoreState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._state
        up = GaugeMetricFamily("marketdata_storage_backend_up", "1 while the store commits writes, else 0")
        up.add_metric([], 1.0 if s.writable else 0.0)
        yield up
        if s.disk_free_bytes >= 0:
            free = GaugeMetricFamily(
                "marketdata_storage_disk_free_bytes", "Free bytes on the file system of the embedded store"
            )
            free.add_metric([], float(s.disk_free_bytes))
            yield free
        low = GaugeMetricFamily(
            "marketdata_storage_disk_free_low",
            "1 when free disk is below MARKETDATA_STORAGE_DISK_FREE_MIN_MB (the alert threshold)",
        )
        low.add_metric([], 1.0 if s.disk_free_low else 0.0)
        yield low
        size = GaugeMetricFamily("marketdata_storage_store_bytes", "Size of the store (database and WAL)")
        size.add_metric([], float(s.store_bytes))
        yield size
        rows = GaugeMetricFamily(
            "marketdata_storage_rows", "Stored entries", labels=["collection", "instrument"]
        )
        by_collection: dict[str, int] = {}
        for stat in s.stats:
            rows.add_metric([stat.collection, stat.instrument.key], float(stat.count))
            by_collection[stat.collection] = by_collection.get(stat.collection, 0) + stat.bytes
        yield rows
        size_by = GaugeMetricFamily(
            "marketdata_storage_bytes", "Stored payload bytes per collection", labels=["collection"]
        )
        for collection, total in sorted(by_collection.items()):
            size_by.add_metric([collection], float(total))
        yield size_by
        lag = GaugeMetricFamily(
            "marketdata_storage_ingest_lag_seconds",
            "Now minus the exchange time of the newest stored trade",
            labels=["instrument"],
        )
        now_ms = time.time() * 1000
        for instrument, newest in sorted(s.newest_ms.items(), key=lambda kv: kv[0].key):
            lag.add_metric([instrument.key], max(0.0, (now_ms - newest) / 1000))
        yield lag


class StorageMetrics:
    def __init__(self, registry: CollectorRegistry, state: StoreState) -> None:
        self.write_seconds = Histogram(
            "marketdata_storage_write_seconds",
            "Per batch: from receipt to its durable commit",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.commit_trades = Histogram(
            "marketdata_storage_commit_trades",
            "Trades per commit (group commit of many batches)",
            buckets=(1, 10, 100, 1000, 5000, 10000, 25000, 50000, 100000),
            registry=registry,
        )
        self.trades_written = Counter(
            "marketdata_storage_trades_written", "Trades newly stored", ["instrument"], registry=registry
        )
        self.duplicates = Counter(
            "marketdata_storage_duplicate_trades",
            "Trades received that were already stored (resends, replicas, backfills)",
            ["instrument"],
            registry=registry,
        )
        self.late_bars = Counter(
            "marketdata_storage_late_bar_updates",
            "Updates of closed 1m bars by late trades (their version was bumped)",
            ["instrument"],
            registry=registry,
        )
        self.snapshots_written = Counter(
            "marketdata_storage_book_snapshots_written",
            "Order-book snapshots newly stored",
            registry=registry,
        )
        self.rejected_batches = Counter(
            "marketdata_storage_rejected_batches", "Invalid batches refused", ["kind"], registry=registry
        )
        self.write_errors = Counter(
            "marketdata_storage_write_errors", "Commits that failed (nothing acknowledged)", registry=registry
        )
        self.cache_requests = Counter(
            "marketdata_storage_cache_requests",
            "Footprint bar lookups in the Redis cache",
            ["result"],
            registry=registry,
        )
        self.cache_errors = Counter(
            "marketdata_storage_cache_errors",
            "Redis calls that failed (served from the store)",
            registry=registry,
        )
        self.retention_removed = Counter(
            "marketdata_storage_retention_removed",
            "Entries removed by retention",
            ["collection"],
            registry=registry,
        )
        self.archived = Counter(
            "marketdata_storage_archived",
            "Entries written to archive files",
            ["collection"],
            registry=registry,
        )
        registry.register(_Gauges(state))
        self._per_instrument: dict[InstrumentId, tuple[Counter, Counter, Counter]] = {}

    def of(self, instrument: InstrumentId) -> tuple[Counter, Counter, Counter]:
        """(trades written, duplicates, late bars) children of one instrument, resolved once."""
        children = self._per_instrument.get(instrument)
        if children is None:
            key = instrument.key
            children = self._per_instrument[instrument] = (
                self.trades_written.labels(key),
                self.duplicates.labels(key),
                self.late_bars.labels(key),
            )
        return children
