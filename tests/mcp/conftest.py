"""The MCP bridge under test: a replay exchange, a collector writing to storage (embedded SQLite), the
volume-profile and order-flow services reading both, and the bridge over streamable HTTP, all
in-process on loopback; a real MCP client (fastmcp.Client) speaks to it over HTTP.

One stack for this test package (it takes a few seconds to fill): the replay exchange generates a fixed
number of trades and then stops, so every service's answer is stable and can be compared."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from marketdata.core.config import load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.mcp.server import McpHttpService, start_mcp_http
from marketdata.order_flow.server import start_order_flow_service
from marketdata.replay_exchange.config import ReplayConfig
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import order_flow_service_pb2_grpc as of_grpc
from marketdata.v1 import volume_profile_service_pb2 as vp_pb2
from marketdata.v1 import volume_profile_service_pb2_grpc as vp_grpc
from marketdata.volume_profile.server import start_volume_profile_service
from tests.collector.conftest import Stack, running_stack
from tests.storage.conftest import running_storage, storage_env

FUTURES = InstrumentId.parse("binance-futures:BTCUSDT")
LINEAR = InstrumentId.parse("bybit-linear:BTCUSDT")
INSTRUMENTS = f"{FUTURES.key},{LINEAR.key}"
TICKS = {FUTURES: "0.10", LINEAR: "0.10"}
TRADES_PER_INSTRUMENT = 400

# Tokens as an operator configures them: one unlimited, one on a tier of 3 tool calls a day.
TOKEN = "test-token-unlimited-0123456789abcdef"
LIMITED_TOKEN = "test-token-limited-0123456789abcdef"
EXPIRED_TOKEN = "test-token-expired-0123456789abcdef"  # expired on 2020-01-01
TIERS = "tiny=0/3,unlimited=0/0"


@dataclass
class Bridge:
    collector: Stack
    service: McpHttpService
    collector_stub: collector_grpc.CollectorServiceStub
    profile_stub: vp_grpc.VolumeProfileServiceStub
    flow_stub: of_grpc.OrderFlowServiceStub

    @property
    def url(self) -> str:
        return self.service.url

    def client(self, token: str | None = TOKEN, **kwargs: object) -> Client[StreamableHttpTransport]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return Client(StreamableHttpTransport(self.url, headers=headers), **kwargs)  # type: ignore[arg-type]

    async def stable_profile(
        self, request: vp_pb2.GetVolumeProfileRequest
    ) -> vp_pb2.GetVolumeProfileResponse:
        """Ask until two answers in a row agree (storage has caught up with the last trades)."""
        previous = None
        for _ in range(100):
            reply: vp_pb2.GetVolumeProfileResponse = await self.profile_stub.GetVolumeProfile(request)
            if previous is not None and reply.profile == previous.profile:
                return reply
            previous = reply
            await asyncio.sleep(0.2)
        raise AssertionError("the volume profile did not settle")


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    env = storage_env(tmp_path)
    async with running_storage(load_settings(env)) as storage:
        replay = ReplayConfig(
            instruments=(FUTURES, LINEAR),
            rate=400.0,
            max_trades=TRADES_PER_INSTRUMENT,
            seed=11,
            book_churn_per_s=0.0,
        )
        async with running_stack(replay, INSTRUMENTS, storage_addr=storage.address) as collector:
            await collector.wait_all_delivered(timeout=60)
            collector_addr = f"127.0.0.1:{collector.service.grpc.port}"
            settings = load_settings(
                {
                    **env,
                    "MARKETDATA_INSTRUMENTS": INSTRUMENTS,
                    "MARKETDATA_STORAGE_ADDR": storage.address,
                    "MARKETDATA_COLLECTOR_ADDR": collector_addr,
                    "MARKETDATA_VOLUME_PROFILE_PORT": "0",
                    "MARKETDATA_VOLUME_PROFILE_METRICS_PORT": "0",
                }
            )
            profile = await start_volume_profile_service(settings, process_metrics=False, tick_sizes=TICKS)
            flow = await start_order_flow_service(
                load_settings(
                    {
                        **env,
                        "MARKETDATA_INSTRUMENTS": INSTRUMENTS,
                        "MARKETDATA_STORAGE_ADDR": storage.address,
                        "MARKETDATA_COLLECTOR_ADDR": collector_addr,
                        "MARKETDATA_ORDER_FLOW_PORT": "0",
                        "MARKETDATA_ORDER_FLOW_METRICS_PORT": "0",
                    }
                ),
                process_metrics=False,
                tick_sizes=TICKS,
            )
            bridge_settings = load_settings(
                {
                    **env,
                    "MARKETDATA_INSTRUMENTS": INSTRUMENTS,
                    "MARKETDATA_COLLECTOR_ADDR": collector_addr,
                    "MARKETDATA_VOLUME_PROFILE_ADDR": f"127.0.0.1:{profile.grpc.port}",
                    "MARKETDATA_ORDER_FLOW_ADDR": f"127.0.0.1:{flow.grpc.port}",
                    "MARKETDATA_MCP_PORT": "0",
                    "MARKETDATA_MCP_METRICS_PORT": "0",
                    "MARKETDATA_MCP_TOKENS": f"{TOKEN}:unlimited,{LIMITED_TOKEN}:tiny,{EXPIRED_TOKEN}:unlimited:2020-01-01",
                    "MARKETDATA_MCP_TIERS": TIERS,
                }
            )
            service = await start_mcp_http(bridge_settings, process_metrics=False)
            collector_channel = create_channel(collector_addr)
            profile_channel = create_channel(f"127.0.0.1:{profile.grpc.port}")
            flow_channel = create_channel(f"127.0.0.1:{flow.grpc.port}")
            try:
                yield Bridge(
                    collector,
                    service,
                    collector_grpc.CollectorServiceStub(collector_channel),  # type: ignore[no-untyped-call]
                    vp_grpc.VolumeProfileServiceStub(profile_channel),  # type: ignore[no-untyped-call]
                    of_grpc.OrderFlowServiceStub(flow_channel),  # type: ignore[no-untyped-call]
                )
            finally:
                await collector_channel.close()
                await profile_channel.close()
                await flow_channel.close()
                await service.stop()
                await profile.stop(grace=0.5)
                await flow.stop(grace=0.5)


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def bridge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path_factory.mktemp("mcp")) as running:
        yield running
