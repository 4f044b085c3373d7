"""REST endpoints: rows equal what went out on WebSocket, limits, errors, weights, listings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest

from marketdata.replay_exchange import ReplayConfig, running_replay_exchange
from tests.replay_exchange.conftest import control_trades, get_json, instruments, recv_json, wait_for

SPOT_KEYS = ["id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"]


async def test_binance_rest_rows_equal_the_trades_sent_on_websocket(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT"), rate=3000, max_trades=120)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade")
        sent = [await recv_json(ws) for _ in range(120)]
        await ws.close()
        base = f"{exchange.http_url}/api/v3/historicalTrades"
        code, rows = await get_json(session, base, params={"symbol": "BTCUSDT", "fromId": str(sent[10]["t"])})
        assert code == 200
        assert len(rows) == 110
        for row, trade in zip(rows, sent[10:], strict=True):
            assert list(row) == SPOT_KEYS
            assert (row["id"], row["price"], row["qty"], row["time"], row["isBuyerMaker"]) == (
                trade["t"],
                trade["p"],
                trade["q"],
                trade["T"],
                trade["m"],
            )
            assert Decimal(row["quoteQty"]) == Decimal(row["price"]) * Decimal(row["qty"])
        code, rows = await get_json(
            session, base, params={"symbol": "BTCUSDT", "fromId": str(sent[0]["t"]), "limit": "5"}
        )
        assert [r["id"] for r in rows] == [t["t"] for t in sent[:5]]
        code, rows = await get_json(
            session, f"{exchange.http_url}/api/v3/trades", params={"symbol": "BTCUSDT", "limit": "3"}
        )
        assert [r["id"] for r in rows] == [t["t"] for t in sent[-3:]]


async def test_binance_limits_default_and_cap(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments("binance-spot:BTCUSDT,binance-futures:BTCUSDT"),
        rate=200_000,
        max_trades=1200,
        start_on_subscribe=False,
    )
    async with running_replay_exchange(config) as exchange:
        url = exchange.http_url

        async def all_generated() -> bool:
            _, body = await get_json(session, f"{url}/_replay/status")
            return all(i["trades"] == 1200 for i in body["instruments"].values())

        await wait_for(all_generated)
        key = {"X-MBX-APIKEY": "any-key"}
        cases = [
            ("/api/v3/trades", {}, 500),
            ("/api/v3/trades", {"limit": "5000"}, 1000),
            ("/api/v3/historicalTrades", {}, 500),
            ("/api/v3/historicalTrades", {"limit": "1000"}, 1000),
            ("/fapi/v1/trades", {}, 500),
            ("/fapi/v1/historicalTrades", {}, 100),
            ("/fapi/v1/historicalTrades", {"limit": "800"}, 500),
        ]
        for path, params, expected in cases:
            code, rows = await get_json(
                session, url + path, params={"symbol": "BTCUSDT", **params}, headers=key
            )
            assert (path, params, code, len(rows)) == (path, params, 200, expected)
            ids = [r["id"] for r in rows]
            assert ids == list(range(ids[0], ids[0] + len(ids)))  # ascending, consecutive
        code, rows = await get_json(
            session, f"{url}/fapi/v1/trades", params={"symbol": "BTCUSDT", "limit": "1"}
        )
        assert list(rows[0]) == SPOT_KEYS[:-1]  # USD-M rows have no isBestMatch


@pytest.mark.parametrize(
    ("path", "params", "status", "body"),
    [
        (
            "/api/v3/historicalTrades",
            {},
            400,
            {
                "code": -1102,
                "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            },
        ),
        ("/api/v3/trades", {"symbol": "NOPEUSDT"}, 400, {"code": -1121, "msg": "Invalid symbol."}),
        ("/api/v3/exchangeInfo", {"symbol": "NOPEUSDT"}, 400, {"code": -1121, "msg": "Invalid symbol."}),
        (
            "/api/v3/trades",
            {"symbol": "BTCUSDT", "limit": "ten"},
            400,
            {
                "code": -1100,
                "msg": "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
            },
        ),
        (
            "/api/v3/historicalTrades",
            {"symbol": "BTCUSDT", "fromId": "-3"},
            400,
            {
                "code": -1100,
                "msg": "Illegal characters found in parameter 'fromId'; legal range is '^[0-9]{1,20}$'.",
            },
        ),
        (
            "/api/v3/trades",
            {"symbol": "BTCUSDT", "limit": "0"},
            400,
            {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."},
        ),
        (
            "/fapi/v1/historicalTrades",
            {"symbol": "BTCUSDT"},
            401,
            {"code": -2014, "msg": "API-key format invalid."},
        ),
    ],
)
async def test_binance_errors(
    session: aiohttp.ClientSession, path: str, params: dict[str, str], status: int, body: Any
) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT,binance-futures:BTCUSDT"), rate=0)
    async with running_replay_exchange(config) as exchange:
        assert await get_json(session, exchange.http_url + path, params=params) == (status, body)


async def test_binance_duplicate_parameters_and_weight_headers(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT"), rate=0)
    async with running_replay_exchange(config) as exchange:
        url = f"{exchange.http_url}/api/v3/trades?symbol=BTCUSDT&symbol=ETHUSDT"
        async with session.get(url) as response:
            assert response.status == 400
            assert orjson.loads(await response.read()) == {
                "code": -1101,
                "msg": "Duplicate values for a parameter detected.",
            }
            first = int(response.headers["X-MBX-USED-WEIGHT-1M"])
        async with session.get(f"{exchange.http_url}/api/v3/ping") as response:
            assert await response.json() == {}
            assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) in (first + 1, 1)  # 1 if a minute began


async def test_binance_weight_limit_answers_429(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments("binance-futures:BTCUSDT"), rate=0, binance_futures_weight_per_minute=10
    )
    async with running_replay_exchange(config) as exchange:
        statuses = []
        for _ in range(4):
            async with session.get(
                f"{exchange.http_url}/fapi/v1/trades", params={"symbol": "BTCUSDT"}
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["code"] == -1003
        assert statuses[:2] == [200, 200] and 429 in statuses


async def test_exchange_info_lists_tick_and_lot_sizes(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments(), rate=0)
    async with running_replay_exchange(config) as exchange:
        code, spot = await get_json(
            session, f"{exchange.http_url}/api/v3/exchangeInfo", params={"symbol": "BTCUSDT"}
        )
        assert code == 200 and [s["symbol"] for s in spot["symbols"]] == ["BTCUSDT"]
        filters = {f["filterType"]: f for f in spot["symbols"][0]["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
        code, futures = await get_json(session, f"{exchange.http_url}/fapi/v1/exchangeInfo")
        filters = {f["filterType"]: f for f in futures["symbols"][0]["filters"]}
        assert (filters["PRICE_FILTER"]["tickSize"], filters["LOT_SIZE"]["stepSize"]) == ("0.10", "0.001")
        assert futures["symbols"][0]["pricePrecision"] == 2
        code, linear = await get_json(
            session, f"{exchange.http_url}/v5/market/instruments-info", params={"category": "linear"}
        )
        row = linear["result"]["list"][0]
        assert (row["priceFilter"]["tickSize"], row["lotSizeFilter"]["qtyStep"]) == ("0.10", "0.001")
        code, spot_v5 = await get_json(
            session,
            f"{exchange.http_url}/v5/market/instruments-info",
            params={"category": "spot", "symbol": "BTCUSDT"},
        )
        row = spot_v5["result"]["list"][0]
        assert (row["priceFilter"]["tickSize"], row["lotSizeFilter"]["basePrecision"]) == ("0.01", "0.000001")
        for path in ("/api/v3/time", "/fapi/v1/time"):
            code, body = await get_json(session, exchange.http_url + path)
            assert code == 200 and isinstance(body["serverTime"], int)
        code, body = await get_json(session, f"{exchange.http_url}/v5/market/time")
        assert body["retCode"] == 0 and body["result"]["timeNano"].startswith(body["result"]["timeSecond"])


async def test_bybit_recent_trades_are_newest_first_and_equal_the_pushed_trades(
    session: aiohttp.ClientSession,
) -> None:
    config = ReplayConfig(instruments=instruments("bybit-linear:BTCUSDT"), rate=4000, max_trades=600)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await ws.send_str('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')
        pushed: list[Any] = []
        while len(pushed) < 600:
            frame = await recv_json(ws)
            pushed += frame.get("data", [])
        await ws.close()
        url = f"{exchange.http_url}/v5/market/recent-trade"
        code, body = await get_json(session, url, params={"category": "linear", "symbol": "BTCUSDT"})
        assert code == 200 and (body["retCode"], body["retMsg"]) == (0, "OK")
        assert list(body) == ["retCode", "retMsg", "result", "retExtInfo", "time"]
        rows = body["result"]["list"]
        assert body["result"]["category"] == "linear" and len(rows) == 500
        assert list(rows[0]) == [
            "execId", "symbol", "price", "size", "side", "time", "isBlockTrade", "isRPITrade", "seq"
        ]  # fmt: skip
        expected = [
            {
                "execId": t["i"],
                "symbol": "BTCUSDT",
                "price": t["p"],
                "size": t["v"],
                "side": t["S"],
                "time": str(t["T"]),
                "isBlockTrade": False,
                "isRPITrade": False,
                "seq": str(t["seq"]),
            }
            for t in reversed(pushed[-500:])
        ]
        assert rows == expected
        code, body = await get_json(
            session, url, params={"category": "linear", "symbol": "BTCUSDT", "limit": "5000"}
        )
        assert len(body["result"]["list"]) == 600  # capped at 1000, only 600 exist


async def test_bybit_spot_limit_is_sixty(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(
        instruments=instruments("bybit-spot:BTCUSDT"), rate=50_000, max_trades=100, start_on_subscribe=False
    )
    async with running_replay_exchange(config) as exchange:
        generated: list[Any] = []

        async def done() -> bool:
            generated[:] = await control_trades(session, exchange, "bybit-spot:BTCUSDT")
            return len(generated) == 100

        await wait_for(done)
        url = f"{exchange.http_url}/v5/market/recent-trade"
        for params, count in (({}, 60), ({"limit": "100"}, 60), ({"limit": "7"}, 7)):
            code, body = await get_json(
                session, url, params={"category": "spot", "symbol": "BTCUSDT", **params}
            )
            assert code == 200
            assert [r["execId"] for r in body["result"]["list"]] == [
                t["id"] for t in reversed(generated[-count:])
            ]


@pytest.mark.parametrize(
    ("params", "ret_msg"),
    [
        ({"symbol": "BTCUSDT"}, "Illegal category"),
        ({"category": "option", "symbol": "BTCUSDT"}, "Illegal category"),
        ({"category": "linear"}, "params error: symbol invalid"),
        ({"category": "linear", "symbol": "NOPEUSDT"}, "params error: symbol invalid: 'NOPEUSDT'"),
        (
            {"category": "spot", "symbol": "BTCUSDT", "limit": "x"},
            "params error: limit must be an integer in [1, 60], got 'x'",
        ),
    ],
)
async def test_bybit_errors_are_http_200_with_a_ret_code(
    session: aiohttp.ClientSession, params: dict[str, str], ret_msg: str
) -> None:
    async with running_replay_exchange(ReplayConfig(instruments=instruments(), rate=0)) as exchange:
        code, body = await get_json(session, f"{exchange.http_url}/v5/market/recent-trade", params=params)
        assert code == 200
        assert (body["retCode"], body["retMsg"], body["result"]) == (10001, ret_msg, {})
