"""Prometheus metrics: each service owns a CollectorRegistry and serves it over HTTP (aiohttp).

No global default registry: `marketdata up` runs several services in one process, and each must
expose only its own series (and tests must not see each other's counters).
"""

from __future__ import annotations

import logging
from importlib import metadata

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Info,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

__all__ = ["MetricsServer", "create_registry", "start_metrics_server"]

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return metadata.version("marketdata")
    except metadata.PackageNotFoundError:
        return "unknown"


def create_registry(service: str, *, process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry for one service, with `marketdata_build_info{service,version}` and, by
    default, the process/platform/GC collectors (CPU, memory, fds) the dashboards use."""
    registry = CollectorRegistry(auto_describe=True)
    Info("marketdata_build", "Build and service identity.", registry=registry).info(
        {"service": service, "version": _version()}
    )
    if process_metrics:
        ProcessCollector(registry=registry)
        # The platform and GC collectors are stateless readers; registering the module's
        # instances on another registry is the documented way to reuse them.
        registry.register(PLATFORM_COLLECTOR)
        registry.register(GC_COLLECTOR)
    return registry


class MetricsServer:
    """A running /metrics + /healthz HTTP server; `.port` is the bound port (useful with port=0)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


def _app(registry: CollectorRegistry) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        # Content negotiation: Prometheus asks for OpenMetrics (which carries exemplars) when it can.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start_metrics_server(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve GET /metrics (Prometheus text or OpenMetrics) and GET /healthz on host:port."""
    runner = web.AppRunner(_app(registry), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        # (host, port) for IPv4, (host, port, flowinfo, scope) for IPv6
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    log.info("metrics server listening", extra={"host": host, "port": bound})
    return MetricsServer(runner, host, bound)
