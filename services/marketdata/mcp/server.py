"""The MCP bridge: a FastMCP server over the gRPC services, served as streamable HTTP (stateless, so
replicas need no sticky sessions; bearer tokens and rate limits; GET /health; /metrics on its own
port) or over stdio for a local agent (`marketdata serve mcp [--stdio]`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastmcp import FastMCP
from opentelemetry.sdk.trace import TracerProvider
from starlette.middleware import Middleware as AsgiMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from marketdata.core.config import ConfigError, Settings, env_name
from marketdata.core.logging import configure_logging
from marketdata.core.metrics import MetricsServer, start_metrics_server
from marketdata.core.tracing import configure_tracing, shutdown_tracing
from marketdata.mcp import resources
from marketdata.mcp.access import Grant, check_grants, parse_tokens
from marketdata.mcp.backends import Backends
from marketdata.mcp.calls import ToolCalls
from marketdata.mcp.http_security import BearerGate
from marketdata.mcp.metrics import BridgeMetrics
from marketdata.mcp.ratelimit import RateLimiter
from marketdata.mcp.tools import depth, order_flow, system, volume_profile

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"
INSTRUCTIONS = """\
Crypto market data from Binance and Bybit (spot and USD-margined linear), collected live.
Start with `list_instruments` (or the resource marketdata://instruments): every tool takes instrument
keys `market:SYMBOL` (e.g. binance-futures:BTCUSDT) or a failover composite `best:SYMBOL`.
Prices and volumes are exact decimal strings; times are UTC. Every answer carries `coverage`: when
`complete` is false, say so and give its `notes`. How POC, value area, imbalance and absorption are
computed: marketdata://methodology/volume-profile and marketdata://methodology/order-flow."""


def build_mcp(backends: Backends, metrics: BridgeMetrics, limiter: RateLimiter | None) -> FastMCP:
    """The FastMCP server with every tool and resource; transport-independent."""
    mcp = FastMCP(
        "marketdata",
        instructions=INSTRUCTIONS,
        middleware=[ToolCalls(metrics)],
        # Only our ToolErrors reach clients word for word; anything else is masked (details in the log).
        mask_error_details=True,
        strict_input_validation=False,
    )
    system.register(mcp, backends, limiter)
    depth.register(mcp, backends)
    volume_profile.register(mcp, backends)
    order_flow.register(mcp, backends)
    resources.register(mcp, backends)

    @mcp.custom_route(HEALTH_PATH, methods=["GET"], include_in_schema=False)
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return mcp


async def _freeze_tool_list(mcp: FastMCP, metrics: BridgeMetrics) -> None:
    """The tool list is fixed once built: name the metric's tools, and hand the MCP SDK each tool's
    input schema directly. Without that lookup the SDK's streamable HTTP transport checks a call's
    Mcp-Param headers by running a whole tools/list per call (about 15 ms here)."""
    tools = await mcp.list_tools()
    metrics.known_tools = frozenset(t.name for t in tools)
    schemas = {t.name: t.parameters for t in tools}
    mcp._mcp_server.get_tool_input_schema = schemas.get


def _quiet_fastmcp_logging() -> None:
    """FastMCP installs its own (rich) handler on import; route its records through ours instead."""
    logger = logging.getLogger("fastmcp")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def http_grants(settings: Settings) -> tuple[Grant, ...]:
    """The configured tokens; HTTP refuses to start without one (an open endpoint is never a default)."""
    grants = parse_tokens(settings.mcp_tokens)
    if not grants:
        raise ConfigError(
            f"{env_name('mcp_tokens')}: the HTTP transport needs at least one bearer token "
            "(TOKEN or TOKEN:TIER; docs/mcp.md); use `marketdata serve mcp --stdio` for a local agent"
        )
    try:
        check_grants(grants, settings.mcp_tiers)
    except ValueError as exc:
        raise ConfigError(f"{env_name('mcp_tokens')}: {exc}") from None
    return grants


@dataclass
class McpHttpService:
    """A running HTTP bridge: `.port` (bound), `.url` (the MCP endpoint), metrics on `.metrics_server`."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int
    host: str
    metrics: BridgeMetrics
    metrics_server: MetricsServer
    backends: Backends
    limiter: RateLimiter

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{MCP_PATH}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.metrics_server.stop()
        await self.backends.close()
        await self.limiter.close()


async def start_mcp_http(
    settings: Settings, *, tracer_provider: TracerProvider | None = None, process_metrics: bool = True
) -> McpHttpService:
    """Serve streamable HTTP on MARKETDATA_BIND_HOST:MARKETDATA_MCP_PORT (0: any free port)."""
    grants = http_grants(settings)
    _quiet_fastmcp_logging()
    backends = Backends(settings, tracer_provider)
    metrics = BridgeMetrics(process_metrics=process_metrics)
    limiter = RateLimiter(settings.mcp_tiers, settings.redis_url)
    mcp = build_mcp(backends, metrics, limiter)
    await _freeze_tool_list(mcp, metrics)
    app = mcp.http_app(
        path=MCP_PATH,
        stateless_http=True,
        # On loopback, refuse requests whose Host/Origin are not local (DNS rebinding from a browser).
        host_origin_protection="auto",
        middleware=[
            AsgiMiddleware(BearerGate, grants=grants, limiter=limiter, metrics=metrics, path=MCP_PATH)
        ],
    )
    try:
        server, task, port, metrics_server = await _serve(app, settings, metrics)
    except BaseException:
        await backends.close()
        await limiter.close()
        raise
    log.info(
        "mcp bridge serving",
        extra={
            "url": f"http://{settings.bind_host}:{port}{MCP_PATH}",
            "metrics": metrics_server.url,
            "tokens": len(grants),
            "rate_limits": "shared in Redis" if limiter.shared else "per replica",
            **{f"{name}_addr": addr for name, addr in backends.addresses.items()},
        },
    )
    return McpHttpService(server, task, port, settings.bind_host, metrics, metrics_server, backends, limiter)


async def _serve(
    app: Any, settings: Settings, metrics: BridgeMetrics
) -> tuple[uvicorn.Server, asyncio.Task[None], int, MetricsServer]:
    """Listen, start uvicorn and /metrics; returns once the server accepts requests."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # Nagle holds the end of each streamed answer for the client's delayed ACK (40 ms a call).
    family = socket.AF_INET6 if ":" in settings.bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.bind_host, settings.mcp_port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"{env_name('mcp_port')}: cannot listen on {settings.bind_host}:{settings.mcp_port}: {exc.strerror}"
        ) from None
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    try:
        metrics_server = await start_metrics_server(
            metrics.registry, settings.bind_host, settings.mcp_metrics_port
        )
    except BaseException:
        sock.close()
        raise
    task = asyncio.create_task(server.serve(sockets=[sock]), name="mcp-http")
    while not server.started:
        if task.done():
            await metrics_server.stop()
            task.result()
            raise RuntimeError("the MCP HTTP server stopped while starting")
        await asyncio.sleep(0.02)
    return server, task, port, metrics_server


async def run_mcp_http(settings: Settings) -> None:
    """`marketdata serve mcp`: until SIGINT/SIGTERM (uvicorn drains open requests for up to 5 s)."""
    configure_logging("mcp", settings.log_level, settings.log_format)
    provider = configure_tracing("marketdata-mcp")
    service = await start_mcp_http(settings, tracer_provider=provider)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiter, service.task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        await service.stop()
        await asyncio.to_thread(shutdown_tracing, provider)


async def run_mcp_stdio(settings: Settings) -> None:
    """`marketdata serve mcp --stdio`: MCP over stdin/stdout for one local agent (no tokens: the agent
    started the process); logs go to stderr."""
    configure_logging("mcp", settings.log_level, settings.log_format)
    _quiet_fastmcp_logging()
    provider = configure_tracing("marketdata-mcp")
    backends = Backends(settings, provider)
    metrics = BridgeMetrics(process_metrics=False)
    mcp = build_mcp(backends, metrics, None)
    await _freeze_tool_list(mcp, metrics)
    try:
        await mcp.run_stdio_async(show_banner=False)
    finally:
        await backends.close()
        await asyncio.to_thread(shutdown_tracing, provider)
