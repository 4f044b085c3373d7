"""The collector writes every trade to storage: end to end against the replay exchange.

Replay exchange (real protocols) -> collector -> WriteTrades -> storage. What storage holds is compared
with what the exchange generated: every trade once, and footprints equal to a Decimal recompute at the
tick size the exchange's metadata gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from marketdata.collector.server import CollectorService, start_collector_service
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.replay_exchange.server import ReplayHandle, running_replay_exchange
from marketdata.replay_exchange.specs import spec_for
from marketdata.v1 import common_pb2

from ..collector.conftest import collector_settings
from .conftest import (
    Running,
    bars_as_oracle,
    free_port,
    oracle,
    running_storage,
    storage_env,
    storage_settings,
    wait_for,
)

LINEAR = "binance-futures:BTCUSDT,bybit-linear:BTCUSDT"
ROOT = Path(__file__).resolve().parents[2]


def replay(instruments: str, rate: float, max_trades: int) -> ReplayConfig:
    return ReplayConfig(
        instruments=tuple(InstrumentId.parse(k) for k in instruments.split(",")),
        rate=rate,
        max_trades=max_trades,
        seed=11,
        trades_per_frame=200,
    )


def sent(exchange: ReplayHandle, instrument: InstrumentId) -> list[common_pb2.Trade]:
    """What the exchange generated, as trades (identity, exact decimals, side, time)."""
    return [
        common_pb2.Trade(
            trade_id=str(t.trade_id),
            price=t.price,
            size=t.qty,
            side=common_pb2.SIDE_BUY if t.is_buy else common_pb2.SIDE_SELL,
            exchange_time_ms=t.time_ms,
        )
        for t in exchange.state.tapes[instrument].all()
    ]


def generator_done(exchange: ReplayHandle) -> bool:
    generator = exchange.state.generator
    return generator is not None and all(slot.done for slot in generator.slots.values())


@contextlib.asynccontextmanager
async def collector_for(
    exchange: ReplayHandle, instruments: str, storage_addr: str, **extra: str
) -> AsyncIterator[CollectorService]:
    settings = collector_settings(exchange, instruments, storage_addr=storage_addr, **extra)
    service = await start_collector_service(settings, process_metrics=False)
    try:
        yield service
    finally:
        await service.stop(grace=0.5)


async def assert_exactly_stored(storage: Running, exchange: ReplayHandle, instruments: str) -> int:
    total = 0
    for key in instruments.split(","):
        instrument = InstrumentId.parse(key)
        expected = sent(exchange, instrument)
        assert expected, key
        start = expected[0].exchange_time_ms - 120_000
        end = expected[-1].exchange_time_ms + 120_000
        got = await storage.trades(instrument, start, end)
        got_ids = [t.trade_id for t in got]
        assert len(got_ids) == len(set(got_ids)), f"{key}: a trade is stored twice"
        assert sorted(got_ids) == sorted(t.trade_id for t in expected), (
            f"{key}: stored trades differ from sent"
        )
        by_id = {t.trade_id: t for t in got}
        for t in expected:
            stored = by_id[t.trade_id]
            assert (stored.price, stored.size, stored.side, stored.exchange_time_ms) == (
                t.price,
                t.size,
                t.side,
                t.exchange_time_ms,
            )
        tick = f"{spec_for(instrument).tick:.{spec_for(instrument).price_decimals}f}"
        bars = await storage.footprints(instrument, start - start % 60_000, end)
        assert bars_as_oracle(bars) == oracle(expected, tick), f"{key}: footprints differ from a recompute"
        assert all(b.row_size == tick for b in bars)
        total += len(expected)
    return total


async def test_every_trade_reaches_storage_once_with_footprints_at_the_exchange_tick(tmp_path: Path) -> None:
    async with (
        running_storage(storage_settings(tmp_path)) as storage,
        running_replay_exchange(replay(LINEAR, rate=2000, max_trades=1500)) as exchange,
        collector_for(exchange, LINEAR, storage.address) as collector,
    ):
        writer = collector.collector.storage
        assert writer is not None
        await wait_for(lambda: generator_done(exchange), 30, "the generator")
        await wait_for(
            lambda: (
                writer.trades is not None
                and not writer.trades.entries
                and sum(len(sent(exchange, InstrumentId.parse(k))) for k in LINEAR.split(","))
                == writer.trades.acked_items
            ),
            30,
            "every batch acknowledged",
        )
        assert await assert_exactly_stored(storage, exchange, LINEAR) == 3000
        assert writer.tick_sizes[InstrumentId.parse("binance-futures:BTCUSDT")] == "0.10"


async def test_storage_down_buffers_then_resends_and_sheds_past_the_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    addr = f"127.0.0.1:{port}"
    instruments = "binance-futures:BTCUSDT"
    caplog.set_level(logging.WARNING, logger="marketdata.collector.storage_writer")
    async with (
        running_replay_exchange(replay(instruments, rate=1000, max_trades=800)) as exchange,
        # storage is down from the start: the collector waits 0.1 s for the restart point, then collects
        collector_for(
            exchange, instruments, addr, storage_unacked_max_trades="500", restart_lookup_timeout_s="0.1"
        ) as collector,
    ):
        writer = collector.collector.storage
        assert writer is not None and writer.trades is not None
        await wait_for(lambda: generator_done(exchange), 30, "the generator")
        await wait_for(lambda: writer.trades is not None and writer.trades.shed_items >= 300, 10, "shedding")
        stream = writer.trades
        # Bounded: the newest 500 (or fewer) trades are kept, the oldest were shed and counted.
        assert stream.unacked_items <= 500
        assert stream.shed_items + stream.unacked_items == 800
        assert any("shedding the oldest" in r.getMessage() for r in caplog.records)
        kept = stream.unacked_items
        async with running_storage(storage_settings(tmp_path, storage_port=str(port))) as storage:
            await wait_for(lambda: not stream.entries, 20, "the kept batches to be resent and acknowledged")
            instrument = InstrumentId.parse(instruments)
            expected = sent(exchange, instrument)[-kept:]
            got = await storage.trades(
                instrument, expected[0].exchange_time_ms - 60_000, expected[-1].exchange_time_ms + 1
            )
            assert [t.trade_id for t in got] == [t.trade_id for t in expected]


async def test_a_backlog_joins_into_few_requests_and_is_stored_whole(tmp_path: Path) -> None:
    """Storage away while one-trade frames arrive: the queued batches of an instrument join into a
    few requests (instead of one per frame), and once storage is back every trade is stored once, in
    order."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    # 1200 trades per instrument, one per frame
    config = dataclasses.replace(replay(LINEAR, rate=1000, max_trades=1200), trades_per_frame=1)
    async with (
        running_replay_exchange(config) as exchange,
        collector_for(exchange, LINEAR, addr, restart_lookup_timeout_s="0.1") as collector,
    ):
        writer = collector.collector.storage
        assert writer is not None and writer.trades is not None
        stream = writer.trades
        await wait_for(lambda: generator_done(exchange), 30, "the generator")
        await wait_for(lambda: stream.unacked_items == 2400, 10, "every trade to be kept")
        # 2 x 1200 one-trade frames wait as a handful of requests (up to 1000 trades each).
        assert len(stream.entries) <= 6, len(stream.entries)
        assert stream.joined_batches > 100
        async with running_storage(storage_settings(tmp_path, storage_port=str(port))) as storage:
            await wait_for(lambda: not stream.entries, 20, "the backlog to be acknowledged")
            assert stream.shed_items == 0
            for key in LINEAR.split(","):
                instrument = InstrumentId.parse(key)
                expected = sent(exchange, instrument)
                got = await storage.trades(
                    instrument, expected[0].exchange_time_ms, expected[-1].exchange_time_ms + 1
                )
                assert [t.trade_id for t in got] == [t.trade_id for t in expected], key


