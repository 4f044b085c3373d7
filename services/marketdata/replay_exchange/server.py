"""The replay exchange server: one aiohttp app on one port serving Binance and Bybit WebSocket and
REST paths and the /_replay/ control API."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from marketdata.replay_exchange import binance, binance_rest, binance_ws, bybit_rest, bybit_ws, control
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.replay_exchange.peers import ws_frame
from marketdata.replay_exchange.state import ReplayState

STATE_KEY = web.AppKey("replay_state", ReplayState)
# How long a stopping server waits for handlers (WebSocket loops end once their sockets close).
SHUTDOWN_TIMEOUT_S = 3.0


def build_app(config: ReplayConfig) -> web.Application:
    """The aiohttp application; its ReplayState is `app[STATE_KEY]`. Bad recordings raise ValueError here."""
    state = ReplayState(config)
    app = web.Application()
    app[STATE_KEY] = state
    app.add_routes(
        binance_ws.routes(state)
        + bybit_ws.routes(state)
        + binance_rest.routes(state)
        + bybit_rest.routes(state)
        + control.routes(state)
    )
    app.on_startup.append(_start)
    app.on_shutdown.append(_close_connections)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    await app[STATE_KEY].start()


async def _stop(app: web.Application) -> None:
    await app[STATE_KEY].stop()


async def _close_connections(app: web.Application) -> None:
    """Going away: Binance clients first get serverShutdown, as the real servers send it."""
    state = app[STATE_KEY]
    payload = binance.server_shutdown(time.time_ns() // 1_000_000)
    closing = []
    for hub in state.hubs.values():
        for peer in list(hub.peers):
            if peer.market.is_binance and not peer.gone:
                wrapped = binance.combined(binance.SERVER_SHUTDOWN_STREAM, payload)
                peer.queue(ws_frame(wrapped if peer.combined else payload))
                peer.flush(state.now())
            closing.append(peer.close(1001, "server shutting down"))
    await asyncio.gather(*closing, return_exceptions=True)


@dataclass(frozen=True)
class ReplayHandle:
    """A running replay exchange: give `ws_url` and `http_url` to a collector as every exchange's base."""

    host: str
    port: int
    http_url: str
    ws_url: str
    app: web.Application

    @property
    def state(self) -> ReplayState:
        return self.app[STATE_KEY]


@contextlib.asynccontextmanager
async def running_replay_exchange(
    config: ReplayConfig, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[ReplayHandle]:
    """Serve on host:port (0 = a free port) for the duration of the block, then shut down cleanly;
    over TLS (https/wss) when `ssl_context` is given."""
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        url_host = f"[{host}]" if ":" in host else host
        secure = "s" if ssl_context is not None else ""
        yield ReplayHandle(
            host=host,
            port=bound_port,
            http_url=f"http{secure}://{url_host}:{bound_port}",
            ws_url=f"ws{secure}://{url_host}:{bound_port}",
            app=app,
        )
    finally:
        await runner.cleanup()


async def serve(
    config: ReplayConfig,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    ready: Callable[[ReplayHandle], None] | None = None,
) -> None:
    """Serve until cancelled; `ready` is called once the port is bound."""
    async with running_replay_exchange(config, host, port) as handle:
        if ready is not None:
            ready(handle)
        await asyncio.Event().wait()
