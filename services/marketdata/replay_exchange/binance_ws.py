"""Binance WebSocket endpoints: spot `/ws`, `/ws/<streams>`, `/stream?streams=`, and the USD-M routed
endpoints `/public/...` and `/market/...` with the live JSON methods (SUBSCRIBE, UNSUBSCRIBE,
LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange import binance
from marketdata.replay_exchange.accept import accept, not_websocket
from marketdata.replay_exchange.keepalive import on_pong
from marketdata.replay_exchange.peers import OP_PONG, Peer
from marketdata.replay_exchange.state import ReplayState

_SPOT_ID = re.compile(r"^[A-Za-z0-9_-]{0,36}$")
_METHOD_LIST = ", ".join(f"`{m}`" for m in binance.VALID_METHODS)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(state: ReplayState) -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    endpoints = [
        ("", MarketKey.BINANCE_SPOT, binance.SPOT),
        ("/public", MarketKey.BINANCE_FUTURES, binance.PUBLIC),
        ("/market", MarketKey.BINANCE_FUTURES, binance.MARKET),
    ]
    for prefix, market, route in endpoints:
        out += [
            web.get(f"{prefix}/ws", _handler(state, market, route, combined=False)),
            web.get(f"{prefix}/ws/{{streams:.*}}", _handler(state, market, route, combined=False)),
            web.get(f"{prefix}/stream", _handler(state, market, route, combined=True)),
        ]
    return out


def _handler(state: ReplayState, market: MarketKey, route: str, *, combined: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve(request, state, market, route, combined)

    return handle


def _url_streams(request: web.Request, combined: bool) -> list[str]:
    text = request.query.get("streams", "") if combined else request.match_info.get("streams", "")
    return [name for name in text.split("/") if name]


async def serve(
    request: web.Request, state: ReplayState, market: MarketKey, route: str, combined: bool
) -> web.StreamResponse:
    names = _url_streams(request, combined)
    bad = [name for name in names if binance.parse_stream(name, market) is None]
    if bad and not combined and len(names) == 1 and "@" not in names[0]:
        # `/ws/<one name>` is also where user-data listen keys go, so Binance opens the connection for
        # a name that is no market stream (no `@`) and streams nothing on it; clients (ccxt's `/ws/0`)
        # rely on that and SUBSCRIBE over the socket. A malformed stream name still fails the handshake.
        names, bad = [], []
    if bad:
        return web.json_response({"code": -1121, "msg": f"Invalid stream name: {bad[0]}"}, status=400)
    fault = state.faults.take_reject(market) if names else None
    if fault is not None:
        # Streams named in the URL are a subscription too: a rejected one fails the handshake.
        message = fault.message or "Invalid request: invalid stream"
        return web.json_response({"code": -1121, "msg": message}, status=400)
    accepted = await accept(request, state, market, route=route, conn_id=uuid.uuid4().hex, combined=combined)
    if accepted is None:
        return not_websocket(request.path)
    ws, peer = accepted
    hub = state.hubs[market]
    for name in names:
        _subscribe(state, peer, name)
    limit = state.config.max_messages_per_s(market)
    try:
        async for msg in ws:
            now = state.now()
            if limit and _over_rate(peer, now, limit):
                await peer.close(1008, "Too many messages")
                break
            if msg.type == WSMsgType.TEXT:
                peer.send(handle_request(state, peer, msg.data), now=now)
            elif msg.type == WSMsgType.BINARY:
                peer.send(_invalid_json(1, 1), now=now)
            elif peer.deaf(now):
                continue  # ping_timeout fault: the client's pings and pongs are lost
            elif msg.type == WSMsgType.PING:
                peer.send(msg.data, OP_PONG, now)
            elif msg.type == WSMsgType.PONG:
                on_pong(peer, msg.data)
    finally:
        hub.remove(peer)
    return ws


def _over_rate(peer: Peer, now: float, limit: int) -> bool:
    """Binance counts every incoming frame (JSON, ping, pong) against a per-second limit."""
    window = peer.incoming
    window.append(now)
    while window and now - window[0] >= 1.0:
        window.popleft()
    return len(window) > limit


def _subscribe(state: ReplayState, peer: Peer, name: str) -> None:
    stream = binance.parse_stream(name, peer.market)
    assert stream is not None
    # A USD-M stream asked on the other route is acknowledged but never delivered: the real
    # exchange's silent failure since the 2026 routed endpoints.
    state.hubs[peer.market].subscribe(peer, name, delivers=stream.route == peer.route)


def handle_request(state: ReplayState, peer: Peer, text: str) -> bytes:
    """Answer one JSON request as Binance does; bad input gets Binance's error shape, never a crash."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return _invalid_json(exc.lineno, exc.colno)
    if not isinstance(value, dict):
        return binance.error(2, "Invalid request: expected a JSON object")
    request_id = value.get("id")
    if not _valid_id(request_id, peer.market):
        return binance.error(2, "Invalid request: request ID must be an unsigned integer")
    if "method" not in value:
        return binance.error(2, "Invalid request: missing field `method`", request_id)
    method = value["method"]
    if method not in binance.VALID_METHODS:
        return binance.error(
            2, f"Invalid request: unknown variant `{method}`, expected one of {_METHOD_LIST}", request_id
        )
    params = value.get("params")
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return _change_subscriptions(state, peer, method, params, request_id)
    if method == "LIST_SUBSCRIPTIONS":
        return binance.result(list(peer.subscriptions), request_id)
    return _property(peer, method, params, request_id)


def _change_subscriptions(state: ReplayState, peer: Peer, method: str, params: Any, request_id: Any) -> bytes:
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        return binance.error(2, "Invalid request: params must be a list of stream names", request_id)
    if any(binance.parse_stream(name, peer.market) is None for name in params):
        return binance.error(2, "Invalid request: invalid stream", request_id)
    if method == "SUBSCRIBE":
        fault = state.faults.take_reject(peer.market)
        if fault is not None:
            return binance.error(2, fault.message or "Invalid request: invalid stream", request_id)
        for name in params:
            _subscribe(state, peer, name)
    else:
        for name in params:
            state.hubs[peer.market].unsubscribe(peer, name)
    return binance.result(None, request_id)


def _property(peer: Peer, method: str, params: Any, request_id: Any) -> bytes:
    if not isinstance(params, list) or not params or not isinstance(params[0], str):
        return binance.error(2, "Invalid request: property name must be a string", request_id)
    if params[0] != "combined":
        return binance.error(0, "Unknown property", request_id)
    if method == "GET_PROPERTY":
        return binance.result(peer.combined, request_id)
    if len(params) != 2 or not isinstance(params[1], bool):
        return binance.error(1, "Invalid value type: expected Boolean", request_id)
    peer.combined = params[1]
    return binance.result(None, request_id)


def _valid_id(request_id: Any, market: MarketKey) -> bool:
    """Spot takes a 64-bit integer, a string of up to 36 characters or null; USD-M an unsigned int."""
    if request_id is None:
        return True
    if isinstance(request_id, bool):
        return False
    if isinstance(request_id, int):
        return -(2**63) <= request_id < 2**63 if market == MarketKey.BINANCE_SPOT else 0 <= request_id < 2**64
    return (
        market == MarketKey.BINANCE_SPOT and isinstance(request_id, str) and bool(_SPOT_ID.match(request_id))
    )


def _invalid_json(line: int, column: int) -> bytes:
    return binance.error(3, f"Invalid JSON: expected value at line {line} column {column}")
