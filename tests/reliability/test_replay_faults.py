"""The replay exchange's faults added for the reliability suite, as a plain client sees them:
`ping_timeout` (the client's keepalives are lost) and the `oversized` malformed frame."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from marketdata.replay_exchange.config import ReplayConfig
from marketdata.replay_exchange.faults import parse_fault_text
from marketdata.replay_exchange.malformed import OVERSIZED_FRAME_BYTES
from marketdata.replay_exchange.server import running_replay_exchange
from tests.replay_exchange.conftest import instruments, post_fault, recv_json, request

pytestmark = pytest.mark.reliability


async def read_answering_pings(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> int:
    """Read for `seconds` (or until the connection ends), answering pings; the trade frames read."""
    trades = 0
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            message = await asyncio.wait_for(ws.receive(), left)
        except TimeoutError:
            break
        if message.type == aiohttp.WSMsgType.PING:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.pong(message.data)
        elif message.type == aiohttp.WSMsgType.TEXT:
            trades += 1
        else:
            break  # closed
    return trades


async def test_lost_pongs_get_a_binance_connection_cut_at_the_pong_deadline() -> None:
    config = ReplayConfig(
        instruments=instruments("binance-spot:BTCUSDT"),
        rate=50,
        binance_spot_ping_interval_s=0.2,
        binance_spot_pong_timeout_s=0.6,
    )
    async with running_replay_exchange(config) as exchange, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade", autoping=False)
        assert await read_answering_pings(ws, 1.0) > 0  # pongs answered: the connection stays
        assert not ws.closed
        await post_fault(session, exchange, kind="ping_timeout", market="binance-spot", seconds=5)
        assert await read_answering_pings(ws, 4.0) > 0  # data keeps coming until the server cuts
        assert ws.close_code == 1008


async def test_lost_pings_get_no_bybit_pong() -> None:
    config = ReplayConfig(instruments=instruments("bybit-linear:BTCUSDT"), rate=0)
    async with running_replay_exchange(config) as exchange, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await post_fault(session, exchange, kind="ping_timeout", market="bybit-linear", seconds=0.5)
        await ws.send_str('{"req_id":"lost","op":"ping"}')
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.3)
        await asyncio.sleep(0.3)
        answer = await request(ws, {"req_id": "heard", "op": "ping"})
        assert answer["req_id"] == "heard"
        await ws.close()


async def test_oversized_frame_is_one_20_mib_frame_by_name_only() -> None:
    assert parse_fault_text("malformed:variant=oversized").variant == "oversized"
    with pytest.raises(ValueError, match="ping_timeout fault: seconds must be > 0"):
        parse_fault_text("ping_timeout:market=binance-spot")
    config = ReplayConfig(instruments=instruments("binance-futures:BTCUSDT"), rate=20)
    async with running_replay_exchange(config) as exchange, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{exchange.ws_url}/public/ws/btcusdt@trade", max_msg_size=0)
        await recv_json(ws)
        await post_fault(session, exchange, kind="malformed", variant="oversized", market="binance-futures")
        while True:
            message = await asyncio.wait_for(ws.receive(), 10)
            if len(message.data) > 1000:
                break
        assert len(message.data) > OVERSIZED_FRAME_BYTES
        assert not ws.closed  # the exchange sent it; refusing it is the client's business
        await ws.close()
