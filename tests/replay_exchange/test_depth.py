"""Order books of the replay exchange, observed as a client: Binance diff depth chained by U/u (and
USD-M pu) consistent with REST snapshots, Bybit snapshot + deltas with consecutive u, recorded REST
snapshots, weights and errors, and the book faults."""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from marketdata.replay_exchange import RecordingSource, ReplayConfig, parse_fault, running_replay_exchange
from marketdata.replay_exchange.cli import config_from_args, configure_parser
from marketdata.replay_exchange.server import ReplayHandle
from tests.replay_exchange.conftest import get_json, instruments, post_fault, recv_json, status

RECORDED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "recorded"


def apply(book: dict[str, dict[Decimal, str]], bids: list[list[str]], asks: list[list[str]]) -> None:
    for side, levels in (("bids", bids), ("asks", asks)):
        for price, size in levels:
            if Decimal(size) == 0:
                book[side].pop(Decimal(price), None)
            else:
                book[side][Decimal(price)] = size


def best_first(book: dict[str, dict[Decimal, str]]) -> tuple[list[Decimal], list[Decimal]]:
    return sorted(book["bids"], reverse=True), sorted(book["asks"])


async def generator(session: aiohttp.ClientSession, exchange: ReplayHandle, action: str) -> None:
    async with session.post(f"{exchange.http_url}/_replay/generator", json={"action": action}) as response:
        assert response.status == 200


async def truth(session: aiohttp.ClientSession, exchange: ReplayHandle, key: str) -> Any:
    code, body = await get_json(session, f"{exchange.http_url}/_replay/book", params={"instrument": key})
    assert code == 200, body
    return body


@pytest.mark.parametrize(
    ("key", "path", "rest"),
    [
        ("binance-spot:BTCUSDT", "/stream", "/api/v3/depth"),
        ("binance-futures:BTCUSDT", "/public/stream", "/fapi/v1/depth"),
    ],
)
async def test_binance_diff_depth_chains_onto_rest_snapshots(
    session: aiohttp.ClientSession, key: str, path: str, rest: str
) -> None:
    futures = key.startswith("binance-futures")
    config = ReplayConfig(instruments=instruments(key), rate=300, seed=3, book_churn_per_s=300)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}{path}?streams=btcusdt@trade/btcusdt@depth@100ms")
        events = []
        while len(events) < 3:
            message = await recv_json(ws)
            if message["stream"].endswith("@depth@100ms"):
                events.append(message["data"])
        code, snapshot = await get_json(
            session, f"{exchange.http_url}{rest}", params={"symbol": "BTCUSDT", "limit": "1000"}
        )
        assert code == 200 and snapshot["lastUpdateId"] >= events[0]["U"] - 1
        book = {
            "bids": {Decimal(p): s for p, s in snapshot["bids"]},
            "asks": {Decimal(p): s for p, s in snapshot["asks"]},
        }
        last = snapshot["lastUpdateId"]
        previous_u: int | None = None
        started = False

        def take(event: dict[str, Any]) -> None:
            nonlocal last, previous_u, started
            if previous_u is not None:
                if futures:
                    assert event["pu"] == previous_u
                else:
                    assert event["U"] == previous_u + 1
            previous_u = event["u"]
            if event["u"] <= last:
                return
            if not started:
                assert event["U"] <= last + 1 <= event["u"]
                started = True
            apply(book, event["b"], event["a"])
            last = event["u"]

        for event in events:
            take(event)
        for _ in range(10):
            message = await recv_json(ws)
            if message["stream"].endswith("@depth@100ms"):
                take(message["data"])
        await generator(session, exchange, "pause")
        await asyncio.sleep(0.3)
        try:
            while True:
                message = await recv_json(ws, within=0.3)
                if message["stream"].endswith("@depth@100ms"):
                    take(message["data"])
        except TimeoutError:
            pass
        state = await truth(session, exchange, key)
        assert state["update_id"] == last
        bids, asks = best_first(book)
        assert [book["bids"][p] for p in bids] == [s for _, s in state["bids"]]
        assert [book["asks"][p] for p in asks] == [s for _, s in state["asks"]]
        assert [Decimal(p) for p, _ in state["bids"]] == bids and [
            Decimal(p) for p, _ in state["asks"]
        ] == asks
        assert bids[0] < asks[0]
        await ws.close()


