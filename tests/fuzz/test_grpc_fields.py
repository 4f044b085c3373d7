"""gRPC request fields under random values, over the real collector, storage and volume-profile
servers on loopback (fed by the replay exchange). Every answer is OK or a clear refusal
(INVALID_ARGUMENT / NOT_FOUND / UNAVAILABLE with a message naming the field); never UNKNOWN or
INTERNAL, and never a hang: every call has a deadline, and only endless streams may reach it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import descriptor_pool, message_factory
from google.protobuf import message as pb_message
from hypothesis import event, given
from hypothesis import strategies as st

from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2, storage_service_pb2, volume_profile_service_pb2
from tests.reliability.stack import System, replay_config, running_system

from .conftest import fuzz

FD = pb_descriptor.FieldDescriptor
# Imported for their registration in the default descriptor pool.
PROTOS = (collector_service_pb2, storage_service_pb2, volume_profile_service_pb2)
INSTRUMENTS = "binance-spot:BTCUSDT,bybit-linear:BTCUSDT"
T0 = 1_700_000_040_000
# Answers a client can act on; anything else (UNKNOWN, INTERNAL, ...) is a bug in the server.
CLEAR = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,
}
NAMED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
UNARY_DEADLINE_S = 10.0
STREAM_DEADLINE_S = 2.0
STREAM_READ = 3  # responses read from a server stream before cancelling it


class Background:
    """The system running on its own event loop in a thread, so hypothesis can drive it with
    plain blocking gRPC calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-system", daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()

    @staticmethod
    async def _cancel_leftovers() -> None:
        """Tasks the services left behind (none should be): cancelled, so the loop closes quietly."""
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.stack.aclose())
        self.run(self._cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp: Path = tmp_path_factory.mktemp("fuzz-grpc")
    background = Background()
    replay = replay_config(INSTRUMENTS, rate=200, max_trades=None)

    async def start() -> System:
        running: System = await background.stack.enter_async_context(
            running_system(tmp, replay, INSTRUMENTS, book_instruments="all")
        )
        return running

    try:
        yield background.run(start())
    finally:
        background.close()


# --- random messages from descriptors ---------------------------------------------------------------

INT64_EDGES = [0, 1, -1, T0, T0 + 60_000, 2**31 - 1, 2**53, 2**63 - 1, -(2**63)]
UINT_EDGES = [0, 1, 2, 5, 20, 1000, 5000, 2**31 - 1, 2**32 - 1]
STRINGS = [
    "",
    "BTCUSDT",
    "binance-spot",
    "bybit-linear",
    "binance-spot:BTCUSDT",
    "bybit-linear:BTCUSDT",
    "best:BTCUSDT",
    "kraken",
    "1m",
    "1h",
    "0.10",
    "-1",
    "NaN",
    "1e9",
    "Europe/London",
    "09:00",
    "25:61",
    "x" * 5000,
    "\x00\ud7ff",
]


def valid_instruments() -> list[Any]:
    return [InstrumentId.parse(k).to_proto() for k in INSTRUMENTS.split(",")]


def scalar(field: FD) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.one_of(st.sampled_from(INT64_EDGES), st.integers(-(2**63), 2**63 - 1))
    if kind in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return st.one_of(st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1))
    if kind in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return st.one_of(st.sampled_from(UINT_EDGES), st.integers(0, 2**32 - 1))
    if kind in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return st.one_of(st.sampled_from([*UINT_EDGES, 2**64 - 1]), st.integers(0, 2**64 - 1))
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.one_of(st.sampled_from([0.0, 70.0, 100.0, 101.0, -1.0]), st.floats(width=32))
    if kind == FD.TYPE_STRING:
        return st.one_of(st.sampled_from(STRINGS), st.text(max_size=20))
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FD.TYPE_ENUM:
        assert field.enum_type is not None
        top = max(v.number for v in field.enum_type.values)
        return st.integers(-1, top + 2)
    raise AssertionError(f"no strategy for {field.full_name}")


def message(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[pb_message.Message]:
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name == "marketdata.v1.Instrument":
        return st.one_of(st.sampled_from(valid_instruments()), _fields(cls, descriptor, depth))
    return _fields(cls, descriptor, depth)


def _fields(
    cls: Any, descriptor: pb_descriptor.Descriptor, depth: int
) -> st.SearchStrategy[pb_message.Message]:
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry or depth >= 3:
                continue
            value: st.SearchStrategy[Any] = nested(field.message_type, depth + 1)
        else:
            value = scalar(field)
        is_repeated = field.is_repeated
        optional[field.name] = st.lists(value, max_size=3) if is_repeated else value
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: _build(cls, values))


def nested(descriptor: pb_descriptor.Descriptor, depth: int) -> st.SearchStrategy[pb_message.Message]:
    return st.deferred(lambda: message(descriptor, depth))


def _build(cls: Any, values: dict[str, Any]) -> pb_message.Message:
    out: pb_message.Message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(out, name)
        if field.is_repeated:
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(out, name, value)
    return out


def field_names(descriptor: pb_descriptor.Descriptor, seen: set[str] | None = None) -> set[str]:
    names: set[str] = set()
    seen = seen if seen is not None else set()
    if descriptor.full_name in seen:
        return names
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        names.add(field.name)
        if field.message_type is not None:
            names |= field_names(field.message_type, seen)
    return names


