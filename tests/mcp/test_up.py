"""`marketdata up --replay` starts the bridge and prints its URL and a development token that works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.cli.processes import running_up, up_env

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.slow]


async def test_up_serves_mcp_with_a_printed_token(tmp_path: Path) -> None:
    env = up_env(tmp_path, instruments="binance-futures:BTCUSDT", log_level="WARNING")
    async with running_up(env, "--replay") as banner:
        match = re.search(r"MCP for AI agents: (http://\S+/mcp)\s+\(Authorization: Bearer (\S+)\)", banner)
        assert match, banner
        url, token = match.groups()
        assert url.endswith(f":{env['MARKETDATA_MCP_PORT']}/mcp")
        transport = StreamableHttpTransport(url, headers={"Authorization": f"Bearer {token}"})
        async with Client(transport) as client:
            listed = await client.call_tool("list_instruments", {})
            info = await client.call_tool("get_system_info", {})
    assert listed.structured_content is not None
    assert [i["key"] for i in listed.structured_content["instruments"]] == ["binance-futures:BTCUSDT"]
    assert info.structured_content is not None
    statuses = {s["name"]: s["status"] for s in info.structured_content["services"]}
    assert statuses["collector"] == "SERVING" and statuses["volume-profile"] == "SERVING"
