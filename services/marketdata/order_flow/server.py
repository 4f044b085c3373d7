"""The order-flow service: gRPC (health, reflection, tracing) + /metrics, reading storage and the
collector's live trades."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from grpc import aio as grpc_aio
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from marketdata.core.bar_sources import StorageSource
from marketdata.core.composite import CompositeResolver
from marketdata.core.config import ConfigError, Settings
from marketdata.core.coverage import CoverageSource
from marketdata.core.grpc_client import create_channel
from marketdata.core.grpc_server import GrpcServer, ServiceRegistration, build_server
from marketdata.core.instruments import InstrumentId
from marketdata.core.metrics import MetricsServer, create_registry, start_metrics_server
from marketdata.core.service_runner import run_service
from marketdata.order_flow.book import BookWatch
from marketdata.order_flow.data import FlowData, MinuteCache
from marketdata.order_flow.service import SERVICE_NAME, OrderFlowServicer, add_order_flow_service
from marketdata.order_flow.stream import FlowLiveTrades, StreamHub

log = logging.getLogger(__name__)

__all__ = ["OrderFlowService", "run_order_flow", "start_order_flow_service"]


class _Metrics(Collector):
    """Requests, stream updates, cache and live-trade figures, read at scrape time."""

    def __init__(self, servicer: OrderFlowServicer, live: FlowLiveTrades | None) -> None:
        self.servicer = servicer
        self.live = live

    def collect(self):  # type: ignore[no-untyped-def]
        servicer = self.servicer
        requests = CounterMetricFamily(
            "marketdata_order_flow_requests", "Order-flow RPCs received, by method.", labels=["method"]
        )
        for method in ("GetOrderFlow", "StreamOrderFlow"):
            requests.add_metric([method], servicer.counters.requests.get(method, 0))
        hub = servicer.hub
        updates = CounterMetricFamily(
            "marketdata_order_flow_stream_updates",
            "StreamOrderFlow updates published (all subscription keys).",
        )
        updates.add_metric([], hub.updates if hub is not None else 0)
        subscribers = GaugeMetricFamily(
            "marketdata_order_flow_stream_subscribers", "StreamOrderFlow calls open now."
        )
        subscribers.add_metric([], hub.subscribers if hub is not None else 0)
        producers = GaugeMetricFamily(
            "marketdata_order_flow_stream_keys", "Distinct subscription keys being computed now."
        )
        producers.add_metric([], len(hub.producers) if hub is not None else 0)
        cache = servicer.data.cache
        hits = CounterMetricFamily(
            "marketdata_order_flow_cache_hits", "Closed-minute cache lookups that hit."
        )
        hits.add_metric([], cache.hits)
        misses = CounterMetricFamily(
            "marketdata_order_flow_cache_misses", "Closed-minute cache lookups that missed."
        )
        misses.add_metric([], cache.misses)
        live = GaugeMetricFamily(
            "marketdata_order_flow_live_connected", "1 while the collector's trade stream is connected."
        )
        live.add_metric([], 1.0 if self.live is not None and self.live.connected else 0.0)
        trades = CounterMetricFamily(
            "marketdata_order_flow_live_trades", "Trades received from the collector's stream."
        )
        trades.add_metric([], self.live.trades_seen if self.live is not None else 0)
        yield from (requests, updates, subscribers, producers, hits, misses, live, trades)


@dataclass
class OrderFlowService:
    grpc: GrpcServer
    metrics: MetricsServer
    servicer: OrderFlowServicer
    storage_channel: grpc_aio.Channel
    collector_channel: grpc_aio.Channel | None
    live: FlowLiveTrades | None

    async def stop(self, grace: float = 5.0) -> None:
        await self.grpc.stop(grace)
        await self.stop_background()

    async def stop_background(self) -> None:
        if self.servicer.hub is not None:
            self.servicer.hub.stop()
            if self.servicer.hub.books is not None:
                await self.servicer.hub.books.stop()
        if self.live is not None:
            await self.live.stop()
        await self.storage_channel.close()
        if self.collector_channel is not None:
            await self.collector_channel.close()
        await self.metrics.stop()


async def start_order_flow_service(
    settings: Settings,
    *,
    tracer_provider: TracerProvider | None = None,
    process_metrics: bool = True,
    tick_sizes: dict[InstrumentId, str] | None = None,
    live: bool = True,
) -> OrderFlowService:
    """Start gRPC and /metrics (ports 0 = any free). Needs MARKETDATA_STORAGE_ADDR; with
    MARKETDATA_COLLECTOR_ADDR the newest minutes and the stream come from the collector's live trades.
    `tick_sizes` pre-seeds the tick sizes (otherwise asked from the exchanges' metadata)."""
    if not settings.storage_addr:
        raise ConfigError("MARKETDATA_STORAGE_ADDR: the order-flow service reads storage; set its address")
    registry = create_registry("order-flow", process_metrics=process_metrics)
    storage_channel = create_channel(settings.storage_addr, tracer_provider)
    storage = StorageSource(storage_channel, int(settings.storage_footprint_max_range * 1000))
    collector_channel = None
    live_trades = None
    if live and settings.collector_addr:
        collector_channel = create_channel(settings.collector_addr, tracer_provider)
        live_trades = FlowLiveTrades(collector_channel, settings.instruments)
        live_trades.start()
    cache = MinuteCache(settings.order_flow_cache_entries, settings.order_flow_cache_ttl)
    data = FlowData(
        storage, storage_channel, live_trades, cache, int(settings.storage_query_max_range * 1000)
    )
    composites = CompositeResolver(collector_channel)
    books = BookWatch(collector_channel, settings.books())
    hub = (
        StreamHub(data, live_trades, composites, settings.order_flow_stream_buffer, books)
        if live_trades is not None
        else None
    )
    servicer = OrderFlowServicer(
        settings, storage, data, CoverageSource(storage, live_trades), composites, hub, tick_sizes
    )
    registry.register(_Metrics(servicer, live_trades))
    try:
        server = build_server(
            [ServiceRegistration(SERVICE_NAME, lambda s: add_order_flow_service(servicer, s))],
            host=settings.bind_host,
            port=settings.order_flow_port,
            registry=registry,
            tracer_provider=tracer_provider,
        )
        metrics_server = await start_metrics_server(
            registry, settings.bind_host, settings.order_flow_metrics_port
        )
    except BaseException:
        if live_trades is not None:
            await live_trades.stop()
        raise
    service = OrderFlowService(
        server, metrics_server, servicer, storage_channel, collector_channel, live_trades
    )
    await server.start()
    log.info(
        "order-flow serving",
        extra={
            "grpc": f"{settings.bind_host}:{server.port}",
            "metrics": metrics_server.url,
            "storage": settings.storage_addr,
            "live": settings.collector_addr or "none",
        },
    )
    return service


async def run_order_flow(settings: Settings) -> None:
    """`marketdata serve order-flow`: run until SIGINT/SIGTERM."""
    await run_service(
        "order-flow", settings, lambda provider: start_order_flow_service(settings, tracer_provider=provider)
    )