async def test_bybit_topic_sends_a_snapshot_then_consecutive_deltas(session: aiohttp.ClientSession) -> None:
    key = "bybit-linear:BTCUSDT"
    config = ReplayConfig(instruments=instruments(key), rate=300, seed=3, book_churn_per_s=300)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await ws.send_str(orjson.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}).decode())
        ack = await recv_json(ws)
        assert ack["op"] == "subscribe" and ack["success"] is True  # the answer comes before the data
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "snapshot" and snapshot["topic"] == "orderbook.50.BTCUSDT"
        data = snapshot["data"]
        assert len(data["b"]) == 50 and len(data["a"]) == 50 and "cts" in snapshot
        book = {"bids": {Decimal(p): s for p, s in data["b"]}, "asks": {Decimal(p): s for p, s in data["a"]}}
        last = data["u"]
        for _ in range(15):
            delta = await recv_json(ws)
            assert delta["type"] == "delta" and delta["data"]["u"] == last + 1
            last = delta["data"]["u"]
            apply(book, delta["data"]["b"], delta["data"]["a"])
            assert len(book["bids"]) <= 50 and len(book["asks"]) <= 50
        await generator(session, exchange, "pause")
        try:
            while True:
                delta = await recv_json(ws, within=0.3)
                assert delta["data"]["u"] == last + 1
                last = delta["data"]["u"]
                apply(book, delta["data"]["b"], delta["data"]["a"])
        except TimeoutError:
            pass
        state = await truth(session, exchange, key)
        bids, asks = best_first(book)
        assert [[str(p), book["bids"][p]] for p in bids] == [
            [str(Decimal(p)), s] for p, s in state["bids"][:50]
        ]
        assert [Decimal(p) for p, _ in state["asks"][:50]] == asks
        await ws.close()


async def test_rest_depth_weights_limits_and_errors(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments(), rate=0)
    async with running_replay_exchange(config) as exchange:
        url = exchange.http_url
        async with session.get(
            f"{url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "1000"}
        ) as response:
            body = await response.json()
            first = int(response.headers["X-MBX-USED-WEIGHT-1M"])
            assert len(body["bids"]) == 300 and set(body) == {"lastUpdateId", "bids", "asks"}
        async with session.get(f"{url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"}) as response:
            body = await response.json()
            assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) - first == 5
            assert len(body["bids"]) == 5 and Decimal(body["bids"][0][0]) < Decimal(body["asks"][0][0])
        code, body = await get_json(
            session, f"{url}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": "7"}
        )
        assert (code, body["code"]) == (400, -1130)
        code, body = await get_json(session, f"{url}/fapi/v1/depth", params={"symbol": "BTCUSDT"})
        assert code == 200 and len(body["asks"]) == 300 and {"E", "T"} <= body.keys()
        code, body = await get_json(session, f"{url}/api/v3/depth", params={"symbol": "NOPEUSDT"})
        assert (code, body["code"]) == (400, -1121)
        code, body = await get_json(
            session,
            f"{url}/v5/market/orderbook",
            params={"category": "spot", "symbol": "BTCUSDT", "limit": "20"},
        )
        assert code == 200 and body["retCode"] == 0
        result = body["result"]
        assert (
            len(result["b"]) == 20 and result["s"] == "BTCUSDT" and {"u", "seq", "ts", "cts"} <= result.keys()
        )
        code, body = await get_json(
            session,
            f"{url}/v5/market/orderbook",
            params={"category": "linear", "symbol": "BTCUSDT", "limit": "501"},
        )
        assert body["retCode"] != 0 and "limit" in body["retMsg"]


async def test_recorded_rest_snapshots_are_found_next_to_the_recording(
    session: aiohttp.ClientSession,
) -> None:
    config = ReplayConfig(recordings=(RecordingSource(RECORDED / "cryptofeed-BINANCE.ws.1.0"),), speed=0)
    async with running_replay_exchange(config) as exchange:
        code, body = await get_json(
            session, f"{exchange.http_url}/api/v3/depth", params={"symbol": "NKNUSDT", "limit": "1000"}
        )
        assert code == 200 and body["lastUpdateId"] == 499869752 and len(body["asks"]) == 1000
        assert body["bids"][0] == ["0.35210000", "672.00000000"]
        code, body = await get_json(
            session, f"{exchange.http_url}/api/v3/depth", params={"symbol": "RUNEEUR", "limit": "5"}
        )
        assert code == 200 and body["lastUpdateId"] == 15602511 and len(body["bids"]) == 5
        depth = (await status(session, exchange))["depth"]
        assert depth["recorded_snapshots"]["binance-spot:NKNUSDT"] == 1 and depth["snapshots_served"] == 2


