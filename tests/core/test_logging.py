"""configure_logging: JSON lines with the documented fields, text lines, idempotence."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import TracerProvider

from marketdata.core.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_fields() -> None:
    stream = io.StringIO()
    configure_logging("collector", "DEBUG", "json", stream=stream)
    log = logging.getLogger("marketdata.test")

    log.info("feed connected", extra={"feed": "binance-spot", "price": Decimal("65000.10")})
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("rpc") as span:
        log.warning("inside a span")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    log.debug('quote " and newline\n in the message')

    first, second, third, fourth = (json.loads(line) for line in _lines(stream))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["level"] == "INFO"
    assert first["logger"] == "marketdata.test"
    assert first["message"] == "feed connected"
    assert first["service"] == "collector"
    assert first["feed"] == "binance-spot"
    assert first["price"] == "65000.10"  # exact decimal kept as text
    assert "trace_id" not in first

    ctx = span.get_span_context()
    assert second["trace_id"] == format(ctx.trace_id, "032x")
    assert second["span_id"] == format(ctx.span_id, "016x")
    assert third["level"] == "ERROR" and "ValueError: boom" in third["exc"]
    assert fourth["message"] == 'quote " and newline\n in the message'


def test_configure_twice_does_not_duplicate_and_switches_format() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("svc", "INFO", "json", stream=first)
    configure_logging("svc", "INFO", "text", stream=second)
    logging.getLogger("x").info("once", extra={"feed": "bybit-linear"})
    logging.getLogger("x").debug("filtered out")

    assert first.getvalue() == ""
    (line,) = _lines(second)
    assert re.fullmatch(r"\S+Z INFO +x: once  feed='bybit-linear'", line)
    assert sum(1 for h in logging.getLogger().handlers if getattr(h, "_marketdata_handler", False)) == 1


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        configure_logging("svc", "INFO", "xml")
    with pytest.raises(ValueError):
        configure_logging("svc", "LOUD")
