"""A real grpc.aio server built by marketdata.core.grpc_server, on 127.0.0.1:0, with a tiny
CollectorService and separate client/server tracer providers (in-memory exporters)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from marketdata.core.grpc_client import create_channel
from marketdata.core.grpc_server import GrpcServer, ServiceRegistration, abort_invalid_argument, build_server
from marketdata.v1 import collector_service_pb2 as pb
from marketdata.v1 import collector_service_pb2_grpc as pb_grpc
from marketdata.v1 import common_pb2

SERVICE = "marketdata.v1.CollectorService"
BTC = common_pb2.Instrument(
    exchange=common_pb2.EXCHANGE_BINANCE, market=common_pb2.MARKET_SPOT, symbol="BTCUSDT"
)
ETH = common_pb2.Instrument(
    exchange=common_pb2.EXCHANGE_BYBIT, market=common_pb2.MARKET_LINEAR, symbol="ETHUSDT"
)


class FakeCollector(pb_grpc.CollectorServiceServicer):  # type: ignore[misc]
    """Answers from constants; StreamTrades sends `batches` batches per instrument, `pause` s apart."""

    def __init__(self, batches: int = 3, pause: float = 0.0) -> None:
        self.batches = batches
        self.pause = pause

    async def ListInstruments(
        self, request: pb.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstrumentsResponse:
        return pb.ListInstrumentsResponse(instruments=[BTC, ETH])

    async def GetFeedStatus(
        self, request: pb.GetFeedStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFeedStatusResponse:
        for feed in request.feeds:
            if feed != "binance-spot":
                await abort_invalid_argument(context, "feeds", f"unknown feed {feed!r}")
        return pb.GetFeedStatusResponse(
            feeds=[pb.FeedStatus(feed="binance-spot", state=pb.FEED_STATE_CONNECTED)]
        )

    async def StreamTrades(
        self, request: pb.StreamTradesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamTradesResponse]:
        if not request.instruments:
            await abort_invalid_argument(context, "instruments", "at least one instrument is required")
        for n in range(self.batches):
            for instrument in request.instruments:
                trade = common_pb2.Trade(
                    trade_id=str(n), price="65000.10", size="0.10", side=common_pb2.SIDE_BUY
                )
                yield pb.StreamTradesResponse(
                    batch=common_pb2.TradeBatch(instrument=instrument, trades=[trade])
                )
            if self.pause:
                await asyncio.sleep(self.pause)


@dataclass
class Traced:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


def _traced() -> Traced:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Traced(provider, exporter)


@pytest.fixture
def server_tracing() -> Traced:
    return _traced()


@pytest.fixture
def client_tracing() -> Traced:
    return _traced()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def servicer() -> FakeCollector:
    return FakeCollector()


@pytest.fixture
async def server(
    servicer: FakeCollector, registry: CollectorRegistry, server_tracing: Traced
) -> AsyncIterator[GrpcServer]:
    srv = build_server(
        [ServiceRegistration.of(SERVICE, pb_grpc.add_CollectorServiceServicer_to_server, servicer)],
        host="127.0.0.1",
        port=0,
        registry=registry,
        tracer_provider=server_tracing.provider,
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(None)


@pytest.fixture
async def channel(server: GrpcServer, client_tracing: Traced) -> AsyncIterator[grpc.aio.Channel]:
    async with create_channel(server.address, tracer_provider=client_tracing.provider) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.CollectorServiceStub:
    return pb_grpc.CollectorServiceStub(channel)
