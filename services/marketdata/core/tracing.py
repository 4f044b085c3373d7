"""OpenTelemetry tracing, configured from the standard OTEL_* environment variables.

An SDK TracerProvider is always installed, even with no exporter: the gRPC interceptors need real
(recording) span contexts to put a `traceparent` on outgoing calls, so a trace started by a client
survives every hop through our services whether or not this process exports anything.

Exporter choice (first match wins):
- OTEL_TRACES_EXPORTER = otlp | console | none (a comma list is allowed; unknown names are logged);
- otherwise `otlp` when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set;
- otherwise none.
The OTLP exporter reads its own env vars (endpoint, headers, timeout, insecure, compression).
OTEL_SERVICE_NAME overrides the service name; OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER work as
the SDK defines them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from importlib import metadata

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

__all__ = ["configure_tracing", "shutdown_tracing"]

log = logging.getLogger(__name__)


def _exporter_names() -> list[str]:
    configured = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if configured:
        return [name.strip() for name in configured.split(",") if name.strip()]
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ["otlp"]
    return []


def _exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        # Imported here: it pulls in a second gRPC stack; processes that don't export never pay for it.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # The channel connects lazily and exports run on the BatchSpanProcessor's thread, so an
        # unreachable collector costs logged export errors, never a blocked event loop.
        return OTLPSpanExporter()
    if name == "console":
        # stdout as it is now (the SDK's default argument binds it at import time).
        return ConsoleSpanExporter(out=sys.stdout)
    if name != "none":
        log.warning("unknown OTEL_TRACES_EXPORTER value ignored", extra={"exporter": name})
    return None


def _version() -> str:
    try:
        return metadata.version("marketdata")
    except metadata.PackageNotFoundError:
        return "unknown"


def configure_tracing(service_name: str) -> TracerProvider:
    """Build a TracerProvider for `service_name` (OTEL_SERVICE_NAME wins) with the exporters the
    environment asks for, install it as the global provider if none is installed yet, and return it.

    Pass the returned provider to build_server / create_channel. Only the first call in a process
    sets the global provider (OpenTelemetry forbids replacing it); later calls (several services in
    one `marketdata up` process) still get their own provider with their own service name.
    """
    resource = Resource.create(
        {
            SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name,
            SERVICE_NAMESPACE: "marketdata",
            SERVICE_VERSION: _version(),
        }
    )
    # shutdown_on_exit=False: the SDK's atexit hook would block exit for up to the export timeout when
    # the collector is unreachable; shutdown_tracing() bounds that wait instead.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    names = _exporter_names()
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)
    log.info(
        "tracing configured",
        extra={"service_name": resource.attributes[SERVICE_NAME], "exporters": names or ["none"]},
    )
    return provider


def shutdown_tracing(provider: TracerProvider, timeout: float = 5.0) -> bool:
    """Flush and shut down `provider`, waiting at most `timeout` seconds; True if it finished.

    The SDK's own shutdown can wait for a whole export timeout (10 s by default, with retries) when the
    collector is down; running it on a daemon thread keeps shutdown of the service bounded.
    Blocking: from async code call it via `await asyncio.to_thread(shutdown_tracing, provider)`.
    """
    worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("tracing shutdown timed out; unexported spans dropped", extra={"timeout_s": timeout})
        return False
    return True
