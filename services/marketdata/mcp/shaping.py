"""How every tool answers: structured content matching the tool's output schema, a one-line summary an
agent can quote, and the same JSON as text for clients that read only text (the MCP spec's advice);
plus the shared argument types (instrument keys, times) and their parsing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from fastmcp.utilities.json_schema import dereference_refs
from mcp_types import TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from marketdata.mcp.errors import InvalidArgument

InstrumentKey = Annotated[
    str,
    Field(
        min_length=3,
        max_length=60,
        description="An instrument key `market:SYMBOL` (markets: binance-spot, binance-futures, bybit-spot, "
        "bybit-linear), e.g. `binance-futures:BTCUSDT`, or a failover composite `best:SYMBOL` that follows "
        "the healthiest feed of the symbol. `list_instruments` lists them.",
    ),
]
TimeArg = Annotated[
    str | int | None,
    Field(
        description="A time: ISO 8601 (`2026-11-21T09:30:00Z`; without an offset it is UTC; a date alone "
        "is its 00:00 UTC) or milliseconds since the Unix epoch."
    ),
]


class Coverage(BaseModel):
    """What every answer says about the data behind it."""

    complete: bool = Field(
        description="False when part of the data used is known to be missing, stale or untrusted."
    )
    notes: list[str] = Field(
        default_factory=list, description="Why it is not complete, one reason per entry."
    )


def iso(ms: int) -> str:
    """UTC ISO 8601 with milliseconds and Z."""
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def parse_time(value: str | int, argument: str) -> int:
    """Milliseconds since the epoch from ISO 8601 or a number of milliseconds."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        ms = int(value)
        if not 0 <= ms < 10**14:
            raise InvalidArgument(f"{argument}: {ms} is not milliseconds since the epoch")
        return ms
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise InvalidArgument(
            f"{argument}: {value!r} is not a time; give ISO 8601 like 2026-11-21T09:30:00Z or milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def answer(result: BaseModel, summary: str) -> ToolResult:
    data: dict[str, Any] = result.model_dump(mode="json")
    return ToolResult(
        content=[
            TextContent(type="text", text=summary),
            TextContent(type="text", text=orjson.dumps(data).decode()),
        ],
        structured_content=data,
    )


def read_only(title: str) -> ToolAnnotations:
    """Every tool here only reads market data from our own services."""
    return ToolAnnotations(
        title=title, read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )


def register_tool(
    mcp: FastMCP,
    fn: Callable[..., Any],
    *,
    output: type[BaseModel],
    title: str,
    timeout_s: float,
) -> None:
    """Register a tool with its output schema, read-only annotations and timeout; the description is the
    function's docstring."""
    mcp.tool(
        fn,
        title=title,
        # Inlined once here: FastMCP otherwise dereferences every tool's schema on every request.
        output_schema=dereference_refs(output.model_json_schema()),
        annotations=read_only(title),
        timeout=timeout_s,
        tags={"market-data"},
    )


def signed(text: str) -> str:
    """A decimal with its sign, for summaries ("+12.5", "-3")."""
    return text if text.startswith("-") or text in ("", "0") else "+" + text
