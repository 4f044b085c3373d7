"""Firehose mode (`--firehose`): trades offered as fast as a client reads them, in the exchanges' real
shapes, with consecutive ids across the pre-rendered blocks, and held back (not buffered without
bound) for a client that stops reading."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp
import orjson

from marketdata.collector.binance import BinanceFrameParser
from marketdata.collector.bybit import BybitFrameParser
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange import ReplayConfig, binance, bybit, running_replay_exchange
from marketdata.replay_exchange.cli import DEFAULT_PORT, config_from_args, configure_parser
from marketdata.replay_exchange.firehose import BLOCK, HIGH_WATER
from marketdata.replay_exchange.trades import Trade
from tests.replay_exchange.conftest import instruments, recv_json, status, wait_for

SPOT = InstrumentId.parse("binance-spot:BTCUSDT")
LINEAR = InstrumentId.parse("bybit-linear:BTCUSDT")


async def test_binance_ids_are_consecutive_across_blocks_and_frames_are_the_real_shape(
    session: aiohttp.ClientSession,
) -> None:
    total = 2 * BLOCK + 500  # three blocks, the last one cut by --max-trades
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT"), firehose=True, max_trades=total)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/stream?streams=btcusdt@trade")
        parser = BinanceFrameParser(SPOT.market, {"BTCUSDT": SPOT})
        ids: list[int] = []
        while len(ids) < total:
            text = (await ws.receive(timeout=10)).data
            frame = parser.parse(text, 0)
            assert len(frame.trades) == 1 and frame.instrument == SPOT
            trade = frame.trades[0]
            ids.append(int(trade.trade_id))
            # Byte for byte what the paced mode sends for the same trade.
            data = orjson.loads(text)["data"]
            same = Trade(data["t"], trade.price, trade.size, not data["m"], data["T"])
            assert text.encode() == binance.combined(
                "btcusdt@trade", binance.trade_payload(SPOT.market, "BTCUSDT", same)
            )
        assert ids == list(range(ids[0], ids[0] + total))
        body = await status(session, exchange)
        assert body["firehose"]["binance-spot:BTCUSDT"]["trades"] == total
        assert body["instruments"]["binance-spot:BTCUSDT"]["trades_sent"] == total
        await ws.close()


async def test_bybit_linear_trades_are_unique_in_sequence_and_parse_with_the_collector(
    session: aiohttp.ClientSession,
) -> None:
    total = 2 * BLOCK + 500
    config = ReplayConfig(
        instruments=instruments("bybit-linear:BTCUSDT"), firehose=True, max_trades=total, trades_per_frame=100
    )
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await ws.send_str('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')
        assert (await recv_json(ws))["success"] is True
        parser = BybitFrameParser(LINEAR.market, {"BTCUSDT": LINEAR})
        trades = []
        while len(trades) < total:
            text = (await ws.receive(timeout=10)).data
            frame = parser.parse(text, 0)
            assert len(frame.trades) == 100
            value = orjson.loads(text)
            rows = [
                Trade(r["i"], r["p"], r["v"], r["S"] == "Buy", r["T"], r["seq"], r["L"])
                for r in value["data"]
            ]
            assert text.encode() == bybit.trade_frame(LINEAR.market, "BTCUSDT", rows, value["ts"])
            trades += frame.trades
        assert len({t.trade_id for t in trades}) == total
        sequences = [t.cross_sequence for t in trades]
        assert sequences == list(range(sequences[0], sequences[0] + total))
        await ws.close()


async def test_a_client_that_stops_reading_holds_the_firehose_back(session: aiohttp.ClientSession) -> None:
    config = ReplayConfig(instruments=instruments("binance-spot:BTCUSDT"), firehose=True)
    async with running_replay_exchange(config) as exchange:
        # A raw WebSocket handshake, then never another read: the kernel buffers fill, then ours.
        reader, writer = await asyncio.open_connection(exchange.host, exchange.port, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws/btcusdt@trade HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")

        async def held_back() -> bool:
            return bool(
                (await status(session, exchange))["firehose"]["binance-spot:BTCUSDT"]["waiting_for_drain"]
            )

        await wait_for(held_back, within=30)
        first = (await status(session, exchange))["firehose"]["binance-spot:BTCUSDT"]
        again = (await status(session, exchange))["firehose"]["binance-spot:BTCUSDT"]
        assert again["waiting_for_drain"] and again["trades"] == first["trades"]  # nothing more offered
        block_bytes = BLOCK * 200  # a Binance trade frame is well under 200 bytes
        assert first["max_buffered_bytes"] <= HIGH_WATER + block_bytes
        writer.close()


def test_the_firehose_flag_turns_the_mode_on() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert config_from_args(parser.parse_args(["--firehose"])).firehose is True
    assert config_from_args(parser.parse_args(["--port", str(DEFAULT_PORT)])).firehose is False
