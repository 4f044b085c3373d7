"""Server plumbing: health through a graceful stop, reflection, INVALID_ARGUMENT, signals, binding."""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from marketdata.core.grpc_client import create_channel
from marketdata.core.grpc_server import GrpcServer, ServiceRegistration, build_server, serve_until_signal
from marketdata.v1 import collector_service_pb2 as pb
from marketdata.v1 import collector_service_pb2_grpc as pb_grpc

from .conftest import BTC, SERVICE, FakeCollector

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _check(channel: grpc.aio.Channel, service: str = "") -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=2
    )
    return int(response.status)


async def test_health_serving_then_not_serving_during_graceful_stop(
    server: GrpcServer, channel: grpc.aio.Channel
) -> None:
    assert await _check(channel) == SERVING
    assert await _check(channel, SERVICE) == SERVING

    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    assert (await watch.read()).status == SERVING

    stopping = asyncio.create_task(server.stop(grace=2.0, drain_seconds=0.5))
    # Within the drain window the server still answers, and says it is going away.
    assert (await asyncio.wait_for(watch.read(), 2)).status == NOT_SERVING
    assert await _check(channel) == NOT_SERVING
    assert await _check(channel, SERVICE) == NOT_SERVING
    watch.cancel()
    await asyncio.wait_for(stopping, 5)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _check(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_start_not_serving_until_ready(registry: CollectorRegistry) -> None:
    srv = build_server([], host="127.0.0.1", port=0, registry=registry)
    await srv.start(serving=False)
    try:
        async with create_channel(srv.address) as ch:
            assert await _check(ch) == NOT_SERVING
            await srv.set_serving(True)
            assert await _check(ch) == SERVING
    finally:
        await srv.stop(None)


async def test_reflection_lists_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    responses = [r async for r in call]
    names = {s.name for s in responses[0].list_services_response.service}
    assert names == {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}

    # ...and serves the descriptors, so grpcurl can call our services without the .proto files.
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)])
    )
    responses = [r async for r in call]
    assert responses[0].file_descriptor_response.file_descriptor_proto


async def test_abort_invalid_argument_names_the_field(stub: pb_grpc.CollectorServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetFeedStatus(pb.GetFeedStatusRequest(feeds=["nope"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "feeds: unknown feed 'nope'"

    with pytest.raises(grpc.aio.AioRpcError) as err:
        [r async for r in stub.StreamTrades(pb.StreamTradesRequest())]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("instruments: ")


async def test_serve_until_sigterm_stops_gracefully(registry: CollectorRegistry) -> None:
    srv = build_server(
        [ServiceRegistration.of(SERVICE, pb_grpc.add_CollectorServiceServicer_to_server, FakeCollector())],
        host="127.0.0.1",
        port=0,
        registry=registry,
    )
    serving = asyncio.create_task(serve_until_signal(srv, grace=1.0))
    async with create_channel(srv.address) as ch:
        for _ in range(100):  # until serve_until_signal has started the server and owns SIGTERM
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                try:
                    if await _check(ch) == SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
            await asyncio.sleep(0.02)
        stub = pb_grpc.CollectorServiceStub(ch)
        assert len((await stub.ListInstruments(pb.ListInstrumentsRequest())).instruments) == 2

        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 5)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ListInstruments(pb.ListInstrumentsRequest(), timeout=1)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers removed again


async def test_shutdown_hook_ends_streams_before_grace(registry: CollectorRegistry) -> None:
    """A hook that ends long-lived streams lets stop() finish without waiting out the grace period."""
    stop_streams = asyncio.Event()

    class Endless(FakeCollector):
        async def StreamTrades(self, request, context):  # type: ignore[no-untyped-def]
            yield pb.StreamTradesResponse()
            await stop_streams.wait()

    srv = build_server(
        [ServiceRegistration.of(SERVICE, pb_grpc.add_CollectorServiceServicer_to_server, Endless())],
        host="127.0.0.1",
        port=0,
        registry=registry,
    )

    async def end_streams() -> None:
        stop_streams.set()

    srv.add_shutdown_hook(end_streams)
    await srv.start()
    async with create_channel(srv.address) as ch:
        call = pb_grpc.CollectorServiceStub(ch).StreamTrades(pb.StreamTradesRequest(instruments=[BTC]))
        it = call.__aiter__()
        await it.__anext__()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await srv.stop(grace=10.0)
        assert loop.time() - t0 < 2.0
        with pytest.raises(StopAsyncIteration):  # the stream ended with OK, not CANCELLED
            await it.__anext__()


async def test_port_in_use_fails_loudly(server: GrpcServer, registry: CollectorRegistry) -> None:
    with pytest.raises(RuntimeError):
        build_server([], host="127.0.0.1", port=server.port, registry=CollectorRegistry())
