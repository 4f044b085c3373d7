"""`marketdata serve mcp --stdio`, started the way an agent's config starts it, against the stack."""

from __future__ import annotations

import os
import sys

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.mcp.conftest import FUTURES, INSTRUMENTS, Bridge

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_stdio_transport(bridge: Bridge) -> None:
    env = {
        **os.environ,
        "MARKETDATA_INSTRUMENTS": INSTRUMENTS,
        "MARKETDATA_COLLECTOR_ADDR": f"127.0.0.1:{bridge.collector.service.grpc.port}",
        "MARKETDATA_VOLUME_PROFILE_ADDR": bridge.service.backends.addresses["volume-profile"],
        "MARKETDATA_LOG_LEVEL": "WARNING",
    }
    transport = StdioTransport(
        sys.executable, ["-m", "marketdata.cli.main", "serve", "mcp", "--stdio"], env=env
    )
    async with Client(transport) as client:
        assert "get_volume_profile" in {t.name for t in await client.list_tools()}
        listed = await client.call_tool("list_instruments", {})
        assert listed.structured_content is not None
        assert FUTURES.key in [i["key"] for i in listed.structured_content["instruments"]]
        profile = await client.call_tool("get_volume_profile", {"instruments": [FUTURES.key]})
        assert profile.structured_content is not None and profile.structured_content["poc"]
        info = await client.call_tool("get_system_info", {})
        assert info.structured_content is not None and info.structured_content["transport"] == "stdio"
        resources = {str(r.uri) for r in await client.list_resources()}
        assert "marketdata://methodology/volume-profile" in resources
