"""Binance WebSocket protocol as a client sees it: methods and their answers, errors, payload
shapes, raw vs combined streams, USD-M routes, keepalive and the message rate limit."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson
import pytest

from marketdata.replay_exchange import ReplayConfig, running_replay_exchange
from tests.replay_exchange.conftest import (
    control_trades,
    expect_silence,
    instruments,
    recv_json,
    recv_text,
    request,
    wait_closed,
)


async def test_subscribe_list_unsubscribe_answer_like_binance(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig()) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws")
        await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms"],"id":1}')
        assert await recv_text(ws) == '{"result":null,"id":1}'
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {
            "result": ["btcusdt@trade", "btcusdt@depth@100ms"],
            "id": 2,
        }
        assert await request(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 3}) == {
            "result": None,
            "id": 3,
        }
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "list-4"}) == {
            "result": ["btcusdt@trade"],
            "id": "list-4",
        }
        await ws.close()


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (
            "hello",
            {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}, "id": None},
        ),
        (
            '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":true}',
            {
                "error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
                "id": None,
            },
        ),
        (
            '{"params":[],"id":5}',
            {"error": {"code": 2, "msg": "Invalid request: missing field `method`"}, "id": 5},
        ),
        (
            '{"method":"SUBSCRIBE","params":["BTCUSDT@trade"],"id":7}',
            {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7},
        ),
        (
            '{"method":"SUBSCRIBE","params":["btcusdt@nonsense"],"id":8}',
            {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 8},
        ),
        (
            '{"method":"SET_PROPERTY","params":["combined","yes"],"id":9}',
            {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": 9},
        ),
        (
            '{"method":"GET_PROPERTY","params":["colour"],"id":10}',
            {"error": {"code": 0, "msg": "Unknown property"}, "id": 10},
        ),
    ],
)
async def test_bad_requests_get_binance_errors_and_the_socket_stays_open(
    session: aiohttp.ClientSession, sent: str, answer: object
) -> None:
    async with running_replay_exchange(ReplayConfig()) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws")
        assert await request(ws, sent) == answer
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 99}) == {"result": [], "id": 99}
        await ws.close()


async def test_unknown_method_names_the_variant(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig()) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws")
        answer = await request(ws, {"method": "SUBSCRIBEX", "params": [], "id": 6})
        assert answer["id"] == 6 and answer["error"]["code"] == 2
        assert answer["error"]["msg"].startswith(
            "Invalid request: unknown variant `SUBSCRIBEX`, expected one of"
        )
        await ws.close()


async def test_usdm_takes_only_unsigned_integer_ids(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig()) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/public/ws")
        answer = await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": "abc"})
        assert answer["error"]["msg"] == "Invalid request: request ID must be an unsigned integer"
        assert await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2}) == {
            "result": None,
            "id": 2,
        }
        await ws.close()


async def test_spot_trade_payload_is_the_real_shape(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT"), rate=200, max_trades=20)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade")
        payloads = [await recv_json(ws) for _ in range(20)]
        await ws.close()
        generated = await control_trades(session, exchange, "binance-spot:BTCUSDT")
    for payload, trade in zip(payloads, generated, strict=True):
        assert list(payload) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"]
        assert payload["e"] == "trade" and payload["s"] == "BTCUSDT" and payload["M"] is True
        assert re.fullmatch(r"\d+\.\d{8}", payload["p"]) and re.fullmatch(r"\d+\.\d{8}", payload["q"])
        assert (payload["t"], payload["p"], payload["q"], payload["T"]) == (
            trade["id"],
            trade["price"],
            trade["size"],
            trade["time"],
        )
        # m = buyer is maker: the aggressor sold.
        assert payload["m"] is (trade["side"] == "sell")
    assert {p["m"] for p in payloads} == {True, False}


async def test_futures_trade_payload_is_the_real_shape(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-futures:BTCUSDT"), rate=200, max_trades=5)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/public/stream?streams=btcusdt@trade")
        frame = await recv_json(ws)
        await ws.close()
    assert list(frame) == ["stream", "data"] and frame["stream"] == "btcusdt@trade"
    payload = frame["data"]
    assert list(payload) == ["e", "E", "T", "s", "t", "p", "q", "X", "m"]
    assert payload["X"] == "MARKET"
    assert re.fullmatch(r"\d+\.\d{2}", payload["p"]) and re.fullmatch(r"\d+\.\d{3}", payload["q"])


async def test_raw_and_combined_forms_and_the_combined_property(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT"), rate=300)
    async with running_replay_exchange(config) as exchange:
        raw = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade/btcusdt@aggTrade")
        combined = await session.ws_connect(f"{exchange.ws_url}/stream?streams=btcusdt@trade")
        assert (await recv_json(raw))["e"] == "trade"
        wrapped = await recv_json(combined)
        assert wrapped["stream"] == "btcusdt@trade" and wrapped["data"]["e"] == "trade"
        await raw.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        assert await _answer(raw) == {"result": ["btcusdt@trade", "btcusdt@aggTrade"], "id": 1}
        await raw.send_str('{"method":"GET_PROPERTY","params":["combined"],"id":2}')
        assert await _answer(raw) == {"result": False, "id": 2}
        await raw.send_str('{"method":"SET_PROPERTY","params":["combined",true],"id":3}')
        assert await _answer(raw) == {"result": None, "id": 3}
        assert "stream" in await _next_trade(raw)
        await raw.close()
        await combined.close()


async def _answer(ws: aiohttp.ClientWebSocketResponse) -> object:
    """The next method answer, skipping trade frames that arrive meanwhile."""
    while True:
        value = await recv_json(ws)
        if "id" in value:
            return value


async def _next_trade(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    while True:
        value: dict[str, object] = await recv_json(ws)
        if "id" not in value:
            return value


async def test_an_invalid_stream_in_the_url_fails_the_handshake(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig()) as exchange:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@bogus")
        assert caught.value.status == 400


async def test_usdm_routes_ack_everything_but_deliver_only_on_the_right_route(
    session: aiohttp.ClientSession,
) -> None:
    config = ReplayConfig(instruments=instruments("binance-futures:BTCUSDT"), rate=300)
    async with running_replay_exchange(config) as exchange:
        public = await session.ws_connect(f"{exchange.ws_url}/public/ws")
        market = await session.ws_connect(f"{exchange.ws_url}/market/ws")
        subscribe = {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}
        assert await request(public, subscribe) == {"result": None, "id": 1}
        assert await request(market, subscribe) == {"result": None, "id": 1}
        assert (await recv_json(public))["e"] == "trade"
        await expect_silence(market, 0.4)  # the 2026 silent failure: ACKed, never delivered
        assert await request(market, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {
            "result": ["btcusdt@trade"],
            "id": 2,
        }
        await public.send_str('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":3}')
        assert await _answer(public) == {"result": None, "id": 3}
        await public.close()
        await market.close()


async def test_spot_paths_serve_spot_only(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT,binance-futures:BTCUSDT"), rate=300)
    async with running_replay_exchange(config) as exchange:
        spot = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade")
        for _ in range(5):
            assert "X" not in await recv_json(spot)  # spot trades carry no X; USD-M ones do
        await spot.close()


async def test_server_pings_and_closes_a_client_that_does_not_pong(session: aiohttp.ClientSession) -> None:
    # Pongs count against the 5 messages/s limit; at this ping rate they would trip it.
    config = ReplayConfig(
        binance_spot_ping_interval_s=0.1, binance_spot_pong_timeout_s=0.3, binance_spot_max_messages_per_s=0
    )
    async with running_replay_exchange(config) as exchange:
        silent = await session.ws_connect(f"{exchange.ws_url}/ws", autoping=False)
        ping = await asyncio.wait_for(silent.receive(), 2)
        assert ping.type == aiohttp.WSMsgType.PING and ping.data.isdigit()
        # aiohttp answers pings (echoing the payload) while the client reads.
        polite = await session.ws_connect(f"{exchange.ws_url}/ws")
        closed = await wait_closed(silent)
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1008
        await expect_silence(polite, 0.6)
        assert await request(polite, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {"result": [], "id": 1}
        await polite.close()


async def test_unsolicited_pongs_do_not_keep_a_connection_alive(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        binance_spot_ping_interval_s=0.1, binance_spot_pong_timeout_s=0.3, binance_spot_max_messages_per_s=0
    )
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws", autoping=False)

        async def pong_wrong_payload() -> None:
            while True:
                await ws.pong(b"not-the-ping-payload")
                await asyncio.sleep(0.05)

        task = asyncio.create_task(pong_wrong_payload())
        closed = await wait_closed(ws)
        task.cancel()
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1008


async def test_more_than_five_messages_a_second_gets_the_connection_cut(
    session: aiohttp.ClientSession,
) -> None:
    async with running_replay_exchange(ReplayConfig()) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws")
        for request_id in range(8):
            await ws.send_str(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}).decode())
        answers = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 3)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            answers.append(orjson.loads(msg.data)["id"])
        assert answers == [0, 1, 2, 3, 4]
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
