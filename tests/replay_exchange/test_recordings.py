"""Replaying recorded files: frames come back byte-identical on the right streams and routes,
paced by the recorded times, and recorded trades feed the REST history."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from marketdata.core.capture import CaptureWriter, read_frames
from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange import RecordingSource, ReplayConfig, running_replay_exchange
from tests.replay_exchange.conftest import get_json, recv_text, status


def _frames(path: Path) -> list[str]:
    return [frame.text for frame in read_frames(path)]


def _streams(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(orjson.loads(t)["stream"] for t in texts))


async def _receive(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[str]:
    return [await recv_text(ws) for _ in range(count)]


async def test_binance_spot_recording_replays_byte_identical(
    session: aiohttp.ClientSession, recorded_dir: Path
) -> None:
    path = recorded_dir / "cryptofeed-BINANCE.ws.1.0"
    recorded = _frames(path)
    depth = "nknusdt@depth@100ms"
    config = ReplayConfig(recordings=(RecordingSource(path),), speed=0)
    async with running_replay_exchange(config) as exchange:
        combined = await session.ws_connect(
            f"{exchange.ws_url}/stream?streams={'/'.join(_streams(recorded))}"
        )
        raw = await session.ws_connect(f"{exchange.ws_url}/ws/{depth}")
        received = await _receive(combined, len(recorded))
        raw_received = await _receive(raw, sum(1 for t in recorded if t.startswith(f'{{"stream":"{depth}"')))
        await combined.close()
        await raw.close()
    assert received == recorded
    prefix = f'{{"stream":"{depth}","data":'
    assert raw_received == [t[len(prefix) : -1] for t in recorded if t.startswith(prefix)]


async def test_usdm_recording_is_split_by_route(session: aiohttp.ClientSession, recorded_dir: Path) -> None:
    path = recorded_dir / "cryptofeed-BINANCE_FUTURES.ws.1.0"
    recorded = _frames(path)
    streams = _streams(recorded)
    public = [s for s in streams if "@depth" in s or "@bookTicker" in s]
    market = [s for s in streams if s not in public]
    config = ReplayConfig(recordings=(RecordingSource(path),), speed=0)
    async with running_replay_exchange(config) as exchange:
        on_public = await session.ws_connect(f"{exchange.ws_url}/public/stream?streams={'/'.join(public)}")
        on_market = await session.ws_connect(f"{exchange.ws_url}/market/stream?streams={'/'.join(market)}")
        wrong = await session.ws_connect(f"{exchange.ws_url}/market/stream?streams={'/'.join(public)}")
        public_frames = [t for t in recorded if orjson.loads(t)["stream"] in public]
        market_frames = [t for t in recorded if orjson.loads(t)["stream"] in market]
        assert await _receive(on_public, len(public_frames)) == public_frames
        assert await _receive(on_market, len(market_frames)) == market_frames
        try:
            extra = await asyncio.wait_for(wrong.receive(), 0.3)
        except TimeoutError:
            extra = None
        assert extra is None  # @depth/@bookTicker asked on /market: acknowledged, never delivered
        for ws in (on_public, on_market, wrong):
            await ws.close()


async def test_bybit_recording_replays_and_feeds_rest(
    session: aiohttp.ClientSession, recorded_dir: Path
) -> None:
    path = recorded_dir / "bybit-v5-linear-2025-09-25.jsonl"
    recorded = _frames(path)
    topics = [orjson.loads(t)["topic"] for t in recorded]
    config = ReplayConfig(recordings=(RecordingSource(path),), speed=0)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/v5/public/linear")
        await ws.send_str(orjson.dumps({"req_id": "r", "op": "subscribe", "args": topics}).decode())
        assert orjson.loads(await recv_text(ws))["success"] is True
        assert await _receive(ws, len(recorded)) == recorded
        await ws.close()
        code, body = await get_json(
            session,
            f"{exchange.http_url}/v5/market/recent-trade",
            params={"category": "linear", "symbol": "BTCUSDT"},
        )
    assert code == 200
    rows = body["result"]["list"]
    assert [(r["execId"], r["price"], r["size"], r["side"], r["seq"]) for r in rows] == [
        ("2a74ac78-691c-5b54-9dbe-5aafe8364627", "109378.90", "0.020", "Buy", "457514743450")
    ]


def _write_capture(path: Path, gap_s: float = 0.0, count: int = 5) -> list[str]:
    """Raw `/ws` trade frames (not wrapped) in our capture format, `gap_s` apart."""
    texts = [
        orjson.dumps(
            {
                "e": "trade",
                "E": 1_700_000_000_000 + i,
                "s": "BTCUSDT",
                "t": 1000 + i,
                "p": f"6500{i}.10000000",
                "q": "0.00100000",
                "T": 1_700_000_000_000 + i,
                "m": i % 2 == 0,
                "M": True,
            }
        ).decode()
        for i in range(count)
    ]
    from marketdata.core.instruments import InstrumentId

    with CaptureWriter(path, [InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT")], started_ns=1) as writer:
        for i, text in enumerate(texts):
            writer.write(1_000_000_000 + int(i * gap_s * 1e9), MarketKey.BINANCE_SPOT, text)
    return texts


async def test_capture_file_replays_raw_frames_to_both_forms_and_backfills(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "capture.jsonl"
    texts = _write_capture(path)
    config = ReplayConfig(recordings=(RecordingSource(path),), speed=0)
    async with running_replay_exchange(config) as exchange:
        combined = await session.ws_connect(f"{exchange.ws_url}/stream?streams=btcusdt@trade")
        raw = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade")
        assert await _receive(raw, 5) == texts
        assert await _receive(combined, 5) == [f'{{"stream":"btcusdt@trade","data":{t}}}' for t in texts]
        code, rows = await get_json(
            session,
            f"{exchange.http_url}/api/v3/historicalTrades",
            params={"symbol": "BTCUSDT", "fromId": "1002"},
        )
        await combined.close()
        await raw.close()
    assert code == 200
    assert [(r["id"], r["price"], r["isBuyerMaker"]) for r in rows] == [
        (1002, "65002.10000000", True),
        (1003, "65003.10000000", False),
        (1004, "65004.10000000", True),
    ]


async def test_replay_keeps_the_recorded_pace_divided_by_speed(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "paced.jsonl"
    _write_capture(path, gap_s=0.6, count=3)
    config = ReplayConfig(recordings=(RecordingSource(path),), speed=2.0)
    async with running_replay_exchange(config) as exchange:
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade")
        arrivals = []
        for _ in range(3):
            await recv_text(ws)
            arrivals.append(time.monotonic())
        await ws.close()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.25 <= gap <= 0.45 for gap in gaps), gaps  # 0.6 s recorded / speed 2


async def test_the_timeline_waits_for_the_first_subscription_and_loops(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "loop.jsonl"
    texts = _write_capture(path, count=3)
    config = ReplayConfig(recordings=(RecordingSource(path),), speed=0, loop=True)
    async with running_replay_exchange(config) as exchange:
        await asyncio.sleep(0.3)  # nothing is subscribed yet, so nothing is played
        before: Any = await status(session, exchange)
        assert before["recordings"][0]["played"] == 0
        ws = await session.ws_connect(f"{exchange.ws_url}/ws/btcusdt@trade")
        assert await _receive(ws, 9) == texts * 3  # the first frame is not lost; then it loops
        await ws.close()
        after = await status(session, exchange)
        assert after["recordings"][0]["passes"] >= 3
        assert after["instruments"]["binance-spot:BTCUSDT"]["trades"] == 3  # history from the first pass
