"""grpc.aio client channels between our services, traced and tuned to match grpc_server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.trace import TracerProvider

from marketdata.core.grpc_server import DEFAULT_MAX_MESSAGE_BYTES

__all__ = ["channel_options", "create_channel"]


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Detect a dead server (pod killed, node gone) within ~40 s even while only waiting on a
        # stream; 30 s is above the server's 10 s minimum ping interval, so it is never refused.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect quickly after a server restart (grpc's default max backoff is 120 s).
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]


def create_channel(
    target: str,
    tracer_provider: TracerProvider | None = None,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    extra_options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """An insecure aio channel to `target` ("host:port", "dns:///svc:50051") whose calls carry the
    current trace context (W3C traceparent) and create client spans.

    `tracer_provider=None` uses the global provider. Close with `await channel.close()` or use it as
    `async with create_channel(...) as channel:`.
    """
    return grpc.aio.insecure_channel(
        target,
        options=[*channel_options(max_message_bytes), *extra_options],
        interceptors=aio_client_interceptors(tracer_provider=tracer_provider),  # type: ignore[no-untyped-call]
    )
