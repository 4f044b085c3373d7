"""Helpers for replay exchange tests: a client session and small protocol-level utilities.

Every test runs a real server on 127.0.0.1 (port 0) with `running_replay_exchange` and talks to it
with real aiohttp clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from marketdata.core.instruments import InstrumentId, parse_instrument_list
from marketdata.replay_exchange.server import ReplayHandle

ALL_BTC = "binance-spot:BTCUSDT,binance-futures:BTCUSDT,bybit-spot:BTCUSDT,bybit-linear:BTCUSDT"


def instruments(text: str = ALL_BTC) -> tuple[InstrumentId, ...]:
    return parse_instrument_list(text)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def recv_text(ws: aiohttp.ClientWebSocketResponse, within: float = 3.0) -> str:
    msg = await asyncio.wait_for(ws.receive(), within)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
    assert isinstance(msg.data, str)
    return msg.data


async def recv_json(ws: aiohttp.ClientWebSocketResponse, within: float = 3.0) -> Any:
    return orjson.loads(await recv_text(ws, within))


async def request(ws: aiohttp.ClientWebSocketResponse, body: Any, within: float = 3.0) -> Any:
    await ws.send_str(body if isinstance(body, str) else orjson.dumps(body).decode())
    return await recv_json(ws, within)


async def expect_silence(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    try:
        msg = await asyncio.wait_for(ws.receive(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"expected no message for {seconds}s, got {msg.type} {str(msg.data)[:200]!r}")


async def wait_closed(ws: aiohttp.ClientWebSocketResponse, within: float = 3.0) -> aiohttp.WSMessage:
    """Read until the connection ends; returns the CLOSE/CLOSED/ERROR message."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), within)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return msg


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, **kwargs) as response:
        return response.status, orjson.loads(await response.read())


async def status(session: aiohttp.ClientSession, exchange: ReplayHandle) -> Any:
    code, body = await get_json(session, f"{exchange.http_url}/_replay/status")
    assert code == 200
    return body


async def control_trades(
    session: aiohttp.ClientSession, exchange: ReplayHandle, instrument: str
) -> list[Any]:
    code, body = await get_json(
        session, f"{exchange.http_url}/_replay/trades", params={"instrument": instrument}
    )
    assert code == 200, body
    trades: list[Any] = body["trades"]
    return trades


async def post_fault(session: aiohttp.ClientSession, replay: ReplayHandle, /, **fault: Any) -> Any:
    async with session.post(f"{replay.http_url}/_replay/faults", json=fault) as response:
        body = orjson.loads(await response.read())
        assert response.status == 200, body
        return body


async def wait_for(predicate: Any, within: float = 5.0, interval: float = 0.02) -> None:
    """Poll an async predicate until it is true."""
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)
