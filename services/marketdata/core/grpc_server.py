"""grpc.aio server factory and lifecycle, shared by every service.

build_server() gives a server with, in this order (first = outermost):
1. OpenTelemetry's aio server interceptor: continues the caller's trace from the `traceparent` header;
2. a Prometheus interceptor with the go-grpc-prometheus metric names, so stock dashboards work:
   grpc_server_started_total, grpc_server_handled_total{grpc_code}, grpc_server_handling_seconds,
   grpc_server_msg_sent_total / grpc_server_msg_received_total, labelled grpc_type/grpc_service/grpc_method;
plus grpc.health.v1 and server reflection. No module globals: everything hangs off the GrpcServer.

Server-streaming handlers must be async generators (`yield`), not the `context.write()` style: the
OpenTelemetry interceptor iterates the handler's result. (That is also why the health service, whose
Watch uses context.write(), is left out of tracing; probes would only add noise spans anyway.)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE_NAME
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "GrpcServer",
    "PrometheusServerInterceptor",
    "ServiceRegistration",
    "abort_invalid_argument",
    "build_server",
    "serve_until_signal",
]

log = logging.getLogger(__name__)

# gRPC's 4 MiB default is tight for history pages (QueryTrades) and big TradeBatches; the client
# (grpc_client.create_channel) uses the same limit so neither side rejects what the other sends.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_HEALTH_SERVICE: str = HEALTH_SERVICE_NAME

# Unary calls take milliseconds; server streams live minutes to hours. One bucket set covers both.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class ServiceRegistration:
    """How to add one servicer to a server, and its full service name (for health and reflection)."""

    name: str  # e.g. "marketdata.v1.CollectorService"
    add: Callable[[grpc.aio.Server], None]

    @classmethod
    def of(
        cls, name: str, add_to_server: Callable[[S, grpc.aio.Server], None], servicer: S
    ) -> ServiceRegistration:
        """E.g. `ServiceRegistration.of(NAME, add_CollectorServiceServicer_to_server, servicer)`."""
        return cls(name, lambda server: add_to_server(servicer, server))


# --- Prometheus interceptor -------------------------------------------------------------------------------


def _split_method(full: str | bytes) -> tuple[str, str]:
    text = full.decode() if isinstance(full, bytes) else full
    service, _, method = text.lstrip("/").rpartition("/")
    return service or "unknown", method


def _status_of(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    if error is None or isinstance(error, grpc.aio.AbortError):
        # abort() and set_code() both record the code on the context; a plain return leaves it unset.
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "OK"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"  # the client went away or the server is stopping
    return "UNKNOWN"  # what grpc reports for an exception escaping a handler


class _MethodMetrics:
    """The label children of one method, resolved once so a call pays no label lookups."""

    __slots__ = ("handled", "latency", "received", "sent", "started")

    def __init__(
        self, family: PrometheusServerInterceptor, grpc_type: str, service: str, method: str
    ) -> None:
        labels = (grpc_type, service, method)
        self.started = family.started.labels(*labels)
        self.latency = family.latency.labels(*labels)
        self.sent = family.msg_sent.labels(*labels)
        self.received = family.msg_received.labels(*labels)
        self.handled = {code.name: family.handled.labels(*labels, code.name) for code in grpc.StatusCode}

    def done(self, started_at: float, code: str) -> None:
        self.handled[code].inc()
        self.latency.observe(time.perf_counter() - started_at)


async def _counted(requests: AsyncIterator[Any], counter: Any) -> AsyncIterator[Any]:
    async for request in requests:
        counter.inc()
        yield request


class PrometheusServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Per-method started/handled counts (with status code), latency (for streams: until the stream
    ends) and streamed message counts, on the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter("grpc_server_started", "RPCs started.", labels, registry=registry)
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed, by status code.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end (for streams: the end of the stream).",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.msg_sent = Counter("grpc_server_msg_sent", "Stream messages sent.", labels, registry=registry)
        self.msg_received = Counter(
            "grpc_server_msg_received", "Stream messages received.", labels, registry=registry
        )
        self._methods: dict[str | bytes, _MethodMetrics] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return None
        key = handler_call_details.method
        metrics = self._methods.get(key)
        if metrics is None:
            service, method = _split_method(key)
            metrics = _MethodMetrics(self, _grpc_type(handler), service, method)
            self._methods[key] = metrics
        return _wrap_handler(handler, metrics)


def _grpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def _wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any], m: _MethodMetrics
) -> grpc.RpcMethodHandler[Any, Any]:
    if handler.request_streaming and handler.response_streaming:
        behavior, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        behavior, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        behavior, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    else:
        behavior, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler

    def requests_of(request: Any) -> Any:
        return _counted(request, m.received) if handler.request_streaming else request

    wrapped: Callable[..., Any]
    if inspect.isasyncgenfunction(behavior):

        async def stream_wrapper(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            m.started.inc()
            started_at = time.perf_counter()
            error: BaseException | None = None
            try:
                async for response in behavior(requests_of(request), context):
                    m.sent.inc()
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                m.done(started_at, _status_of(context, error))

        wrapped = stream_wrapper
    elif inspect.iscoroutinefunction(behavior):
        # Unary responses, and streams written with context.write() (the health Watch): the stream's
        # messages aren't seen here, the rest is.
        async def call_wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            m.started.inc()
            started_at = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(requests_of(request), context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                m.done(started_at, _status_of(context, error))

        wrapped = call_wrapper
    else:
        return handler  # a sync handler would run on a thread pool; wrapping it in a coroutine would not
    return factory(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


# --- server --------------------------------------------------------------------------------------------


def _server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Ping idle clients so a dead subscriber's stream ends instead of holding its handler forever.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        # Accept client pings (create_channel pings every 30 s) even without active calls, no faster
        # than every 10 s; stricter settings make the server GOAWAY a client with "too_many_pings".
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Linux SO_REUSEPORT (grpc's default) lets a second process bind the same port and silently
        # take half the calls; with it off a port clash fails at start-up.
        ("grpc.so_reuseport", 0),
    ]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _not_health(details: grpc.HandlerCallDetails) -> bool:
    service, _ = _split_method(details.method)
    return service != _HEALTH_SERVICE


class GrpcServer:
    """A built (bound, not yet started) grpc.aio server with its health servicer."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health: health_aio.HealthServicer,
        host: str,
        port: int,
        service_names: Sequence[str],
    ) -> None:
        self.server = server
        self.health = health
        self.host = host
        self.port = port
        self.service_names = tuple(service_names)
        self._started = False
        self._stopping = False
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []

    @property
    def address(self) -> str:
        """host:port as a client target (bracketed for IPv6)."""
        return _hostport(self.host, self.port)

    @property
    def started(self) -> bool:
        return self._started

    def add_shutdown_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` during stop(), after health goes NOT_SERVING and before the grace period: the place
        to end long-lived streams cleanly (clients then reconnect elsewhere) instead of having them
        cancelled when the grace runs out."""
        self._shutdown_hooks.append(hook)

    async def start(self, *, serving: bool = True) -> None:
        """Start serving. With serving=False health says NOT_SERVING until set_serving(True), e.g. while
        an analytics service rebuilds its state from storage."""
        await self.server.start()
        self._started = True
        await self.set_serving(serving)
        log.info("grpc server started", extra={"address": self.address, "services": list(self.service_names)})

    async def set_serving(self, serving: bool, service: str | None = None) -> None:
        """Set health of one service, or (service=None) of the server ("") and every registered service."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names) if service is None else (service,):
            await self.health.set(name, status)

    async def stop(self, grace: float | None = 5.0, *, drain_seconds: float = 0.0) -> None:
        """Graceful stop: health NOT_SERVING (permanently), wait `drain_seconds` so probes and load
        balancers see it while calls are still accepted, run the shutdown hooks, then stop the server,
        giving in-flight calls `grace` seconds (None: cancel them now).

        A second call skips straight to the server stop; a smaller grace there shortens the wait.
        """
        if not self._stopping:
            self._stopping = True
            log.info("grpc server stopping", extra={"address": self.address, "grace_s": grace})
            await self.health.enter_graceful_shutdown()
            if drain_seconds > 0:
                await asyncio.sleep(drain_seconds)
            for hook in self._shutdown_hooks:
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown hook failed")
        await self.server.stop(grace)
        log.info("grpc server stopped", extra={"address": self.address})

    async def wait_for_termination(self) -> None:
        """Wait until the server has stopped. Safe to cancel: grpc's own wait_for_termination() awaits the
        server's shutdown future directly, so cancelling it would cancel that future and break stop()."""
        await asyncio.shield(self.server.wait_for_termination())


def build_server(
    registrations: Iterable[ServiceRegistration],
    *,
    host: str,
    port: int,
    registry: CollectorRegistry,
    tracer_provider: TracerProvider | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> GrpcServer:
    """Create a grpc.aio server with tracing and metrics interceptors, the registered services, health and
    reflection, bound to host:port (port 0: any free port, see `.port`). Call from a running event loop.

    `tracer_provider=None` uses the global provider (see tracing.configure_tracing).
    """
    registrations = list(registrations)
    interceptors = [
        aio_server_interceptor(tracer_provider=tracer_provider, filter_=_not_health),  # type: ignore[no-untyped-call]
        PrometheusServerInterceptor(registry),
    ]
    server = grpc.aio.server(interceptors=interceptors, options=_server_options(max_message_bytes))
    for registration in registrations:
        registration.add(server)

    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [r.name for r in registrations]
    reflection.enable_server_reflection([*names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME], server)

    # Raises RuntimeError when the address can't be bound (in use, bad host).
    bound = server.add_insecure_port(_hostport(host, port))
    return GrpcServer(server, health, host, bound, names)


async def serve_until_signal(server: GrpcServer, grace: float = 5.0, *, drain_seconds: float = 0.0) -> None:
    """Start `server` if needed, run until SIGINT/SIGTERM (or until the server terminates), then stop it
    gracefully. A second signal during the graceful stop cancels the remaining calls at once.
    Must run on the main thread (signal handlers)."""
    loop = asyncio.get_running_loop()
    received = asyncio.Event()
    force_tasks: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        if received.is_set():
            log.warning("second signal: stopping now", extra={"signal": sig.name})
            task = loop.create_task(server.server.stop(None))
            force_tasks.add(task)
            task.add_done_callback(force_tasks.discard)
        else:
            log.info("signal received, shutting down", extra={"signal": sig.name})
            received.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        if not server.started:
            await server.start()
        waiters = [
            asyncio.ensure_future(received.wait()),
            asyncio.ensure_future(server.wait_for_termination()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        await server.stop(grace, drain_seconds=drain_seconds)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for task in list(force_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def abort_invalid_argument(
    context: grpc.aio.ServicerContext[Any, Any], field: str, message: str
) -> NoReturn:
    """End the RPC with INVALID_ARGUMENT and details "<field>: <message>" (invariant 7: name the field)."""
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")
    raise AssertionError("unreachable: context.abort() raises")  # abort() is typed as returning


_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_servicer(
    servicer: object,
    server: grpc.aio.Server,
    service: ServiceDescriptor,
    raw_responses: frozenset[str] = frozenset(),
) -> None:
    """Register `servicer` for every method of `service`, like the generated add_*_to_server.

    Methods named in `raw_responses` yield bytes that are already the serialized response (a batch
    serialized once for every subscriber, stored bars framed as they are), so grpc sends them as they
    are instead of serializing again.
    """
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=request.FromString,
            response_serializer=None if method.name in raw_responses else response.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
