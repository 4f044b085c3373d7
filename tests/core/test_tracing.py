"""configure_tracing honours the OTEL_* variables and never blocks on an unreachable collector."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

from marketdata.core.tracing import configure_tracing, shutdown_tracing

_OTEL_VARS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    # The global provider can be set once per process; tests put back whatever was there (private API,
    # the same reset opentelemetry-python's own tests use).
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    yield
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


def _processors(provider: TracerProvider) -> list[object]:
    return list(provider._active_span_processor._span_processors)


def test_no_exporter_still_installs_an_sdk_provider() -> None:
    provider = configure_tracing("collector")
    assert trace.get_tracer_provider() is provider
    assert _processors(provider) == []
    assert provider.resource.attributes["service.name"] == "collector"
    with provider.get_tracer("t").start_as_current_span("s") as span:
        assert span.get_span_context().is_valid  # real ids, so traceparent propagates
    # A second service in the same process gets its own provider; the global one stays.
    other = configure_tracing("storage")
    assert other is not provider and trace.get_tracer_provider() is provider
    assert shutdown_tracing(provider) and shutdown_tracing(other)


def test_service_name_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "collector-shard-2")
    assert configure_tracing("collector").resource.attributes["service.name"] == "collector-shard-2"


def test_console_exporter(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = configure_tracing("collector")
    with provider.get_tracer("t").start_as_current_span("visible-span"):
        pass
    assert shutdown_tracing(provider)
    assert "visible-span" in capsys.readouterr().out


def test_none_wins_over_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert _processors(configure_tracing("collector")) == []


def test_unreachable_otlp_endpoint_neither_crashes_nor_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")  # nothing listens there
    t0 = time.monotonic()
    provider = configure_tracing("collector")
    assert len(_processors(provider)) == 1
    tracer = provider.get_tracer("t")
    for _ in range(100):
        with tracer.start_as_current_span("lost"):
            pass
    assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    shutdown_tracing(provider, timeout=0.5)
    assert time.monotonic() - t0 < 1.5
