"""Every fault kind, observed from the client side, plus fault parsing and scheduling."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest

from marketdata.replay_exchange import ReplayConfig, parse_fault, parse_fault_text, running_replay_exchange
from tests.replay_exchange.conftest import (
    control_trades,
    get_json,
    instruments,
    post_fault,
    recv_json,
    request,
    status,
    wait_closed,
)


async def test_drop_with_a_close_code(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=instruments(), rate=0)) as exchange:
        spot = await session.ws_connect(f"{exchange.ws_url}/ws")
        bybit = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        body = await post_fault(session, exchange, kind="drop", market="binance-spot", code=4000)
        assert body["applied"] == {"connections": 1}
        closed = await wait_closed(spot)
        assert (closed.type, closed.data, closed.extra) == (
            aiohttp.WSMsgType.CLOSE,
            4000,
            "replay fault: drop",
        )
        assert (await request(bybit, {"op": "ping"}))["ret_msg"] == "pong"  # other markets untouched
        await bybit.close()


async def test_drop_by_abort_sends_no_close_frame(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=instruments(), rate=0)) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        await post_fault(session, exchange, kind="drop", exchange="bybit", mode="abort")
        closed = await wait_closed(ws)
        assert closed.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert ws.close_code == 1006  # abnormal closure: the TCP connection just ended


async def test_skip_leaves_an_id_gap_on_websocket_that_rest_repairs(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT"), rate=0)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade")
        await asyncio.sleep(0.1)
        await post_fault(session, exchange, kind="skip", exchange="binance", count=3)
        async with session.post(f"{exchange.http_url}/_replay/generator", json={"rate": 500}) as response:
            assert response.status == 200
        ids = [(await recv_json(ws))["t"] for _ in range(10)]
        await ws.close()
        generated = await control_trades(session, exchange, "binance-spot:BTCUSDT")
        first = generated[0]["id"]
        assert ids == list(range(first + 3, first + 13))  # the first three never came
        assert [t["sent"] for t in generated[:4]] == [False, False, False, True]
        code, rows = await get_json(
            session,
            f"{exchange.http_url}/api/v3/historicalTrades",
            params={"symbol": "BTCUSDT", "fromId": str(first), "limit": "3"},
        )
        assert code == 200
        assert [r["id"] for r in rows] == [first, first + 1, first + 2]
        body = await status(session, exchange)
        assert body["instruments"]["binance-spot:BTCUSDT"]["skipped"] == 3


async def test_malformed_frames_arrive_and_the_connection_survives(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT,bybit-linear:BTCUSDT"), rate=0)
    async with running_replay_exchange(config) as exchange:
        binance = await session.ws_connect(f"{exchange.ws_url}/stream?streams=btcusdt@trade")
        bybit = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await request(bybit, {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        await post_fault(session, exchange, kind="malformed", count=6)
        for ws in (binance, bybit):
            messages = [await asyncio.wait_for(ws.receive(), 2) for _ in range(6)]
            texts = [m.data for m in messages if m.type == aiohttp.WSMsgType.TEXT]
            assert [m.type for m in messages].count(aiohttp.WSMsgType.BINARY) == 1
            parsed: list[Any] = []
            for text in texts:
                try:
                    parsed.append(orjson.loads(text))
                except orjson.JSONDecodeError:
                    parsed.append(None)
            assert parsed.count(None) == 2  # truncated JSON and non-JSON text
            assert len([p for p in parsed if p is not None]) == 3  # unknown event, missing field, bad price
        assert (await request(bybit, {"op": "ping"}))["ret_msg"] == "pong"
        await binance.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        assert await recv_json(binance) == {"result": ["btcusdt@trade"], "id": 1}
        await binance.close()
        await bybit.close()


@pytest.mark.parametrize("variant", ["unknown_event", "missing_field", "bad_price"])
async def test_each_malformed_variant_has_its_defect(session: aiohttp.ClientSession, variant: str) -> None:
    config = ReplayConfig(instruments=instruments("binance-futures:BTCUSDT"), rate=0)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/public/ws/btcusdt@trade")
        await post_fault(session, exchange, kind="malformed", market="binance-futures", variant=variant)
        payload = await recv_json(ws)
        await ws.close()
    if variant == "unknown_event":
        assert payload["e"] not in ("trade", "aggTrade")
    elif variant == "missing_field":
        assert payload["e"] == "trade" and "p" not in payload
    else:
        assert payload["e"] == "trade" and not payload["p"].replace(".", "").isdigit()


async def test_stall_holds_everything_without_closing(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("bybit-spot:BTCUSDT"), rate=300)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        await request(ws, {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        await recv_json(ws)
        await post_fault(session, exchange, kind="stall", market="bybit-spot", seconds=0.8)
        stalled_at = time.monotonic()
        with pytest.raises(TimeoutError):
            while True:  # drain frames that were already on the wire; then silence
                await asyncio.wait_for(ws.receive(), 0.15)
        await ws.send_str('{"req_id":"during","op":"ping"}')
        while (message := await recv_json(ws, within=2)).get("op") != "ping":
            pass
        assert time.monotonic() - stalled_at >= 0.75  # even the pong waited for the stall to end
        assert "topic" in await recv_json(ws)  # and data flows again on the same connection
        assert message["req_id"] == "during" and not ws.closed
        await ws.close()


async def test_binance_shutdown_announces_then_closes(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=instruments(), rate=0)) as exchange:
        raw = await session.ws_connect(f"{exchange.ws_url}/ws")
        combined = await session.ws_connect(f"{exchange.ws_url}/public/stream")
        bybit = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        await post_fault(session, exchange, kind="shutdown", seconds=0.2)
        event = await recv_json(raw)
        assert list(event) == ["e", "E"] and event["e"] == "serverShutdown"
        wrapped = await recv_json(combined)
        assert wrapped == {
            "stream": "!serverShutdown",
            "data": {"e": "serverShutdown", "E": wrapped["data"]["E"]},
        }
        for ws in (raw, combined):
            assert (await wait_closed(ws)).type == aiohttp.WSMsgType.CLOSE
        assert (await request(bybit, {"op": "ping"}))["ret_msg"] == "pong"
        await bybit.close()


async def test_max_connection_age_cuts_old_connections(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(max_connection_age_s=0.3)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws")
        started = time.monotonic()
        closed = await wait_closed(ws)
        assert closed.type == aiohttp.WSMsgType.CLOSE and 0.25 <= time.monotonic() - started < 2
        await post_fault(session, exchange, kind="max_age", market="binance-futures", seconds=0.2)
        ws = await session.ws_connect(f"{exchange.ws_url}/public/ws")
        assert (await wait_closed(ws)).type == aiohttp.WSMsgType.CLOSE


async def test_reject_fails_the_next_subscribes(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=instruments(), rate=0)) as exchange:
        await post_fault(session, exchange, kind="reject", market="binance-spot")
        await post_fault(session, exchange, kind="reject", market="bybit-linear", count=2)
        spot = await session.ws_connect(f"{exchange.ws_url}/ws")
        subscribe = {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}
        assert await request(spot, subscribe) == {
            "error": {"code": 2, "msg": "Invalid request: invalid stream"},
            "id": 1,
        }
        assert await request(spot, subscribe) == {"result": None, "id": 1}
        await post_fault(session, exchange, kind="reject", market="binance-futures", message="go away")
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:  # streams in the URL
            await session.ws_connect(f"{exchange.ws_url}/public/stream?streams=btcusdt@trade")
        assert caught.value.status == 400
        accepted = await session.ws_connect(f"{exchange.ws_url}/public/stream?streams=btcusdt@trade")
        await accepted.close()
        linear = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        args = {"req_id": "a", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]}
        for _ in range(2):
            answer = await request(linear, args)
            assert (answer["success"], answer["ret_msg"]) == (
                False,
                "error:handler not found,topic:publicTrade.BTCUSDT",
            )
        assert (await request(linear, args))["success"] is True
        await spot.close()
        await linear.close()


@pytest.mark.parametrize("status_code", [429, 418, 500])
async def test_rest_fault_answers_the_next_calls_with_an_error(
    session: aiohttp.ClientSession, status_code: int
) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=instruments(), rate=0)) as exchange:
        await post_fault(session, exchange, kind="rest", status=status_code, count=2, retry_after=7)
        for _ in range(2):
            async with session.get(
                f"{exchange.http_url}/api/v3/trades", params={"symbol": "BTCUSDT"}
            ) as response:
                assert response.status == status_code
                body = await response.json()
                assert body["code"] == (-1001 if status_code == 500 else -1003)
                assert response.headers.get("Retry-After") == (None if status_code == 500 else "7")
        async with session.get(
            f"{exchange.http_url}/api/v3/trades", params={"symbol": "BTCUSDT"}
        ) as response:
            assert response.status == 200
        url = f"{exchange.http_url}/v5/market/recent-trade?category=linear&symbol=BTCUSDT"
        async with session.get(url) as response:
            assert response.status == status_code
            assert (await response.json())["retCode"] != 0


async def test_scheduled_faults_repeat_and_are_reported(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(faults=(parse_fault_text("drop:market=binance-spot,at=0.2,every=0.2,times=3"),))
    async with running_replay_exchange(config) as exchange:
        drops = 0
        started = time.monotonic()
        while drops < 3:
            ws = await session.ws_connect(f"{exchange.ws_url}/ws")
            await wait_closed(ws)
            drops += 1
        assert time.monotonic() - started >= 0.35
        body = await status(session, exchange)
        assert body["faults"]["counts"] == {"drop": 3}
        assert [entry["kind"] for entry in body["faults"]["applied"]] == ["drop"] * 3
        assert body["markets"]["binance-spot"]["connections_opened"] == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode", "fault kind 'explode' is unknown"),
        ("drop:market=kraken", "drop fault: market: unknown market 'kraken'"),
        ("drop:mode=gentle", "drop fault: mode must be one of close, abort"),
        ("drop:code=1006", "drop fault: code 1006 cannot be sent in a close frame"),
        ("skip:count=0", "skip fault: count must be >= 1"),
        ("stall:market=bybit-spot", "stall fault: seconds must be > 0"),
        ("shutdown:market=bybit-linear", "shutdown fault: serverShutdown is a Binance event"),
        ("rest:status=404", "rest fault: status must be one of 429, 418, 500"),
        ("drop:colour=red", "drop fault: unknown option(s) colour"),
        ("drop:every=soon", "drop fault: every: could not convert"),
        ("drop:market", "option 'market' must be key=value"),
    ],
)
def test_fault_text_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_fault_text(text)
    assert message in str(caught.value)


def test_fault_json_round_trips() -> None:
    spec = parse_fault({"kind": "skip", "instrument": "binance-spot:BTCUSDT", "count": 3, "at": 1.5})
    assert spec.to_dict() == {"kind": "skip", "instrument": "binance-spot:BTCUSDT", "count": 3, "at": 1.5}
    assert parse_fault(spec.to_dict()) == spec


async def test_bad_fault_posts_get_400(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig()) as exchange:
        for body in (b"[]", b"nope", orjson.dumps({"kind": "drop", "count": "many"})):
            async with session.post(f"{exchange.http_url}/_replay/faults", data=body) as response:
                assert response.status == 400
                assert (await response.json())["error"]
