"""The whole system in one process on loopback: replay exchange -> collector -> storage (embedded
SQLite) -> volume profile, with the checks every reliability case ends with: stored trades equal
the trades the exchange sent (no loss, no duplicates) and analytics equal a Decimal recompute."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from marketdata.collector.server import CollectorService, start_collector_service
from marketdata.core.config import Settings, load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.replay_exchange.server import ReplayHandle, running_replay_exchange
from marketdata.replay_exchange.specs import spec_for
from marketdata.storage.server import start_storage_service
from marketdata.v1 import common_pb2
from marketdata.v1 import storage_service_pb2_grpc as storage_grpc
from marketdata.v1 import volume_profile_service_pb2 as profile_pb2
from marketdata.v1 import volume_profile_service_pb2_grpc as profile_grpc
from marketdata.volume_profile.server import VolumeProfileService, start_volume_profile_service
from tests.collector.conftest import FAST
from tests.storage.conftest import Running, bars_as_oracle, free_port, oracle, storage_env, wait_for
from tests.volume_profile.conftest import oracle_profile


def replay_config(instruments: str, rate: float, max_trades: int | None, **extra: Any) -> ReplayConfig:
    return ReplayConfig(
        instruments=tuple(InstrumentId.parse(k) for k in instruments.split(",")),
        rate=rate,
        max_trades=max_trades,
        seed=23,
        **extra,
    )


def system_env(exchange: ReplayHandle, tmp_path: Path, instruments: str, **extra: str) -> dict[str, str]:
    """Settings for every service: fast timers, the replay exchange's endpoints, a temp store."""
    env = storage_env(tmp_path)
    env.update(FAST)
    env.update(
        MARKETDATA_INSTRUMENTS=instruments,
        MARKETDATA_BOOK_INSTRUMENTS="none",
        MARKETDATA_VOLUME_PROFILE_PORT="0",
        MARKETDATA_VOLUME_PROFILE_METRICS_PORT="0",
    )
    for name in ("BINANCE_SPOT", "BINANCE_FUTURES", "BYBIT"):
        env[f"MARKETDATA_{name}_WS_URL"] = exchange.ws_url
        env[f"MARKETDATA_{name}_REST_URL"] = exchange.http_url
    env.update({f"MARKETDATA_{k.upper()}": v for k, v in extra.items()})
    return env


