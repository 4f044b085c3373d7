"""The tool-call middleware on its own (in-memory MCP client): a tool that outlives its timeout, and one
that raises something unexpected, become actionable tool errors counted as `error`."""

from __future__ import annotations

import asyncio

from fastmcp import Client, FastMCP

from marketdata.mcp.calls import ToolCalls
from marketdata.mcp.metrics import BridgeMetrics


async def test_timeouts_and_crashes_become_plain_tool_errors() -> None:
    metrics = BridgeMetrics(process_metrics=False, known_tools=frozenset({"slow", "broken"}))
    mcp = FastMCP("t", middleware=[ToolCalls(metrics)], mask_error_details=True)

    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    async def broken() -> str:
        raise RuntimeError("secret internals /etc/passwd")

    mcp.tool(slow, timeout=0.2)
    mcp.tool(broken)
    async with Client(mcp) as client:
        late = await client.call_tool("slow", {}, raise_on_error=False)
        crash = await client.call_tool("broken", {}, raise_on_error=False)
    assert late.is_error and "slow: " in late.content[0].text and "timed out" in late.content[0].text  # type: ignore[union-attr]
    assert crash.is_error
    text = crash.content[0].text  # type: ignore[union-attr]
    assert "internal error" in text and "secret" not in text and "Traceback" not in text
    assert metrics.tool_calls.labels("slow", "error")._value.get() == 1
    assert metrics.tool_calls.labels("broken", "error")._value.get() == 1
