"""CollectorService over gRPC: StreamTrades, GetFeedStatus, ListInstruments.

StreamTrades sends batches that the bus serialized once for all subscribers, so its method
handler is registered with no response serializer (grpc then sends the bytes as they are); the
other methods use the generated handlers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from marketdata.collector.collector import Collector
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc

SERVICE_NAME = collector_pb2.DESCRIPTOR.services_by_name["CollectorService"].full_name


async def _invalid(context: grpc.aio.ServicerContext, field: str, message: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


class CollectorServicer(collector_grpc.CollectorServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self._collector = collector
        self._collected = set(collector.instruments)

    def _known(self) -> str:
        return ", ".join(i.key for i in self._collector.instruments)

    async def StreamTrades(
        self, request: collector_pb2.StreamTradesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        wanted: set[InstrumentId] = set()
        for n, msg in enumerate(request.instruments):
            field = f"instruments[{n}]"
            try:
                instrument = InstrumentId.from_proto(msg)
            except ValueError as exc:
                await _invalid(context, field, str(exc))
                return
            if instrument not in self._collected:
                await _invalid(
                    context, field, f"{instrument.key} is not collected; collected: {self._known()}"
                )
                return
            wanted.add(instrument)
        bus = self._collector.bus
        subscription = bus.subscribe(wanted or None)
        try:
            async for message in subscription.messages():
                yield message
        finally:
            bus.unsubscribe(subscription)

    async def GetFeedStatus(
        self, request: collector_pb2.GetFeedStatusRequest, context: grpc.aio.ServicerContext
    ) -> collector_pb2.GetFeedStatusResponse:
        markets = []
        for n, text in enumerate(request.feeds):
            try:
                market = MarketKey.parse(text)
            except ValueError as exc:
                await _invalid(context, f"feeds[{n}]", str(exc))
            if market not in self._collector.stats:
                collected = ", ".join(m.value for m in self._collector.markets)
                await _invalid(
                    context, f"feeds[{n}]", f"{market.value} is not collected; collected: {collected}"
                )
            markets.append(market)
        selected = markets or self._collector.markets
        return collector_pb2.GetFeedStatusResponse(
            feeds=[self._collector.stats[m].to_proto() for m in selected]
        )

    async def ListInstruments(
        self, request: collector_pb2.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> collector_pb2.ListInstrumentsResponse:
        return collector_pb2.ListInstrumentsResponse(
            instruments=[i.to_proto() for i in self._collector.instruments]
        )


def add_collector_service(servicer: CollectorServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_CollectorServiceServicer_to_server, but StreamTrades sends raw bytes."""
    handlers = {
        "StreamTrades": grpc.unary_stream_rpc_method_handler(
            servicer.StreamTrades,
            request_deserializer=collector_pb2.StreamTradesRequest.FromString,
            response_serializer=None,
        ),
        "GetFeedStatus": grpc.unary_unary_rpc_method_handler(
            servicer.GetFeedStatus,
            request_deserializer=collector_pb2.GetFeedStatusRequest.FromString,
            response_serializer=collector_pb2.GetFeedStatusResponse.SerializeToString,
        ),
        "ListInstruments": grpc.unary_unary_rpc_method_handler(
            servicer.ListInstruments,
            request_deserializer=collector_pb2.ListInstrumentsRequest.FromString,
            response_serializer=collector_pb2.ListInstrumentsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
