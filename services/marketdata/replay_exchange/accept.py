"""Accepting a WebSocket connection on any of the exchange paths."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from aiohttp import web

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange.firehose import configure_flow_control
from marketdata.replay_exchange.peers import Peer
from marketdata.replay_exchange.state import ReplayState

# Client requests are small JSON messages; anything bigger is a client bug (aiohttp closes with 1009).
MAX_CLIENT_MESSAGE = 1024 * 1024


# A busy event loop hands the kernel data once per turn; a large socket send buffer keeps a fast
# reader fed between turns (the kernel caps it at net.core.wmem_max).
SEND_BUFFER_BYTES = 4 * 1024 * 1024


def _widen_send_buffer(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def not_websocket(path: str) -> web.Response:
    return web.json_response(
        {"error": f"{path} is a WebSocket endpoint; connect with a WebSocket client"}, status=400
    )


async def accept(
    request: web.Request,
    state: ReplayState,
    market: MarketKey,
    *,
    route: str,
    conn_id: str,
    combined: bool = False,
) -> tuple[web.WebSocketResponse, Peer] | None:
    """Complete the handshake and register the peer; None if the request is not a WebSocket upgrade."""
    ws = web.WebSocketResponse(
        autoping=False,  # we answer pings ourselves, so a stall can hold pongs back too
        compress=False,  # our pre-framed writes need uncompressed frames (see peers.py)
        timeout=state.config.close_timeout_s,
        max_msg_size=MAX_CLIENT_MESSAGE,
    )
    transport = request.transport
    if not ws.can_prepare(request).ok or transport is None:
        return None
    await ws.prepare(request)
    _widen_send_buffer(transport)
    if state.config.firehose:
        configure_flow_control(transport)
    peer = Peer(
        ws=ws,
        transport=transport,
        outbox=state.outbox,
        market=market,
        route=route,
        path=request.path_qs,
        conn_id=conn_id,
        combined=combined,
        now=state.now(),
        max_buffer=state.config.max_send_buffer_bytes,
    )
    state.hubs[market].add(peer)
    return ws, peer
