"""The volume-profile service: gRPC (health, reflection, tracing) + /metrics, reading storage and the
collector's live trades."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from grpc import aio as grpc_aio
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from marketdata.core.bar_sources import LiveTrades, StorageSource
from marketdata.core.composite import CompositeResolver
from marketdata.core.config import ConfigError, Settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.grpc_server import GrpcServer, ServiceRegistration, build_server
from marketdata.core.instruments import InstrumentId
from marketdata.core.metrics import MetricsServer, create_registry, start_metrics_server
from marketdata.core.service_runner import run_service
from marketdata.volume_profile.cache import RangeCache
from marketdata.volume_profile.service import SERVICE_NAME, VolumeProfileServicer, add_volume_profile_service

log = logging.getLogger(__name__)

__all__ = ["VolumeProfileService", "run_volume_profile", "start_volume_profile_service"]


class _Metrics(Collector):
    """Cache hits/misses and live-trade figures, read at scrape time."""

    def __init__(self, cache: RangeCache, live: LiveTrades | None) -> None:
        self.cache = cache
        self.live = live

    def collect(self):  # type: ignore[no-untyped-def]
        hits = CounterMetricFamily(
            "marketdata_volume_profile_cache_hits", "Closed-range cache lookups that hit."
        )
        hits.add_metric([], self.cache.hits)
        misses = CounterMetricFamily(
            "marketdata_volume_profile_cache_misses", "Closed-range cache lookups that missed."
        )
        misses.add_metric([], self.cache.misses)
        live = GaugeMetricFamily(
            "marketdata_volume_profile_live_connected", "1 while the collector's trade stream is connected."
        )
        live.add_metric([], 1.0 if self.live is not None and self.live.connected else 0.0)
        trades = CounterMetricFamily(
            "marketdata_volume_profile_live_trades", "Trades received from the collector's stream."
        )
        trades.add_metric([], self.live.trades_seen if self.live is not None else 0)
        yield from (hits, misses, live, trades)


@dataclass
class VolumeProfileService:
    grpc: GrpcServer
    metrics: MetricsServer
    servicer: VolumeProfileServicer
    storage_channel: grpc_aio.Channel
    collector_channel: grpc_aio.Channel | None
    live: LiveTrades | None
    cache: RangeCache

    async def stop(self, grace: float = 5.0) -> None:
        await self.grpc.stop(grace)
        await self.stop_background()

    async def stop_background(self) -> None:
        if self.live is not None:
            await self.live.stop()
        await self.storage_channel.close()
        if self.collector_channel is not None:
            await self.collector_channel.close()
        await self.cache.close()
        await self.metrics.stop()


async def start_volume_profile_service(
    settings: Settings,
    *,
    tracer_provider: TracerProvider | None = None,
    process_metrics: bool = True,
    tick_sizes: dict[InstrumentId, str] | None = None,
    live: bool = True,
) -> VolumeProfileService:
    """Start gRPC and /metrics (ports 0 = any free). Needs MARKETDATA_STORAGE_ADDR; with
    MARKETDATA_COLLECTOR_ADDR the current minute comes from the collector's live trades.
    `tick_sizes` pre-seeds the tick sizes (otherwise asked from the exchanges' metadata)."""
    if not settings.storage_addr:
        raise ConfigError(
            "MARKETDATA_STORAGE_ADDR: the volume-profile service reads storage; set its address"
        )
    registry = create_registry("volume-profile", process_metrics=process_metrics)
    storage_channel = create_channel(settings.storage_addr, tracer_provider)
    storage = StorageSource(storage_channel, int(settings.storage_footprint_max_range * 1000))
    collector_channel = None
    live_trades = None
    if settings.collector_addr:
        collector_channel = create_channel(settings.collector_addr, tracer_provider)
        if live:
            live_trades = LiveTrades(collector_channel, settings.instruments)
            live_trades.start()
    entries = settings.volume_profile_cache_entries if settings.volume_profile_cache_ttl > 0 else 0
    cache = RangeCache(entries, settings.volume_profile_cache_ttl, settings.redis_url)
    registry.register(_Metrics(cache, live_trades))
    servicer = VolumeProfileServicer(
        settings, storage, live_trades, cache, tick_sizes, CompositeResolver(collector_channel)
    )
    try:
        server = build_server(
            [ServiceRegistration(SERVICE_NAME, lambda s: add_volume_profile_service(servicer, s))],
            host=settings.bind_host,
            port=settings.volume_profile_port,
            registry=registry,
            tracer_provider=tracer_provider,
        )
        metrics_server = await start_metrics_server(
            registry, settings.bind_host, settings.volume_profile_metrics_port
        )
    except BaseException:
        if live_trades is not None:
            await live_trades.stop()
        raise
    service = VolumeProfileService(
        server, metrics_server, servicer, storage_channel, collector_channel, live_trades, cache
    )
    await server.start()
    log.info(
        "volume-profile serving",
        extra={
            "grpc": f"{settings.bind_host}:{server.port}",
            "metrics": metrics_server.url,
            "storage": settings.storage_addr,
            "live": settings.collector_addr or "none",
            "cache": "redis" if settings.redis_url else f"in-process ({entries})",
        },
    )
    return service


async def run_volume_profile(settings: Settings) -> None:
    """`marketdata serve volume-profile`: run until SIGINT/SIGTERM."""
    await run_service(
        "volume-profile",
        settings,
        lambda provider: start_volume_profile_service(settings, tracer_provider=provider),
    )