@dataclass(repr=False)
class System:
    exchange: ReplayHandle
    storage: StorageRunning
    collector: CollectorService
    profile: VolumeProfileService
    profile_stub: profile_grpc.VolumeProfileServiceStub
    env: dict[str, str]

    @property
    def instruments(self) -> list[InstrumentId]:
        return list(self.collector.collector.instruments)

    @property
    def collector_addr(self) -> str:
        return f"127.0.0.1:{self.collector.grpc.port}"

    @property
    def profile_addr(self) -> str:
        return f"127.0.0.1:{self.profile.grpc.port}"

    async def restart_storage(self, down_s: float = 0.0, **extra: str) -> None:
        """Stop storage gracefully (streams get 0.5 s) and start it again on the same port and store,
        with `extra` settings on top; `down_s` seconds in between."""
        await stop_storage(self.storage)
        await asyncio.sleep(down_s)
        self.env.update({f"MARKETDATA_{k.upper()}": v for k, v in extra.items()})
        self.storage = await start_storage(self.env)

    def settings(self, **extra: str) -> Settings:
        env = dict(self.env)
        env.update({f"MARKETDATA_{k.upper()}": v for k, v in extra.items()})
        return load_settings(env)

    async def fault(self, **spec: Any) -> dict[str, Any]:
        """POST /_replay/faults; the exchange's answer (what the fault touched)."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.exchange.http_url}/_replay/faults", json=spec) as response,
        ):
            body: dict[str, Any] = await response.json()
            assert response.status == 200, body
            return body

    def generator_done(self) -> bool:
        generator = self.exchange.state.generator
        return generator is not None and all(slot.done for slot in generator.slots.values())

    def sent_count(self) -> int:
        return sum(len(self.exchange.state.tapes[i].all()) for i in self.instruments)

    async def wait_all_stored(self, timeout: float = 60.0) -> None:
        """Until the generator is done and storage acknowledged as many trades as were sent."""
        writer = self.collector.collector.storage
        assert writer is not None and writer.trades is not None
        stream = writer.trades
        await wait_for(self.generator_done, timeout, "the generator to finish")
        try:
            await wait_for(lambda: not stream.entries and stream.acked_items >= self.sent_count(), timeout)
        except AssertionError:
            gaps = {
                m.value: [str(g) for g in s.recent_gaps] for m, s in self.collector.collector.stats.items()
            }
            raise AssertionError(
                f"{stream.acked_items} of {self.sent_count()} trades acknowledged; gaps: {gaps}"
            ) from None


def sent_trades(exchange: ReplayHandle, instrument: InstrumentId) -> list[common_pb2.Trade]:
    """What the exchange generated for an instrument (sent on WebSocket or withheld by a fault)."""
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


def tick_of(instrument: InstrumentId) -> str:
    spec = spec_for(instrument)
    return f"{spec.tick:.{spec.price_decimals}f}"


async def assert_stored_equals_sent(
    storage: Running, exchange: ReplayHandle, instrument: InstrumentId
) -> int:
    """Every trade the exchange made is stored once with its exact values; footprints equal a recompute."""
    expected = sent_trades(exchange, instrument)
    assert expected, f"{instrument.key}: the exchange sent nothing"
    start = expected[0].exchange_time_ms - 120_000
    end = expected[-1].exchange_time_ms + 120_000
    got = await storage.trades(instrument, start, end)
    ids = [t.trade_id for t in got]
    assert len(ids) == len(set(ids)), f"{instrument.key}: a trade is stored twice"
    missing = {t.trade_id for t in expected} - set(ids)
    extra = set(ids) - {t.trade_id for t in expected}
    assert not missing and not extra, f"{instrument.key}: {len(missing)} lost, {len(extra)} unknown"
    stored = {t.trade_id: t for t in got}
    for t in expected:
        s = stored[t.trade_id]
        assert (s.price, s.size, s.side, s.exchange_time_ms) == (t.price, t.size, t.side, t.exchange_time_ms)
    bars = await storage.footprints(instrument, start - start % 60_000, end)
    assert bars_as_oracle(bars) == oracle(expected, tick_of(instrument)), f"{instrument.key}: footprints"
    return len(expected)


async def assert_profile_equals_recompute(system: System, instrument: InstrumentId) -> None:
    """GetVolumeProfile over everything sent equals the Decimal oracle of DESIGN's definitions."""
    expected = sent_trades(system.exchange, instrument)
    start = expected[0].exchange_time_ms - expected[0].exchange_time_ms % 60_000
    end = expected[-1].exchange_time_ms - expected[-1].exchange_time_ms % 60_000 + 60_000
    request = profile_pb2.GetVolumeProfileRequest(
        instruments=[instrument.to_proto()],
        range=profile_pb2.ProfileRange(start_time_ms=start, end_time_ms=end),
    )
    response = await system.profile_stub.GetVolumeProfile(request, timeout=30)
    want = oracle_profile(expected, tick_of(instrument))
    profile = response.profile
    got_rows = [(r.price, r.buy_volume, r.sell_volume) for r in profile.rows]
    assert [(Decimal(p), Decimal(b), Decimal(s)) for p, b, s in got_rows] == want["rows"], instrument.key
    assert (Decimal(profile.poc), Decimal(profile.value_area_high), Decimal(profile.value_area_low)) == (
        want["poc"],
        want["vah"],
        want["val"],
    ), instrument.key


@dataclass
class StorageRunning(Running):
    """A storage service started by the stack, with the channel of its stub (closed on stop)."""

    channel: grpc.aio.Channel | None = None


async def start_storage(env: dict[str, str]) -> StorageRunning:
    settings = load_settings(env)
    service = await start_storage_service(settings, process_metrics=False)
    channel = create_channel(f"127.0.0.1:{service.grpc.port}")
    stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
    return StorageRunning(service, stub, settings, channel)


async def stop_storage(storage: StorageRunning, grace: float = 0.5) -> None:
    if storage.channel is not None:
        await storage.channel.close()
    await storage.service.stop(grace=grace)


@contextlib.asynccontextmanager
async def running_system(
    tmp_path: Path, replay: ReplayConfig, instruments: str, **settings: str
) -> AsyncIterator[System]:
    """Replay exchange, storage, collector (writing to storage) and volume profile, all on loopback.
    Storage listens on a fixed free port so that a case can restart it where the others expect it."""
    async with running_replay_exchange(replay) as exchange:
        env = system_env(exchange, tmp_path, instruments, storage_port=str(free_port()), **settings)
        system: System | None = None
        storage = await start_storage(env)
        try:
            env["MARKETDATA_STORAGE_ADDR"] = storage.address
            collector = await start_collector_service(load_settings(env), process_metrics=False)
            try:
                env["MARKETDATA_COLLECTOR_ADDR"] = f"127.0.0.1:{collector.grpc.port}"
                profile = await start_volume_profile_service(
                    load_settings(env), process_metrics=False, live=False
                )
                channel = create_channel(f"127.0.0.1:{profile.grpc.port}")
                try:
                    stub = profile_grpc.VolumeProfileServiceStub(channel)  # type: ignore[no-untyped-call]
                    system = System(exchange, storage, collector, profile, stub, env)
                    yield system
                finally:
                    await channel.close()
                    await profile.stop(grace=0.5)
            finally:
                await collector.stop(grace=0.5)
        finally:
            await stop_storage(system.storage if system is not None else storage)
