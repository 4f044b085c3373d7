"""Fuzzing the tools' arguments through a real MCP client: for every tool, argument objects built
from its own input schema's names with values of every JSON type (and unknown names), seeded. Each
call ends as an answer or a tool error with a message; never a protocol error, a stack trace, a
hang, or a dead bridge. MARKETDATA_FUZZ_SCALE multiplies the number of cases (as tests/fuzz)."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest

from tests.mcp.conftest import FUTURES, Bridge

pytestmark = pytest.mark.asyncio(loop_scope="package")

CASES_PER_TOOL = 12 * int(os.environ.get("MARKETDATA_FUZZ_SCALE", "1"))
# Tools that wait for live data: bounded by their `seconds`, which the fuzzer keeps short when valid.
SLOW = {"get_order_flow_stream"}


def _value(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Any] = [
        None,
        True,
        rng.randint(-(2**63), 2**63),
        rng.choice([0, 1, -1, 5, 60, 100, 101, 10**9]),
        rng.uniform(-1e12, 1e12),
        float("1e308"),
        "",
        rng.choice(
            ["binance-spot:BTCUSDT", FUTURES.key, "best:BTCUSDT", "best:", "1h", "utc_day", "x" * 5000]
        ),
        "".join(rng.choice("aZ9:-_ .\u00e9\u0663\U0001f600\x00") for _ in range(rng.randint(1, 40))),
        rng.choice(["2026-11-21T00:00Z", "yesterday", "1e999", "-1", "NaN"]),
    ]
    if depth < 2:
        choices += [[_value(rng, depth + 1) for _ in range(rng.randint(0, 4))], {"k": _value(rng, depth + 1)}]
    return rng.choice(choices)


def _arguments(rng: random.Random, names: list[str]) -> dict[str, Any]:
    chosen = [n for n in names if rng.random() < 0.6]
    arguments = {name: _value(rng) for name in chosen}
    if rng.random() < 0.2:
        arguments["not_a_parameter"] = _value(rng)
    if "seconds" in arguments and rng.random() < 0.8:
        arguments["seconds"] = 1  # keep the streaming tool's window short
    return arguments


async def test_random_arguments_get_an_answer_or_a_tool_error(bridge: Bridge) -> None:
    rng = random.Random(20261122)
    async with bridge.client() as client:
        tools = await client.list_tools()
        for tool in tools:
            names = sorted(tool.inputSchema.get("properties", {}))
            for _ in range(CASES_PER_TOOL):
                arguments = _arguments(rng, names)
                timeout = 90 if tool.name in SLOW else 30
                result = await asyncio.wait_for(
                    client.call_tool(tool.name, arguments, raise_on_error=False), timeout
                )
                text = "\n".join(getattr(c, "text", "") for c in result.content)
                assert text, (tool.name, arguments)
                assert "Traceback" not in text, (tool.name, arguments, text)
                if result.is_error:
                    assert result.structured_content is None, (tool.name, arguments)
                    assert ":" in text, (tool.name, arguments, text)  # names what is wrong
        # the bridge still answers normally afterwards
        assert (await client.call_tool("ping", {})).structured_content is not None
