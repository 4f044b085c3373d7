"""The `marketdata` command as a user runs it: real child processes on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from marketdata.core.capture import read_frames
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.config import RecordingSource, ReplayConfig
from marketdata.replay_exchange.server import running_replay_exchange

from ..collector.conftest import running_stack
from .processes import run_marketdata, running_up, up_env

INSTRUMENTS = "binance-spot:BTCUSDT,binance-futures:BTCUSDT,bybit-spot:BTCUSDT,bybit-linear:BTCUSDT"


async def test_up_replay_then_tail_json_prints_normalized_trades(tmp_path: Path) -> None:
    env = up_env(tmp_path, instruments=INSTRUMENTS)
    ports = {"collector": env["MARKETDATA_COLLECTOR_PORT"]}
    async with running_up(env, "--replay", "--replay-rate", "50") as text:
        assert "replay-exchange" in text and "collector" in text
        assert f"grpc 127.0.0.1:{ports['collector']}" in text

        code, out, err = await run_marketdata("tail", "trades", "--json", "--limit", "40", env=env)
        assert code == 0, err
        records = [orjson.loads(line) for line in out.splitlines()]
        assert len(records) == 40
        keys = {
            "exchange",
            "market",
            "symbol",
            "trade_id",
            "price",
            "size",
            "side",
            "exchange_time_ms",
            "receive_time_ns",
        }
        for record in records:
            assert keys <= record.keys()
            assert record["side"] in ("buy", "sell")
            assert isinstance(record["price"], str) and isinstance(record["size"], str)
            InstrumentId.parse(record["instrument"])
        assert {r["exchange"] for r in records} <= {"binance", "bybit"}

        code, out, _ = await run_marketdata(
            "tail", "trades", "--instrument", "bybit-spot:BTCUSDT", "--limit", "3", env=env
        )
        assert (
            code == 0
            and len(out.splitlines()) == 3
            and all("bybit-spot:BTCUSDT" in x for x in out.splitlines())
        )

        code, _, err = await run_marketdata(
            "tail", "trades", "--instrument", "bybit-spot:NOPE", "--limit", "1", env=env
        )
        # A wrong request (INVALID_ARGUMENT) exits 2, like every command that asks a service.
        assert code == 2 and "bybit-spot:NOPE is not collected" in err


async def test_bad_configuration_stops_start_up_naming_the_entry() -> None:
    env = {"MARKETDATA_INSTRUMENTS": "binance-spot:BTCUSDT,bitstamp:BTCUSD"}
    code, _, err = await run_marketdata("serve", "collector", env=env)
    assert code == 2
    assert "MARKETDATA_INSTRUMENTS: entry 2 ('bitstamp:BTCUSD'): unknown market 'bitstamp'" in err

    code, _, err = await run_marketdata(
        "serve", "collector", env={"MARKETDATA_BYBIT_WS_URL": "stream.bybit.com"}
    )
    assert code == 2 and "MARKETDATA_BYBIT_WS_URL" in err


async def test_record_then_replay_reproduces_the_same_trades(tmp_path: Path) -> None:
    """A recorded session, served back by the replay exchange, yields exactly the recorded trades."""
    instruments = "binance-spot:BTCUSDT,bybit-linear:BTCUSDT"
    capture = tmp_path / "session.jsonl"
    config = ReplayConfig(
        instruments=tuple(InstrumentId.parse(k) for k in instruments.split(",")),
        rate=400,
        max_trades=150,
        seed=3,
    )
    async with running_replay_exchange(config) as exchange:
        env = {"MARKETDATA_INSTRUMENTS": instruments, "MARKETDATA_LOG_LEVEL": "WARNING"}
        for name in ("BINANCE_SPOT", "BINANCE_FUTURES", "BYBIT"):
            env[f"MARKETDATA_{name}_WS_URL"] = exchange.ws_url
            env[f"MARKETDATA_{name}_REST_URL"] = exchange.http_url
        code, _, err = await run_marketdata("record", "-o", str(capture), "--duration", "3", env=env)
        assert code == 0, err
        recorded = {k: [str(t.trade_id) for t in exchange.state.tapes[InstrumentId.parse(k)].all() if t.sent]
                    for k in instruments.split(",")}  # fmt: skip
    frames = list(read_frames(capture))
    assert {f.market.value for f in frames} == {"binance-spot", "bybit-linear"}
    assert all(len(v) == 150 for v in recorded.values())

    replay = ReplayConfig(recordings=(RecordingSource(capture),), speed=0)
    async with running_stack(replay, instruments) as stack:
        keys = instruments.split(",")
        await stack.wait_for(
            lambda: all(len(stack.received.trades.get(k, [])) >= 150 for k in keys), 30, "replay"
        )
        await asyncio.sleep(0.3)
        for key in keys:
            assert [t.trade_id for t in stack.received.trades[key]] == recorded[key]
