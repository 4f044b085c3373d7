"""Across one real gRPC hop: the trace continues (W3C traceparent), and the Prometheus interceptor
counts calls by status code, which the /metrics endpoint serves."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from marketdata.core.grpc_client import create_channel
from marketdata.core.grpc_server import GrpcServer
from marketdata.core.metrics import create_registry, start_metrics_server
from marketdata.v1 import collector_service_pb2 as pb
from marketdata.v1 import collector_service_pb2_grpc as pb_grpc

from .conftest import BTC, ETH, SERVICE, FakeCollector, Traced


async def _finished(traced: Traced, name: str) -> ReadableSpan:
    # A span ends when its side of the call completes, which may be a moment after the other side saw it.
    for _ in range(100):
        spans = [s for s in traced.spans() if s.name == name]
        if spans:
            assert len(spans) == 1
            return spans[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no finished span {name!r}")


def _assert_one_trace(client: ReadableSpan, server: ReadableSpan) -> None:
    assert client.kind == SpanKind.CLIENT and server.kind == SpanKind.SERVER
    assert client.context is not None and server.context is not None
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None and server.parent.is_remote  # it came over the wire
    assert server.parent.span_id == client.context.span_id


async def test_unary_call_continues_the_trace(
    stub: pb_grpc.CollectorServiceStub, client_tracing: Traced, server_tracing: Traced
) -> None:
    await stub.ListInstruments(pb.ListInstrumentsRequest())
    name = f"/{SERVICE}/ListInstruments"
    _assert_one_trace(await _finished(client_tracing, name), await _finished(server_tracing, name))


async def test_server_stream_continues_the_trace(
    stub: pb_grpc.CollectorServiceStub, client_tracing: Traced, server_tracing: Traced
) -> None:
    tracer = client_tracing.provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        batches = [r async for r in stub.StreamTrades(pb.StreamTradesRequest(instruments=[BTC, ETH]))]
    assert len(batches) == 4  # 2 batches x 2 instruments (servicer fixture below)
    name = f"/{SERVICE}/StreamTrades"
    client = await _finished(client_tracing, name)
    _assert_one_trace(client, await _finished(server_tracing, name))
    assert client.parent is not None and client.parent.span_id == caller.get_span_context().span_id


async def test_health_checks_are_not_traced(
    channel: grpc.aio.Channel, server_tracing: Traced, stub: pb_grpc.CollectorServiceStub
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    await stub.ListInstruments(pb.ListInstrumentsRequest())
    await _finished(server_tracing, f"/{SERVICE}/ListInstruments")
    assert not [s for s in server_tracing.spans() if "Health" in s.name]


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"grpc_service": SERVICE, **labels})


@pytest.fixture
def servicer() -> FakeCollector:
    return FakeCollector(batches=2, pause=0.05)  # a stream that lasts >= 0.1 s


async def test_metrics_count_calls_by_code_and_are_served(
    stub: pb_grpc.CollectorServiceStub, registry: CollectorRegistry
) -> None:
    await stub.ListInstruments(pb.ListInstrumentsRequest())
    await stub.GetFeedStatus(pb.GetFeedStatusRequest(feeds=["binance-spot"]))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetFeedStatus(pb.GetFeedStatusRequest(feeds=["bad"]))
    batches = [r async for r in stub.StreamTrades(pb.StreamTradesRequest(instruments=[BTC, ETH]))]
    assert len(batches) == 4

    metrics = await start_metrics_server(registry, "127.0.0.1", 0)
    try:
        assert metrics.port > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{metrics.url}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                samples = _samples(await resp.text())
            async with http.get(f"{metrics.url}/healthz") as resp:
                assert resp.status == 200
    finally:
        await metrics.stop()

    def sample(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset({"grpc_service": SERVICE, **labels}.items())))

    unary = {"grpc_type": "unary"}
    assert sample("grpc_server_started_total", grpc_method="GetFeedStatus", **unary) == 2
    assert sample("grpc_server_handled_total", grpc_method="GetFeedStatus", grpc_code="OK", **unary) == 1
    assert (
        sample(
            "grpc_server_handled_total", grpc_method="GetFeedStatus", grpc_code="INVALID_ARGUMENT", **unary
        )
        == 1
    )
    assert sample("grpc_server_handled_total", grpc_method="ListInstruments", grpc_code="OK", **unary) == 1
    assert sample("grpc_server_handling_seconds_count", grpc_method="ListInstruments", **unary) == 1

    stream = {"grpc_type": "server_stream", "grpc_method": "StreamTrades"}
    assert sample("grpc_server_handled_total", grpc_code="OK", **stream) == 1
    assert sample("grpc_server_msg_sent_total", **stream) == 4
    # Latency of a stream is the time to its end: two 0.05 s pauses.
    assert (sample("grpc_server_handling_seconds_sum", **stream) or 0) >= 0.1


async def test_cancelled_stream_is_counted_cancelled(server: GrpcServer, registry: CollectorRegistry) -> None:
    async with create_channel(server.address) as ch:
        call = pb_grpc.CollectorServiceStub(ch).StreamTrades(pb.StreamTradesRequest(instruments=[BTC]))
        await call.__aiter__().__anext__()
        call.cancel()
    labels = {"grpc_type": "server_stream", "grpc_method": "StreamTrades", "grpc_code": "CANCELLED"}
    for _ in range(100):
        if _value(registry, "grpc_server_handled_total", **labels) == 1:
            break
        await asyncio.sleep(0.01)
    assert _value(registry, "grpc_server_handled_total", **labels) == 1


async def test_registry_has_build_and_process_metrics() -> None:
    registry = create_registry("collector")
    assert (
        registry.get_sample_value("marketdata_build_info", {"service": "collector", "version": "0.1.0"}) == 1
    )
    assert registry.get_sample_value("process_cpu_seconds_total") is not None
