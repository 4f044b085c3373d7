"""The storage service: store + gRPC (health, reflection, tracing) + /metrics + retention schedule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import TracerProvider

from marketdata.core.config import Settings
from marketdata.core.grpc_server import GrpcServer, ServiceRegistration, build_server
from marketdata.core.instrument_meta import fetch_tick_sizes
from marketdata.core.instruments import InstrumentId
from marketdata.core.metrics import MetricsServer, create_registry, start_metrics_server
from marketdata.core.service_runner import run_service
from marketdata.storage.backends import describe, open_backend, storage_uri
from marketdata.storage.backends.base import ChangedBar
from marketdata.storage.cache import FootprintCache
from marketdata.storage.metrics import StorageMetrics, StoreState
from marketdata.storage.retention import Retention
from marketdata.storage.service import SERVICE_NAME, StorageServicer, add_storage_service
from marketdata.storage.store import Store

log = logging.getLogger(__name__)

# Health follows a failed commit within a second; the store itself is probed only after 5 s idle
# (Store.probe), so a store that recovers (space freed) goes back to SERVING on its own.
HEALTH_INTERVAL_S = 1.0
STATS_INTERVAL_S = 15.0


@dataclass
class StorageService:
    store: Store
    grpc: GrpcServer
    metrics: MetricsServer
    servicer: StorageServicer
    cache: FootprintCache | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float = 5.0) -> None:
        await self.grpc.stop(grace)
        await self.stop_background()

    async def stop_background(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        await self.store.stop()
        if self.cache is not None:
            await self.cache.close()
        await self.metrics.stop()


async def _watch(service: StorageService, settings: Settings) -> None:
    """Health: probe the store when idle, free disk, statistics for the gauges; health follows."""
    store, state = service.store, service.store.state
    serving: bool | None = None
    last_stats = 0.0
    while True:
        await store.probe()
        path = store.backend.disk_path()
        if path is not None:
            with contextlib.suppress(OSError):
                state.disk_free_bytes = shutil.disk_usage(path).free
                state.disk_free_low = state.disk_free_bytes < settings.storage_disk_free_min_mb * 1024 * 1024
        if time.monotonic() - last_stats >= STATS_INTERVAL_S:
            last_stats = time.monotonic()
            try:
                state.stats = await store.run_read(store.backend.stats)
                state.store_bytes = await store.run_read(store.backend.store_bytes)
            except Exception as exc:
                log.warning("cannot read storage statistics", extra={"error": str(exc)})
        healthy = state.writable
        if healthy != serving:
            serving = healthy
            await service.grpc.set_serving(healthy, SERVICE_NAME)
            if not healthy:
                log.error("storage NOT_SERVING: the store cannot commit", extra={"error": state.last_error})
        await asyncio.sleep(HEALTH_INTERVAL_S)


async def _retention_schedule(retention: Retention, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await retention.apply(dry_run=False)
        except Exception:
            log.exception("scheduled retention failed")


async def start_storage_service(
    settings: Settings, *, tracer_provider: TracerProvider | None = None, process_metrics: bool = True
) -> StorageService:
    """Open the store, start the gRPC server, /metrics and the background tasks (ports 0 = any free)."""
    registry = create_registry("storage", process_metrics=process_metrics)
    state = StoreState()
    metrics = StorageMetrics(registry, state)
    backend = open_backend(settings)
    cache = FootprintCache(settings.redis_url, metrics) if settings.redis_url else None
    pending_refreshes: set[asyncio.Task[None]] = set()

    def on_changed(bars: list[ChangedBar]) -> None:
        if cache is not None:
            task = asyncio.get_running_loop().create_task(cache.refresh(bars))
            pending_refreshes.add(task)
            task.add_done_callback(pending_refreshes.discard)

    store = Store(backend, state, metrics, on_changed, settings.storage_writer_nice)
    await store.start()
    if cache is not None and backend.migrated:
        cache.invalidate()

    async def tick_lookup(instrument: InstrumentId) -> str:
        return (await fetch_tick_sizes(settings, [instrument]))[instrument]

    retention = Retention(store, settings, metrics, cache)
    servicer = StorageServicer(store, settings, cache=cache, tick_lookup=tick_lookup, retention=retention)
    try:
        server = build_server(
            [ServiceRegistration(SERVICE_NAME, lambda s: add_storage_service(servicer, s))],
            host=settings.bind_host,
            port=settings.storage_port,
            registry=registry,
            tracer_provider=tracer_provider,
        )
        metrics_server = await start_metrics_server(
            registry, settings.bind_host, settings.storage_metrics_port
        )
    except BaseException:
        await store.stop()
        raise
    service = StorageService(store, server, metrics_server, servicer, cache)
    await server.start()
    service.tasks.append(asyncio.create_task(_watch(service, settings), name="storage-health"))
    if settings.storage_retention_interval > 0:
        service.tasks.append(
            asyncio.create_task(
                _retention_schedule(retention, settings.storage_retention_interval), name="storage-retention"
            )
        )
    log.info(
        "storage serving",
        extra={
            "grpc": f"{settings.bind_host}:{server.port}",
            "metrics": metrics_server.url,
            "store": describe(storage_uri(settings)),
            "cache": "redis" if cache is not None else "none",
        },
    )
    return service


async def run_storage(settings: Settings) -> None:
    """`marketdata serve storage`: run until SIGINT/SIGTERM."""
    await run_service(
        "storage", settings, lambda provider: start_storage_service(settings, tracer_provider=provider)
    )
