"""`marketdata tail book --instrument KEY --depth N --json`: JSON lines, bids and asks as [price, size]
string pairs, best first."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from decimal import Decimal

import orjson

from marketdata.cli.tail import stream_book
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.config import ReplayConfig

from ..conftest import running_stack

KEY = "bybit-spot:BTCUSDT"


async def test_tail_book_json_lines() -> None:
    replay = ReplayConfig(instruments=(InstrumentId.parse(KEY),), rate=100, seed=5)
    async with running_stack(replay, KEY) as stack:
        books = stack.service.collector.books
        assert books is not None
        await stack.wait_for(lambda: books.syncs[InstrumentId.parse(KEY)].state == 3, 15, "the book")
        addr = f"127.0.0.1:{stack.service.grpc.port}"
        out = io.StringIO()
        assert await stream_book(addr, InstrumentId.parse(KEY), 5, 0, 3, True, out) == 0
        records = [orjson.loads(line) for line in out.getvalue().splitlines()]
        assert len(records) == 3
        for record in records:
            assert record["instrument"] == KEY and record["state"] == "synced"
            bids, asks = record["bids"], record["asks"]
            assert len(bids) == 5 and len(asks) == 5
            assert all(isinstance(p, str) and isinstance(s, str) for p, s in bids + asks)
            assert [Decimal(p) for p, _ in bids] == sorted((Decimal(p) for p, _ in bids), reverse=True)
            assert [Decimal(p) for p, _ in asks] == sorted(Decimal(p) for p, _ in asks)
            assert record["best_bid"] == bids[0][0] and record["best_ask"] == asks[0][0]
            assert Decimal(record["spread"]) == Decimal(asks[0][0]) - Decimal(bids[0][0])
        assert records[0]["update_id"] < records[-1]["update_id"]

        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketdata.cli.main", "tail", "book", "--instrument", KEY,
            "--depth", "20", "--json", "--limit", "2", "--addr", addr,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode()
        lines = [orjson.loads(line) for line in stdout.decode().splitlines()]
        assert len(lines) == 2 and all(len(line["bids"]) == 20 for line in lines)

        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketdata.cli.main", "tail", "book", "--instrument", "bybit-spot:NOPE",
            "--addr", addr, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 2 and "instrument: bybit-spot:NOPE is not collected" in stderr.decode()
