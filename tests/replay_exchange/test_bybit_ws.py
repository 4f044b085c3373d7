"""Bybit v5 WebSocket protocol as a client sees it: acknowledgements and failures per category,
ping/pong, publicTrade frames and the idle cut."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from marketdata.replay_exchange import ReplayConfig, running_replay_exchange
from tests.replay_exchange.conftest import (
    control_trades,
    instruments,
    recv_json,
    recv_text,
    request,
    wait_closed,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BTC_BOTH = instruments("bybit-spot:BTCUSDT,bybit-linear:BTCUSDT")


async def test_subscribe_acks_differ_by_category(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=BTC_BOTH, rate=0)) as exchange:
        spot = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        linear = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        body = {"req_id": "x", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]}
        await spot.send_str(orjson.dumps(body).decode())
        spot_ack = await recv_text(spot)
        conn_id = orjson.loads(spot_ack)["conn_id"]
        assert uuid.UUID(conn_id)
        assert spot_ack == (
            f'{{"success":true,"ret_msg":"subscribe","conn_id":"{conn_id}","req_id":"x","op":"subscribe"}}'
        )
        await linear.send_str(orjson.dumps(body).decode())
        linear_ack = await recv_text(linear)
        conn_id = orjson.loads(linear_ack)["conn_id"]
        assert (
            linear_ack
            == f'{{"success":true,"ret_msg":"","conn_id":"{conn_id}","req_id":"x","op":"subscribe"}}'
        )
        # Without req_id: spot leaves it out, linear answers "".
        unsub = {"op": "unsubscribe", "args": ["publicTrade.BTCUSDT"]}
        assert "req_id" not in await request(spot, unsub)
        assert (await request(linear, unsub))["req_id"] == ""
        await spot.close()
        await linear.close()


async def test_ping_pong_shapes(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=BTC_BOTH, rate=0)) as exchange:
        spot = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        linear = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        pong = await request(spot, {"req_id": "1", "op": "ping"})
        assert pong == {
            "success": True,
            "ret_msg": "pong",
            "conn_id": pong["conn_id"],
            "req_id": "1",
            "op": "ping",
        }
        pong = await request(spot, {"op": "ping"})
        assert pong == {"success": True, "ret_msg": "pong", "conn_id": pong["conn_id"], "op": "ping"}
        pong = await request(linear, {"req_id": "1", "op": "ping"})
        assert list(pong) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert (pong["ret_msg"], pong["req_id"], pong["op"]) == ("pong", "1", "ping")
        assert (await request(linear, {"op": "ping"}))["req_id"] == ""
        await spot.close()
        await linear.close()


@pytest.mark.parametrize(
    ("path", "topic", "ret_msg"),
    [
        ("spot", "orderbook.500.BTCUSDT", "error:handler not found,topic:orderbook.500.BTCUSDT"),
        ("linear", "orderbook.500.BTCUSDT", "error:handler not found,topic:orderbook.500.BTCUSDT"),
        ("linear", "orderbook.50.btcusdt", "error:handler not found,topic:orderbook.50.btcusdt"),
        ("spot", "publicTrade.NOPEUSDT", "Invalid symbol :[publicTrade.NOPEUSDT]"),
        ("linear", "publicTrade.NOPEUSDT", "error:handler not found,topic:publicTrade.NOPEUSDT"),
    ],
)
async def test_bad_topics_fail_naming_the_topic(
    session: aiohttp.ClientSession, path: str, topic: str, ret_msg: str
) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=BTC_BOTH, rate=0)) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/{path}")
        answer = await request(ws, {"req_id": "e1", "op": "subscribe", "args": [topic]})
        assert answer["success"] is False and answer["ret_msg"] == ret_msg and answer["req_id"] == "e1"
        await ws.close()


async def test_spot_refuses_more_than_ten_args_linear_does_not(session: aiohttp.ClientSession) -> None:
    topics = [
        "publicTrade.BTCUSDT",
        "tickers.BTCUSDT",
        *(f"orderbook.{d}.BTCUSDT" for d in (1, 50, 200, 1000)),
        *(f"kline.{i}.BTCUSDT" for i in (1, 3, 5, 15, 30)),
    ]
    assert len(topics) == 11
    async with running_replay_exchange(ReplayConfig(instruments=BTC_BOTH, rate=0)) as exchange:
        spot = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        answer = await request(spot, {"op": "subscribe", "args": topics})
        assert (answer["success"], answer["ret_msg"]) == (False, "args size >10")
        assert (await request(spot, {"op": "subscribe", "args": topics[:10]}))["success"] is True
        linear = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        assert (await request(linear, {"op": "subscribe", "args": topics}))["success"] is True
        again = await request(linear, {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
        while "op" not in again:  # the order-book topics just subscribed push their snapshots
            again = await recv_json(linear)
        assert (again["success"], again["ret_msg"]) == (
            False,
            "error:already subscribed,topic:tickers.BTCUSDT",
        )
        await spot.close()
        await linear.close()


async def test_bad_input_is_answered_and_the_socket_stays_open(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=BTC_BOTH, rate=0)) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        answer = await request(ws, "hello")
        assert answer["success"] is False
        assert answer["ret_msg"].startswith("Failed to decode incoming data:readObjectStart: expect { or n")
        answer = await request(ws, {"op": "nope"})
        assert (answer["success"], answer["ret_msg"], answer["op"]) == (False, "error:invalid op", "nope")
        answer = await request(ws, {"op": "subscribe", "args": "publicTrade.BTCUSDT"})
        assert answer["success"] is False
        await ws.send_bytes(b"\x00\xff")
        assert (await recv_json(ws))["success"] is False
        assert (await request(ws, {"op": "ping"}))["ret_msg"] == "pong"
        await ws.close()


async def _collect_trades(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Any]:
    frames: list[Any] = []
    total = 0
    while total < count:
        frame = await recv_json(ws)
        if "topic" in frame:
            frames.append(frame)
            total += len(frame["data"])
    return frames


async def test_linear_public_trade_frames(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments("bybit-linear:BTCUSDT"), rate=4000, max_trades=400, trades_per_frame=7
    )
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await ws.send_str('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')
        frames = await _collect_trades(ws, 400)
        await ws.close()
        generated = await control_trades(session, exchange, "bybit-linear:BTCUSDT")
    items = [item for frame in frames for item in frame["data"]]
    assert any(len(frame["data"]) > 1 for frame in frames)
    for frame in frames:
        assert list(frame) == ["topic", "type", "ts", "data"]
        assert (frame["topic"], frame["type"]) == ("publicTrade.BTCUSDT", "snapshot")
        data = frame["data"]
        assert 1 <= len(data) <= 7
        times = [item["T"] for item in data]
        assert times == sorted(times) and frame["ts"] >= times[-1]
    for item, trade in zip(items, generated, strict=True):
        assert list(item) == ["T", "s", "S", "v", "p", "L", "i", "BT", "RPI", "seq"]
        assert UUID.match(item["i"]) and item["L"] in (
            "PlusTick",
            "MinusTick",
            "ZeroPlusTick",
            "ZeroMinusTick",
        )
        assert re.fullmatch(r"\d+\.\d{2}", item["p"]) and re.fullmatch(r"\d+\.\d{3}", item["v"])
        assert (item["i"], item["p"], item["v"], item["S"], item["T"]) == (
            trade["id"],
            trade["price"],
            trade["size"],
            "Buy" if trade["side"] == "buy" else "Sell",
            trade["time"],
        )
    seqs = [item["seq"] for item in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_spot_public_trade_frames_have_no_tick_direction(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("bybit-spot:BTCUSDT"), rate=2000, max_trades=50)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        await ws.send_str('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')
        frames = await _collect_trades(ws, 50)
        await ws.close()
    items = [item for frame in frames for item in frame["data"]]
    assert all(list(item) == ["T", "s", "S", "v", "p", "i", "BT", "RPI", "seq"] for item in items)
    ids = [int(item["i"]) for item in items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert any(b - a > 1 for a, b in itertools.pairwise(ids))  # rising, not consecutive


async def test_idle_connections_are_cut_pinging_ones_are_not(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(
        ReplayConfig(instruments=BTC_BOTH, rate=0, bybit_idle_timeout_s=0.3)
    ) as ex:
        idle = await session.ws_connect(f"{ex.ws_url}/v5/public/spot")
        busy = await session.ws_connect(f"{ex.ws_url}/v5/public/spot")

        async def keep_pinging() -> None:
            for _ in range(12):
                await request(busy, {"op": "ping"})
                await asyncio.sleep(0.1)

        pinger = asyncio.create_task(keep_pinging())
        closed = await wait_closed(idle, within=3)
        assert closed.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)  # cut, no close frame
        await pinger
        assert (await request(busy, {"op": "ping"}))["ret_msg"] == "pong"
        await busy.close()
