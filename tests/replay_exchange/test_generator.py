"""The synthetic generator: determinism by seed, exchange-shaped ids and numbers, complete sets on
WebSocket, start on subscription, and the generator control API."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal
from typing import Any

import aiohttp

from marketdata.replay_exchange import ReplayConfig, running_replay_exchange
from marketdata.replay_exchange.specs import spec_for
from tests.replay_exchange.conftest import (
    ALL_BTC,
    control_trades,
    instruments,
    recv_json,
    status,
    wait_for,
)

KEYS = ALL_BTC.split(",")


async def _generate(session: aiohttp.ClientSession, seed: int, count: int) -> dict[str, list[Any]]:
    config = ReplayConfig(
        instruments=instruments(), rate=40_000, seed=seed, max_trades=count, start_on_subscribe=False
    )
    async with running_replay_exchange(config) as exchange:

        async def finished() -> bool:
            body = await status(session, exchange)
            return all(i["done"] for i in body["generator"]["instruments"].values())

        await wait_for(finished)
        return {key: await control_trades(session, exchange, key) for key in KEYS}


def _identity(trades: list[Any]) -> list[tuple[Any, ...]]:
    return [(t["id"], t["price"], t["size"], t["side"]) for t in trades]


async def test_same_seed_same_trades_other_seed_other_trades(session: aiohttp.ClientSession) -> None:
    first = await _generate(session, seed=7, count=300)
    second = await _generate(session, seed=7, count=300)
    other = await _generate(session, seed=8, count=300)
    for key in KEYS:
        assert len(first[key]) == 300
        assert _identity(first[key]) == _identity(second[key])
        assert _identity(first[key]) != _identity(other[key])


async def test_ids_prices_and_sizes_look_like_the_exchange(session: aiohttp.ClientSession) -> None:
    before_ms = time.time_ns() // 1_000_000
    trades = await _generate(session, seed=3, count=500)
    after_ms = time.time_ns() // 1_000_000
    for key in KEYS:
        spec = spec_for(instruments(key)[0])
        rows = trades[key]
        for row in rows:
            price, size = Decimal(row["price"]), Decimal(row["size"])
            assert price % spec.tick == 0 and size % spec.step == 0 and size > 0
            assert len(row["price"].split(".")[1]) == spec.price_decimals
            assert len(row["size"].split(".")[1]) == spec.qty_decimals
            assert before_ms <= row["time"] <= after_ms
        assert {r["side"] for r in rows} == {"buy", "sell"}
        assert len({r["price"] for r in rows}) > 10  # the price walks
    binance_ids = [r["id"] for r in trades["binance-spot:BTCUSDT"]]
    assert binance_ids == list(range(binance_ids[0], binance_ids[0] + 500))
    spot_ids = [int(r["id"]) for r in trades["bybit-spot:BTCUSDT"]]
    assert all(b > a for a, b in itertools.pairwise(spot_ids))
    assert len({b - a for a, b in itertools.pairwise(spot_ids)}) > 1
    linear_ids = [r["id"] for r in trades["bybit-linear:BTCUSDT"]]
    assert len(set(linear_ids)) == 500 and all(len(i) == 36 for i in linear_ids)


async def test_every_generated_trade_arrives_on_websocket(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments(), rate=8000, max_trades=250, trades_per_frame=20)
    async with running_replay_exchange(config) as exchange:
        spot = await session.ws_connect(f"{exchange.ws_url}/stream?streams=btcusdt@trade")
        futures = await session.ws_connect(f"{exchange.ws_url}/public/ws/btcusdt@trade")
        bybit_spot = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        linear = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        for ws in (bybit_spot, linear):
            await ws.send_str('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')
            assert (await recv_json(ws))["success"] is True

        async def binance_ids(ws: aiohttp.ClientWebSocketResponse, wrapped: bool) -> list[Any]:
            frames = [await recv_json(ws) for _ in range(250)]
            return [(f["data"] if wrapped else f)["t"] for f in frames]

        async def bybit_ids(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
            ids: list[Any] = []
            while len(ids) < 250:
                ids += [item["i"] for item in (await recv_json(ws))["data"]]
            return ids

        received = await asyncio.gather(
            binance_ids(spot, True), binance_ids(futures, False), bybit_ids(bybit_spot), bybit_ids(linear)
        )
        for key, ids in zip(KEYS, received, strict=True):
            generated = await control_trades(session, exchange, key)
            assert ids == [t["id"] for t in generated]
            assert all(t["sent"] for t in generated)
        body = await status(session, exchange)
        for key in KEYS:
            assert body["instruments"][key]["trades_sent"] == 250
        for ws in (spot, futures, bybit_spot, linear):
            await ws.close()


async def test_an_instrument_starts_on_its_first_trade_subscription(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT,binance-spot:ETHUSDT"), rate=1000)
    async with running_replay_exchange(config) as exchange:
        await asyncio.sleep(0.2)
        assert all(i["trades"] == 0 for i in (await status(session, exchange))["instruments"].values())
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/ethusdt@trade")
        first = await recv_json(ws)
        generated = await control_trades(session, exchange, "binance-spot:ETHUSDT")
        assert first["t"] == generated[0]["id"]  # nothing was generated before the subscription
        body = await status(session, exchange)
        assert body["instruments"]["binance-spot:BTCUSDT"]["trades"] == 0
        await ws.close()


async def test_generator_control_pauses_resumes_and_sets_the_rate(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments("binance-spot:BTCUSDT"), rate=2000, start_on_subscribe=False
    )
    async with running_replay_exchange(config) as exchange:
        url = f"{exchange.http_url}/_replay/generator"
        async with session.post(url, json={"action": "pause"}) as response:
            assert response.status == 200 and (await response.json())["paused"] is True
        await asyncio.sleep(0.05)
        count = (await status(session, exchange))["instruments"]["binance-spot:BTCUSDT"]["trades"]
        await asyncio.sleep(0.2)
        assert (await status(session, exchange))["instruments"]["binance-spot:BTCUSDT"]["trades"] == count
        async with session.post(url, json={"action": "resume", "rate": 500}) as response:
            body = await response.json()
            assert (body["paused"], body["rate"]) == (False, 500.0)

        async def grew() -> bool:
            body = await status(session, exchange)
            return bool(body["instruments"]["binance-spot:BTCUSDT"]["trades"] > count)

        await wait_for(grew)
        for bad in (
            {"action": "explode"},
            {"rate": "fast"},
            {"rate": -1},
            {"speed": 2},
            {"instrument": "bybit-spot:X"},
        ):
            async with session.post(url, json=bad) as response:
                assert response.status == 400, bad
                assert "error" in await response.json()
        async with session.post(url, data=b"{not json") as response:
            assert response.status == 400
