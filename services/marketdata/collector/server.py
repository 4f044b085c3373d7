"""The collector as a service: engine + gRPC (health, reflection, tracing) + /metrics, with graceful stop."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider

from marketdata.collector.collector import Collector
from marketdata.collector.service import SERVICE_NAME, CollectorServicer, add_collector_service
from marketdata.core.config import Settings
from marketdata.core.grpc_server import GrpcServer, ServiceRegistration, build_server
from marketdata.core.metrics import MetricsServer, create_registry, start_metrics_server
from marketdata.core.service_runner import run_service

log = logging.getLogger(__name__)


@dataclass
class CollectorService:
    collector: Collector
    grpc: GrpcServer
    metrics: MetricsServer

    async def stop(self, grace: float = 5.0) -> None:
        # Health goes NOT_SERVING and streams get `grace` to finish before the feeds stop.
        await self.grpc.stop(grace)
        await self.stop_background()

    async def stop_background(self) -> None:
        await self.collector.stop()
        await self.metrics.stop()


async def start_collector_service(
    settings: Settings, *, tracer_provider: TracerProvider | None = None, process_metrics: bool = True
) -> CollectorService:
    """Start feeds, the gRPC server and the metrics endpoint (ports from settings; 0 = any free port)."""
    registry = create_registry("collector", process_metrics=process_metrics)
    collector = Collector(settings, registry)
    servicer = CollectorServicer(collector)
    server = build_server(
        [ServiceRegistration(SERVICE_NAME, lambda s: add_collector_service(servicer, s))],
        host=settings.bind_host,
        port=settings.collector_port,
        registry=registry,
        tracer_provider=tracer_provider,
    )
    metrics = await start_metrics_server(registry, settings.bind_host, settings.collector_metrics_port)
    await collector.start()
    await server.start()
    log.info(
        "collector serving",
        extra={"grpc": f"{settings.bind_host}:{server.port}", "metrics": metrics.url},
    )
    return CollectorService(collector, server, metrics)


async def run_collector(settings: Settings) -> None:
    """`marketdata serve collector`: run until SIGINT/SIGTERM."""
    await run_service(
        "collector", settings, lambda provider: start_collector_service(settings, tracer_provider=provider)
    )
