"""Bybit v5 public WebSocket endpoints `/v5/public/spot` and `/v5/public/linear`: subscribe,
unsubscribe and the application-level ping, with the answers each category really gives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange import bybit
from marketdata.replay_exchange.accept import accept, not_websocket
from marketdata.replay_exchange.peers import OP_PONG, Peer
from marketdata.replay_exchange.state import ReplayState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(state: ReplayState) -> list[web.RouteDef]:
    return [
        web.get("/v5/public/spot", _handler(state, MarketKey.BYBIT_SPOT)),
        web.get("/v5/public/linear", _handler(state, MarketKey.BYBIT_LINEAR)),
    ]


def _handler(state: ReplayState, market: MarketKey) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve(request, state, market)

    return handle


async def serve(request: web.Request, state: ReplayState, market: MarketKey) -> web.StreamResponse:
    accepted = await accept(request, state, market, route="v5", conn_id=bybit.new_conn_id(market))
    if accepted is None:
        return not_websocket(request.path)
    ws, peer = accepted
    try:
        async for msg in ws:
            now = state.now()
            if msg.type == WSMsgType.TEXT:
                answer = handle_request(state, peer, msg.data, now)
                if answer:
                    peer.send(answer, now=now)
            elif msg.type == WSMsgType.BINARY:
                peer.send(_decode_error(peer, msg.data.decode("utf-8", "replace")), now=now)
            elif msg.type == WSMsgType.PING and not peer.deaf(now):
                peer.last_client_ping = now
                peer.send(msg.data, OP_PONG, now)
    finally:
        state.hubs[market].remove(peer)
    return ws


def handle_request(state: ReplayState, peer: Peer, text: str, now: float) -> bytes:
    """Answer one request (b"" when nothing answers); bad input gets Bybit's success:false answer and the
    socket stays open."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _decode_error(peer, text)
    if not isinstance(value, dict):
        return _decode_error(peer, text)
    req_id = value.get("req_id")
    req_id = None if req_id is None else str(req_id)
    op = value.get("op")
    if op == "ping":
        if peer.deaf(now):
            return b""  # ping_timeout fault: the ping is lost, nothing answers it
        peer.last_client_ping = now
        return bybit.response(peer.market, True, "pong", peer.conn_id, "ping", req_id)
    if op in ("subscribe", "unsubscribe"):
        return _topics(state, peer, op, value.get("args"), req_id)
    op_text = op if isinstance(op, str) else ""
    return bybit.response(peer.market, False, "error:invalid op", peer.conn_id, op_text, req_id)


def _topics(state: ReplayState, peer: Peer, op: str, args: Any, req_id: str | None) -> bytes:
    market = peer.market
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return bybit.response(market, False, "Params Error", peer.conn_id, op, req_id)
    hub = state.hubs[market]
    if op == "unsubscribe":
        for topic in args:
            hub.unsubscribe(peer, topic)
        return bybit.response(market, True, bybit.ack_message(market, op), peer.conn_id, op, req_id)
    if market == MarketKey.BYBIT_SPOT and len(args) > bybit.SPOT_MAX_ARGS:
        return bybit.response(market, False, "args size >10", peer.conn_id, op, req_id)
    fault = state.faults.take_reject(market)
    if fault is not None:
        first = args[0] if args else ""
        message = fault.message or f"error:handler not found,topic:{first}"
        return bybit.response(market, False, message, peer.conn_id, op, req_id)
    symbols = set(state.symbols(market))
    failure: str | None = None
    for topic in args:
        problem = bybit.check_topic(topic, market, symbols)
        if problem is None and topic in peer.subscriptions:
            problem = f"error:already subscribed,topic:{topic}"
        if problem is None:
            hub.subscribe(peer, topic, delivers=True)
        elif failure is None:
            # The valid topics of the request are subscribed; the answer names the first bad one.
            failure = problem
    if failure is not None:
        return bybit.response(market, False, failure, peer.conn_id, op, req_id)
    return bybit.response(market, True, bybit.ack_message(market, op), peer.conn_id, op, req_id)


def _decode_error(peer: Peer, text: str) -> bytes:
    found = text[:1] or "EOF"
    message = (
        f"Failed to decode incoming data:readObjectStart: expect {{ or n, but found {found}, "
        f"error found in #1 byte of ...|{text[:10]}|..."
    )
    return bybit.response(peer.market, False, message, peer.conn_id, "", None)