# --- calling --------------------------------------------------------------------------------------


def methods(service: pb_descriptor.ServiceDescriptor) -> list[pb_descriptor.MethodDescriptor]:
    return list(service.methods)


def call(
    channel: grpc.Channel, method: pb_descriptor.MethodDescriptor, requests: list[Any]
) -> grpc.RpcError | None:
    """One call with a deadline; the error it ended with, or None."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    serialize, parse = request_cls.SerializeToString, response_cls.FromString
    endless = method.server_streaming and method.name.startswith("Stream")
    deadline = STREAM_DEADLINE_S if endless else UNARY_DEADLINE_S
    try:
        if method.client_streaming:
            stream = channel.stream_stream(path, serialize, parse)(iter(requests), timeout=deadline)
            for _ in stream:
                pass
        elif method.server_streaming:
            stream = channel.unary_stream(path, serialize, parse)(requests[0], timeout=deadline)
            for n, _ in enumerate(stream):
                if endless and n + 1 >= STREAM_READ:
                    stream.cancel()
                    break
        else:
            channel.unary_unary(path, serialize, parse)(requests[0], timeout=deadline)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.CANCELLED:
            return None  # we cancelled an endless stream after reading from it
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and endless:
            return None  # an endless stream that had nothing more to say within the deadline
        return exc
    return None


def check(method: pb_descriptor.MethodDescriptor, requests: list[Any], error: grpc.RpcError | None) -> None:
    if error is None:
        event(f"{method.name}: OK")
        return
    code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
    event(f"{method.name}: {code.name}")
    where = f"{method.name}({requests[0]!r:.300})"
    assert code in CLEAR, f"{where}: {code.name}: {details}"
    assert details, f"{where}: {code.name} without a message"
    if code in NAMED:
        names = field_names(method.input_type)
        assert any(name in details for name in names), f"{where}: {code.name} names no field: {details}"


def valid_bases() -> dict[str, dict[str, Any]]:
    """A request each method answers OK, as field values; fuzzing mutates one or two of its fields
    so that the random values reach the code behind the first checks."""
    now = int(time.time() * 1000)
    minute = now - now % 60_000
    btc, linear = valid_instruments()
    span = {"start_time_ms": minute - 600_000, "end_time_ms": minute + 60_000}
    profile_range = volume_profile_service_pb2.ProfileRange(
        start_time_ms=span["start_time_ms"], end_time_ms=span["end_time_ms"]
    )
    profile = {"instruments": [btc, linear], "range": profile_range}
    return {
        "StreamTrades": {"instruments": [btc]},
        "GetFeedStatus": {"feeds": ["binance-spot"]},
        "GetOrderBook": {"instrument": btc, "depth": 5},
        "StreamOrderBook": {"instrument": linear, "depth": 5},
        "QueryTrades": {"instruments": [btc], **span, "limit": 100},
        "QueryFootprints": {"instrument": btc, **span},
        "QueryBookSnapshots": {"instrument": btc, **span},
        "GetVolumeProfile": profile,
        "GetVolumeProfileLevels": profile,
        "StreamVolumeProfile": {**profile, "interval_ms": 200},
    }


BASES = valid_bases()


def mutated(method: pb_descriptor.MethodDescriptor) -> st.SearchStrategy[pb_message.Message]:
    cls = message_factory.GetMessageClass(method.input_type)
    base = BASES.get(method.name)
    if base is None:
        return message(method.input_type)
    fields = {f.name: f for f in method.input_type.fields}

    def value(field: FD) -> st.SearchStrategy[Any]:
        one = message(field.message_type, 1) if field.message_type is not None else scalar(field)
        return st.lists(one, max_size=3) if field.is_repeated else one

    @st.composite
    def build(draw: st.DrawFn) -> pb_message.Message:
        values = dict(base)
        for name in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=2, unique=True)):
            values[name] = draw(value(fields[name]))
        return _build(cls, values)

    return build()


def request_lists(method: pb_descriptor.MethodDescriptor) -> st.SearchStrategy[list[Any]]:
    one = st.one_of(message(method.input_type), mutated(method))
    return st.lists(one, min_size=1, max_size=3) if method.client_streaming else one.map(lambda m: [m])


def fuzz_service(system_addr: str, service: pb_descriptor.ServiceDescriptor, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(methods(service)), label="method")
    requests = data.draw(request_lists(method), label="requests")
    with grpc.insecure_channel(system_addr) as channel:
        check(method, requests, call(channel, method, requests))


def service_descriptor(name: str) -> pb_descriptor.ServiceDescriptor:
    return descriptor_pool.Default().FindServiceByName(f"marketdata.v1.{name}")


@fuzz(60)
@given(data=st.data())
def test_collector_requests(system: System, data: st.DataObject) -> None:
    fuzz_service(system.collector_addr, service_descriptor("CollectorService"), data)


@fuzz(80)
@given(data=st.data())
def test_storage_requests(system: System, data: st.DataObject) -> None:
    fuzz_service(system.storage.address, service_descriptor("StorageService"), data)


@fuzz(60)
@given(data=st.data())
def test_volume_profile_requests(system: System, data: st.DataObject) -> None:
    fuzz_service(system.profile_addr, service_descriptor("VolumeProfileService"), data)