async def test_one_trade_frames_reach_storage_in_few_requests(tmp_path: Path) -> None:
    """At a steady rate of one-trade frames, the collector gathers each instrument's trades for the
    linger (50 ms) and writes them as one request: storage commits a few dozen requests instead of
    one per frame, and holds every trade once."""
    config = dataclasses.replace(replay(LINEAR, rate=500, max_trades=1000), trades_per_frame=1)
    async with (
        running_storage(storage_settings(tmp_path)) as storage,
        running_replay_exchange(config) as exchange,
        collector_for(exchange, LINEAR, storage.address) as collector,
    ):
        writer = collector.collector.storage
        assert writer is not None and writer.trades is not None
        stream = writer.trades
        await wait_for(lambda: generator_done(exchange), 30, "the generator")
        await wait_for(lambda: stream.acked_items == 2000, 20, "every trade to be acknowledged")
        # 2000 frames; about 20 requests a second per instrument over ~4 s.
        assert stream.acked_batches < 400, stream.acked_batches
        assert await assert_exactly_stored(storage, exchange, LINEAR) == 2000


# --- SIGKILL ------------------------------------------------------------------------------------------


class StorageProcess:
    """`marketdata serve storage` as a child process on a fixed port."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = {**os.environ, **env}
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "marketdata.cli.main", "serve", "storage"],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"storage exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError("storage did not start")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def storage_process(tmp_path: Path) -> Iterator[StorageProcess]:
    port = free_port()
    env = storage_env(tmp_path, storage_port=str(port), storage_metrics_port="0", log_format="text")
    process = StorageProcess(env, port)
    try:
        yield process
    finally:
        process.stop()


async def test_sigkill_mid_stream_at_10k_trades_per_s_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, storage_process: StorageProcess
) -> None:
    storage_process.start()
    await storage_process.wait_ready()
    addr = f"127.0.0.1:{storage_process.port}"
    per_instrument = 25_000
    async with (
        running_replay_exchange(replay(LINEAR, rate=10_000, max_trades=per_instrument)) as exchange,
        collector_for(exchange, LINEAR, addr) as collector,
    ):
        writer = collector.collector.storage
        assert writer is not None and writer.trades is not None
        stream = writer.trades
        # Mid-stream: some batches acknowledged, more in flight.
        # No await between the check and the kill, so what is in flight at the check is what the kill hits.
        await wait_for(
            lambda: stream.acked_items >= 12_000 and bool(stream.entries),
            30,
            "storage to acknowledge a first part with more in flight",
        )
        assert not generator_done(exchange)
        storage_process.kill()
        killed_with = len(stream.entries)
        await asyncio.sleep(0.5)
        storage_process.start()
        await storage_process.wait_ready()
        await wait_for(lambda: generator_done(exchange), 60, "the generator")
        await wait_for(
            lambda: not stream.entries and stream.acked_items >= 2 * per_instrument,
            60,
            "everything acknowledged",
        )
        assert stream.resent_batches > 0, "the kill left nothing to resend"
        assert stream.shed_items == 0
        storage_process.stop()
        # Read the store the killed-and-restarted process wrote (now closed) with a fresh service.
        async with running_storage(storage_settings(tmp_path, storage_port="0")) as storage:
            assert await assert_exactly_stored(storage, exchange, LINEAR) == 2 * per_instrument
        assert killed_with > 0, "nothing was in flight when storage was killed"
