"""The control API's status and trades views, and robustness against clients that misbehave."""

from __future__ import annotations

import asyncio

import aiohttp

from marketdata.replay_exchange import ReplayConfig, running_replay_exchange
from tests.replay_exchange.conftest import (
    get_json,
    instruments,
    post_fault,
    recv_json,
    request,
    status,
    wait_closed,
    wait_for,
)


async def test_status_reports_connections_subscriptions_counters_and_faults(
    session: aiohttp.ClientSession,
) -> None:
    config = ReplayConfig(instruments=instruments(), rate=2000, max_trades=40)
    async with running_replay_exchange(config) as exchange:
        spot = await session.ws_connect(f"{exchange.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade")
        linear = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await request(linear, {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        await post_fault(session, exchange, kind="reject", market="bybit-spot", count=2)

        async def spot_done() -> bool:
            body = await status(session, exchange)
            return bool(body["instruments"]["binance-spot:BTCUSDT"]["trades_sent"] == 40)

        await wait_for(spot_done)
        body = await status(session, exchange)
        market = body["markets"]["binance-spot"]
        assert (market["connections"], market["connections_opened"]) == (1, 1)
        assert market["subscriptions"] == ["btcusdt@trade", "ethusdt@trade"]
        peer = market["peers"][0]
        assert (peer["path"], peer["combined"], peer["subscriptions"]) == (
            "/stream?streams=btcusdt@trade/ethusdt@trade",
            True,
            ["btcusdt@trade", "ethusdt@trade"],
        )
        assert body["markets"]["bybit-linear"]["subscriptions"] == ["publicTrade.BTCUSDT"]
        assert body["markets"]["bybit-spot"]["connections"] == 0
        counters = body["instruments"]["binance-spot:BTCUSDT"]
        assert (
            counters["trades"],
            counters["trades_sent"],
            counters["frames_sent"],
            counters["skipped"],
        ) == (
            40,
            40,
            40,
            0,
        )
        assert body["instruments"]["binance-futures:BTCUSDT"]["trades"] == 0  # never subscribed
        assert body["faults"]["counts"] == {"reject": 1}
        assert body["faults"]["pending"]["reject"] == {"bybit-spot": 2}
        assert body["faults"]["applied"][0]["kind"] == "reject"
        assert body["generator"]["instruments"]["binance-spot:BTCUSDT"]["done"] is True
        await spot.close()
        await linear.close()


async def test_trades_view_validates_the_instrument(session: aiohttp.ClientSession) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=instruments(), rate=0)) as exchange:
        url = f"{exchange.http_url}/_replay/trades"
        code, body = await get_json(session, url, params={"instrument": "BTCUSDT"})
        assert code == 400 and "market:SYMBOL" in body["error"]
        code, body = await get_json(session, url, params={"instrument": "bybit-spot:DOGEUSDT"})
        assert code == 404 and "not served" in body["error"]
        code, body = await get_json(session, url, params={"instrument": "bybit-spot:BTCUSDT"})
        assert code == 200 and body == {"instrument": "bybit-spot:BTCUSDT", "evicted": 0, "trades": []}


async def test_history_is_bounded(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments("binance-spot:BTCUSDT"),
        rate=100_000,
        max_trades=3000,
        history_size=1000,
        start_on_subscribe=False,
    )
    async with running_replay_exchange(config) as exchange:

        async def done() -> bool:
            return bool(
                (await status(session, exchange))["instruments"]["binance-spot:BTCUSDT"]["trades"] == 3000
            )

        await wait_for(done)
        code, body = await get_json(
            session, f"{exchange.http_url}/_replay/trades", params={"instrument": "binance-spot:BTCUSDT"}
        )
        assert body["evicted"] == 2000 and len(body["trades"]) == 1000
        first_kept = body["trades"][0]["id"]
        code, rows = await get_json(
            session,
            f"{exchange.http_url}/api/v3/historicalTrades",
            params={"symbol": "BTCUSDT", "fromId": str(first_kept - 500), "limit": "3"},
        )
        assert code == 200
        assert [r["id"] for r in rows] == [first_kept, first_kept + 1, first_kept + 2]


async def test_garbage_from_clients_never_breaks_the_server(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments(),
        rate=200,
        binance_spot_max_messages_per_s=0,
        binance_futures_max_messages_per_s=0,
    )
    junk = ["", "{", "null", "[]", '{"method":null}', '{"method":"SUBSCRIBE","params":[1,2]}', "\u0000" * 10]
    junk += ['{"op":"subscribe","args":[null]}', '{"op":5}', '{"req_id":{"a":1},"op":"ping"}', "x" * 100_000]
    async with running_replay_exchange(config) as exchange:
        for path in ("/ws", "/public/stream", "/v5/public/spot", "/v5/public/linear"):
            ws = await session.ws_connect(f"{exchange.ws_url}{path}")
            for text in junk:
                await ws.send_str(text)
                await ws.send_bytes(text.encode())
                answer = await recv_json(ws)
                assert "error" in answer or answer.get("success") is False or answer.get("ret_msg") == "pong"
                await recv_json(ws)  # the answer to the binary copy
            await ws.close()
        async with session.get(f"{exchange.http_url}/ws") as response:
            assert response.status == 400  # a plain GET on a WebSocket path

        async def all_closed() -> bool:
            body = await status(session, exchange)
            return bool(sum(m["connections"] for m in body["markets"].values()) == 0)

        await wait_for(all_closed)


async def test_a_client_that_does_not_read_is_cut_as_a_slow_consumer(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments("bybit-linear:BTCUSDT"), rate=50_000, max_send_buffer_bytes=256 * 1024
    )
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear", max_msg_size=0)
        await ws.send_str('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')

        async def cut() -> bool:
            return bool((await status(session, exchange))["markets"]["bybit-linear"]["connections"] == 0)

        await asyncio.sleep(1.0)  # not reading: the kernel buffers fill, then ours
        await wait_for(cut, within=10)
        closed = await wait_closed(ws, within=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