def test_cli_takes_rest_captures_given_with_file() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        ["--file", str(RECORDED / "cryptofeed-BINANCE_FUTURES.ws.1.0"),
         "--file", str(RECORDED / "cryptofeed-BINANCE.http.0.0"), "--book-churn", "5"]
    )  # fmt: skip
    config = config_from_args(args)
    assert [s.path.name for s in config.recordings] == ["cryptofeed-BINANCE_FUTURES.ws.1.0"]
    assert [p.name for p in config.rest_recordings] == ["cryptofeed-BINANCE.http.0.0"]
    assert config.book_churn_per_s == 5


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "book_reset", "market": "binance-spot"}, "market must be bybit-*"),
        ({"kind": "stale_snapshot", "market": "bybit-linear"}, "market must be binance-*"),
        ({"kind": "book_malformed", "variant": "nonsense"}, "variant must be one of negative_size"),
        ({"kind": "book_gap", "seconds": 1}, "unknown option(s) seconds"),
    ],
)
def test_book_fault_options_are_checked(fault: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        parse_fault(fault)


async def test_book_faults_as_a_client_sees_them(session: aiohttp.ClientSession) -> None:
    keys = "binance-spot:BTCUSDT,bybit-spot:BTCUSDT"
    config = ReplayConfig(instruments=instruments(keys), rate=200, seed=9, book_churn_per_s=400)
    async with running_replay_exchange(config) as exchange:
        binance = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@depth@100ms")
        bybit = await session.ws_connect(f"{exchange.ws_url}/v5/public/spot")
        await bybit.send_str(orjson.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}).decode())
        assert (await recv_json(bybit))["success"] is True
        assert (await recv_json(bybit))["type"] == "snapshot"
        first = await recv_json(binance)

        await post_fault(session, exchange, kind="book_gap", instrument="binance-spot:BTCUSDT", count=2)
        nxt = await recv_json(binance)
        while nxt["U"] == first["u"] + 1:  # the fault may land after this push was already written
            first, nxt = nxt, await recv_json(binance)
        assert nxt["U"] > first["u"] + 1

        await generator(session, exchange, "pause")  # a still book: its best ask is known
        await asyncio.sleep(0.3)
        _, snapshot = await get_json(
            session, f"{exchange.http_url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"}
        )
        await post_fault(session, exchange, kind="book_crossed", instrument="binance-spot:BTCUSDT")
        crossed = await recv_json(binance)
        while crossed["u"] <= snapshot["lastUpdateId"]:
            crossed = await recv_json(binance)
        assert crossed["U"] == crossed["u"] == snapshot["lastUpdateId"] + 1  # takes an update id
        assert crossed["b"] == [[snapshot["asks"][0][0], crossed["b"][0][1]]]  # a bid at the best ask
        await generator(session, exchange, "resume")

        await post_fault(session, exchange, kind="book_reset", market="bybit-spot")
        for _ in range(50):
            message = await recv_json(bybit)
            if message["type"] == "snapshot":
                break
        assert message["type"] == "snapshot" and message["data"]["u"] == 1
        assert (await recv_json(bybit))["data"]["u"] == 2

        await asyncio.sleep(1.2)  # let the exchange keep an older copy of the book
        await post_fault(session, exchange, kind="stale_snapshot", market="binance-spot")
        _, stale = await get_json(session, f"{exchange.http_url}/api/v3/depth", params={"symbol": "BTCUSDT"})
        _, fresh = await get_json(session, f"{exchange.http_url}/api/v3/depth", params={"symbol": "BTCUSDT"})
        assert stale["lastUpdateId"] < fresh["lastUpdateId"]

        await post_fault(
            session,
            exchange,
            kind="book_malformed",
            variant="negative_size",
            instrument="binance-spot:BTCUSDT",
        )
        for _ in range(20):
            event = await recv_json(binance)
            if any(s.startswith("-") for _, s in event["b"]):
                break
        else:
            raise AssertionError("no negative size sent")
        counts = (await status(session, exchange))["depth"]["faults_applied"]
        assert counts["book_gap"] == 2 and counts["book_reset"] == 1 and counts["stale_snapshot"] == 1
        await binance.close()
        await bybit.close()
