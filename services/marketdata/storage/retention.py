"""Retention tiers: raw trades, book snapshots, 1m bars, 1h bars (kept on ingest beside the 1m bars).

Each collection keeps what is newer than now - its retention, cut at a UTC day boundary, so an
archive file always holds whole days. Per instrument and day, oldest first: archive (when
MARKETDATA_STORAGE_ARCHIVE_DIR is set), make sure every hour has its 1h bar (before 1m bars go), then delete
in hour-long transactions on the writer thread, so ingest commits interleave with a big cleanup.
Everything is idempotent: a crash at any point is repaired by the next run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from marketdata.core.config import Settings
from marketdata.core.instruments import InstrumentId
from marketdata.storage import archive
from marketdata.storage.archive import DAY_MS, KIND_OF_COLLECTION
from marketdata.storage.footprints import HOUR_MS, RES_1H, RES_1M, Bar, roll_up
from marketdata.storage.metrics import StorageMetrics
from marketdata.storage.store import Store
from marketdata.v1 import storage_service_pb2 as storage_pb2

log = logging.getLogger(__name__)


def retention_of(settings: Settings) -> dict[str, float]:
    """Seconds to keep per collection (0: forever), in the order retention applies them."""
    return {
        "footprints_1m": settings.storage_retention_footprints_1m,
        "footprints_1h": settings.storage_retention_footprints_1h,
        "trades": settings.storage_retention_trades,
        "book_snapshots": settings.storage_retention_book_snapshots,
    }


def cutoff_of(now_ms: int, keep_s: float) -> int:
    """Entries older than this go: now - keep, down to the UTC day boundary."""
    edge = now_ms - int(keep_s * 1000)
    return edge - edge % DAY_MS


class Retention:
    def __init__(
        self, store: Store, settings: Settings, metrics: StorageMetrics | None, cache: Any = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.archive_dir = Path(settings.storage_archive_dir) if settings.storage_archive_dir else None
        self._running = False

    async def apply(self, *, dry_run: bool, now_ms: int | None = None) -> storage_pb2.ApplyRetentionResponse:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        response = storage_pb2.ApplyRetentionResponse(dry_run=dry_run)
        if self._running and not dry_run:
            log.info("retention already running; skipped")
            return response
        self._running = not dry_run
        try:
            backend = self.store.backend
            for collection, keep_s in retention_of(self.settings).items():
                if keep_s <= 0:
                    continue
                cutoff = cutoff_of(now_ms, keep_s)
                for instrument in sorted(backend.known_instruments(), key=lambda i: i.key):
                    result = await self._apply_one(collection, instrument, cutoff, dry_run)
                    if result is not None:
                        response.results.append(result)
        finally:
            if not dry_run:
                self._running = False
        if not dry_run and response.results:
            log.info(
                "retention applied",
                extra={
                    "removed": {
                        f"{r.collection}/{InstrumentId.from_proto(r.instrument).key}": r.removed
                        for r in response.results
                    }
                },
            )
        return response

    async def _apply_one(
        self, collection: str, instrument: InstrumentId, cutoff: int, dry_run: bool
    ) -> storage_pb2.RetentionResult | None:
        store, backend = self.store, self.store.backend
        oldest = await store.run_read(backend.oldest, collection, instrument)
        if oldest is None or oldest >= cutoff:
            return None
        result = storage_pb2.RetentionResult(
            collection=collection, instrument=instrument.to_proto(), cutoff_time_ms=cutoff
        )
        if dry_run:
            result.removed = await store.run_read(backend.count_range, collection, instrument, 0, cutoff)
            if self.archive_dir is not None:
                result.archived = result.removed
            return result
        day = oldest - oldest % DAY_MS
        while day < cutoff:
            end = day + DAY_MS
            if self.archive_dir is not None:
                archived = await self._archive_day(collection, instrument, day, end)
                if archived:
                    result.archived += archived
                    result.archive_files.append(str(archive.archive_path(self.archive_dir, instrument, day)))
                    if self.metrics is not None:
                        self.metrics.archived.labels(collection).inc(archived)
            if collection == "footprints_1m":
                result.rolled_up += await self._roll_up_day(instrument, day, end)
            removed = 0
            for hour in range(day, end, HOUR_MS):
                removed += await store.run_write(
                    backend.delete_range, collection, instrument, hour, hour + HOUR_MS
                )
            result.removed += removed
            if self.metrics is not None and removed:
                self.metrics.retention_removed.labels(collection).inc(removed)
            day = end
        return result

    async def _archive_day(self, collection: str, instrument: InstrumentId, start: int, end: int) -> int:
        assert self.archive_dir is not None
        backend = self.store.backend
        path = archive.archive_path(self.archive_dir, instrument, start)
        header = {
            "collection": collection,
            "kind_of_lines": KIND_OF_COLLECTION[collection],
            "instrument": instrument.key,
            "day": archive.day_text(start),
            "tick_size": backend.tick_sizes().get(instrument, ""),
        }

        def write() -> int:
            if backend.count_range(collection, instrument, start, end) == 0:
                return 0
            lines = (
                archive.record_of(collection, instrument, payload)
                for chunk in backend.export_range(collection, instrument, start, end)
                for payload in chunk
            )
            return archive.append_member(path, header, lines)

        return await self.store.run_read(write)

    async def _roll_up_day(self, instrument: InstrumentId, start: int, end: int) -> int:
        """Give every hour of the day that has 1m bars but no 1h bar the roll-up of its 1m bars.

        Ingest keeps 1h bars beside the 1m bars (always their merge) and stores opened from before that
        were migrated, so this normally writes nothing; it is the safety net for an hour that lacks its
        1h bar. Existing 1h bars are left alone (put_bars replace=False): nothing is counted twice."""
        store, backend = self.store, self.store.backend
        bars = await store.run_read(backend.read_footprints, instrument, RES_1M, start, end)
        if not bars:
            return 0
        hourly = roll_up(Bar.decode(b.payload) for b in bars)
        payloads = [bar.encode() for _, bar in sorted(hourly.items())]
        return await store.run_write(backend.put_bars, instrument, RES_1H, payloads, False)
