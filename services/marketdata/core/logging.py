"""Structured logging on stderr: one JSON object per line (for log shippers) or a readable text line.

Every record carries the service name and, when an OpenTelemetry span is active, its trace_id and
span_id, so a log line can be joined to the trace of the RPC that produced it. Fields passed with
`logger.info("...", extra={"feed": "binance-spot"})` become top-level keys.
"""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from opentelemetry import trace

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted as a field.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime", "taskName"}
)
# Marks the handler we install, so a second configure_logging() replaces it instead of adding another.
_HANDLER_MARK = "_marketdata_handler"


def _rfc3339(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _trace_ids() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, trace_id/span_id, extras, exc."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
        }
        ids = _trace_ids()
        if ids is not None:
            doc["trace_id"], doc["span_id"] = ids
        for key, value in _extras(record).items():
            doc.setdefault(key, value)  # an extra can't overwrite the fixed fields
        if record.exc_info:
            doc["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        # default=str: an extra that JSON can't hold (Decimal, Path, an enum) is logged as text, never raises.
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z INFO  marketdata.collector: message key=value trace_id=...`."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_rfc3339(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in _extras(record).items()]
        ids = _trace_ids()
        if ids is not None:
            fields.append(f"trace_id={ids[0]}")
        if fields:
            line += "  " + " ".join(fields)
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def configure_logging(
    service: str, level: str = "INFO", fmt: str = "json", *, stream: TextIO | None = None
) -> None:
    """Send all logging to `stream` (stderr by default) in `fmt` ("json" or "text") at `level`.

    Idempotent: the handler installed by an earlier call is replaced, never duplicated, so a
    re-configuration (tests, `marketdata up` starting several services) changes format and level.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be json or text, got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()

    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    # aiohttp logs every scrape of /metrics at INFO; that is noise, not information.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    otel_context = logging.getLogger("opentelemetry.context")
    if not any(isinstance(f, _StreamDetachFilter) for f in otel_context.filters):
        otel_context.addFilter(_StreamDetachFilter())


class _StreamDetachFilter(logging.Filter):
    """Drops OpenTelemetry's "Failed to detach context" for server streams a client cancelled.

    The gRPC aio server interceptor attaches the span's context inside the handler's async generator;
    when the client cancels, grpc closes that generator from another task, and contextvars refuses the
    reset. The span itself is ended correctly, so the ERROR (one per cancelled stream) is only noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.getMessage() == "Failed to detach context" and "GeneratorExit" in _exc_text(record)
        )


def _exc_text(record: logging.LogRecord) -> str:
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        return repr(exc.__context__) + repr(exc)
    return ""
