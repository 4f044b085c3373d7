"""`marketdata serve <service>`: the one lifecycle every service runs in its own process.

Logging and tracing first, then the service's own start; on SIGINT/SIGTERM the gRPC server drains
(health NOT_SERVING, then a grace period), the service's background work stops, and spans are flushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from opentelemetry.sdk.trace import TracerProvider

from marketdata.core.config import Settings
from marketdata.core.garbage import settle_garbage_collector
from marketdata.core.grpc_server import GrpcServer, serve_until_signal
from marketdata.core.logging import configure_logging
from marketdata.core.tracing import configure_tracing, shutdown_tracing


class RunningService(Protocol):
    grpc: GrpcServer

    async def stop_background(self) -> None:
        """Stop what runs beside the gRPC server (feeds, stores, channels, /metrics)."""


async def run_service(
    name: str, settings: Settings, start: Callable[[TracerProvider], Awaitable[RunningService]]
) -> None:
    """Run one service until SIGINT/SIGTERM; `start` builds and starts it with the tracer provider."""
    configure_logging(name, settings.log_level, settings.log_format)
    provider = configure_tracing(f"marketdata-{name}")
    service = await start(provider)
    settle_garbage_collector()
    try:
        await serve_until_signal(service.grpc)
    finally:
        await service.stop_background()
        await asyncio.to_thread(shutdown_tracing, provider)
