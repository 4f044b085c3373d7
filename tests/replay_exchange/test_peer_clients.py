"""What peer client libraries need from the replay exchange to be measured against it (bench
collector --peers): TLS with a certificate the client can be told to trust, Binance aggregate-trade
streams, and a raw `/ws/<name>` connection whose name is no market stream (ccxt connects to `/ws/0`
and subscribes afterwards)."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from marketdata.replay_exchange import ReplayConfig, running_replay_exchange
from marketdata.replay_exchange.tls import server_context, write_self_signed
from tests.replay_exchange.conftest import instruments, recv_json, recv_text

SPOT = "binance-spot:BTCUSDT"


async def test_tls_serves_clients_that_trust_the_certificate_and_refuses_others(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with (
        running_replay_exchange(
            ReplayConfig(instruments(SPOT)), ssl_context=server_context(cert, key)
        ) as exchange,
        aiohttp.ClientSession() as session,
    ):
        assert exchange.http_url.startswith("https://") and exchange.ws_url.startswith("wss://")
        async with session.get(f"{exchange.http_url}/api/v3/ping", ssl=trusting) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"{exchange.http_url}/api/v3/ping", ssl=ssl.create_default_context()):
                pass
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade", ssl=trusting)
        assert (await recv_json(ws, within=5))["e"] == "trade"
        await ws.close()


def test_unloadable_certificate_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=r"nope\.pem"):
        server_context(missing, missing)


async def test_agg_trades_carry_the_same_trades_as_the_trade_stream() -> None:
    """Each generated trade is its own aggregate: same price, quantity, time and taker side."""
    config = ReplayConfig(instruments(SPOT), rate=200.0)
    async with running_replay_exchange(config) as exchange, aiohttp.ClientSession() as session:
        # the name in /ws/<name> is not a stream: the connection opens, and SUBSCRIBE follows
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/0")
        await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@aggTrade"],"id":1}')
        assert await recv_text(ws) == '{"result":null,"id":1}'
        trades: dict[int, dict[str, object]] = {}
        aggregates: dict[int, dict[str, object]] = {}
        while len(set(trades) & set(aggregates)) < 20:
            event = await recv_json(ws, within=5)
            if event["e"] == "trade":
                trades[event["t"]] = event
            else:
                assert event["e"] == "aggTrade" and event["a"] == event["f"] == event["l"]
                aggregates[event["a"]] = event
        for trade_id in set(trades) & set(aggregates):
            trade, aggregate = trades[trade_id], aggregates[trade_id]
            assert [aggregate[k] for k in ("p", "q", "T", "m", "s")] == [
                trade[k] for k in ("p", "q", "T", "m", "s")
            ]
        await ws.close()


async def test_combined_stream_with_an_unknown_name_is_still_refused() -> None:
    async with (
        running_replay_exchange(ReplayConfig(instruments(SPOT))) as exchange,
        aiohttp.ClientSession() as session,
        session.get(f"{exchange.http_url}/stream", params={"streams": "0"}) as response,
    ):
        assert response.status == 400
        assert (await response.json())["code"] == -1121
