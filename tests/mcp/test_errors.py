"""Bad arguments and failing backends become tool errors (isError) an agent can act on: the argument
named, what is accepted, never a stack trace; outcomes counted in the metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marketdata.core.config import ConfigError, load_settings
from marketdata.mcp.server import start_mcp_http
from tests.mcp.conftest import FUTURES, TOKEN, Bridge
from tests.storage.conftest import free_port

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def error_text(bridge: Bridge, tool: str, **arguments: Any) -> str:
    async with bridge.client() as client:
        result = await client.call_tool(tool, arguments, raise_on_error=False)
    assert result.is_error, result
    assert result.structured_content is None
    text = "\n".join(c.text for c in result.content)  # type: ignore[union-attr]
    assert "Traceback" not in text and "pydantic.dev" not in text
    return text


async def test_an_instrument_not_collected_names_what_is(bridge: Bridge) -> None:
    text = await error_text(bridge, "get_market_depth", instrument="binance-spot:XYZUSDT")
    assert text == (
        "instrument: binance-spot:XYZUSDT is not collected; available: "
        "binance-futures:BTCUSDT, bybit-linear:BTCUSDT, best:BTCUSDT"
    )
    text = await error_text(bridge, "get_volume_profile", instruments=[FUTURES.key, "kraken:BTCUSD"])
    assert text.startswith("instruments[1]: unknown market 'kraken'") and "available:" in text
    text = await error_text(bridge, "get_volume_profile", instruments=["best:DOGEUSDT"])
    assert "best:DOGEUSDT is not a collected composite" in text


async def test_arguments_out_of_range_name_the_argument(bridge: Bridge) -> None:
    text = await error_text(bridge, "get_market_depth", instrument=FUTURES.key, depth=7)
    assert text.startswith("get_market_depth: invalid arguments: depth: ")
    assert "(got 7)" in text
    text = await error_text(bridge, "get_volume_profile", instruments=[FUTURES.key], value_area_pct=150)
    assert "value_area_pct: Input should be less than or equal to 100" in text
    text = await error_text(bridge, "get_volume_profile", instruments=[])
    assert "instruments:" in text
    text = await error_text(bridge, "get_volume_profile")
    assert "instruments: required" in text
    text = await error_text(bridge, "get_volume_profile", instruments=[FUTURES.key], start="yesterday-ish")
    assert "start: 'yesterday-ish' is not a time" in text
    text = await error_text(bridge, "get_volume_profile", instruments=[FUTURES.key], timeframe="1h")
    assert "timeframe and lookback go together" in text
    text = await error_text(bridge, "get_order_flow_stream", instruments=[FUTURES.key], seconds=120)
    assert "seconds: Input should be less than or equal to 60" in text
    text = await error_text(bridge, "get_order_flow", instruments=[FUTURES.key], end="2026-01-01")
    assert "end: give start too" in text


async def test_service_refusals_pass_through_as_argument_errors(bridge: Bridge) -> None:
    # A row size that is not a multiple of the tick: the volume-profile service's own INVALID_ARGUMENT.
    text = await error_text(bridge, "get_volume_profile", instruments=[FUTURES.key], row_size="0.15")
    assert "row_size" in text


async def test_unknown_tool(bridge: Bridge) -> None:
    assert "Unknown tool" in await error_text(bridge, "get_everything")


async def test_outcomes_are_counted(bridge: Bridge) -> None:
    await error_text(bridge, "get_market_depth", instrument=FUTURES.key, depth=7)
    async with bridge.client() as client:
        await client.call_tool("ping", {})
    async with (
        aiohttp.ClientSession() as session,
        session.get(bridge.service.metrics_server.url + "/metrics") as response,
    ):
        text = await response.text()
    assert 'marketdata_mcp_tool_calls_total{outcome="invalid_argument",tool="get_market_depth"}' in text
    assert 'marketdata_mcp_tool_calls_total{outcome="ok",tool="ping"}' in text
    assert 'marketdata_mcp_tool_call_duration_seconds_count{tool="ping"}' in text


async def test_a_service_down_is_an_error_saying_which(bridge: Bridge, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings = load_settings(
        {
            "MARKETDATA_INSTRUMENTS": FUTURES.key,
            "MARKETDATA_COLLECTOR_ADDR": dead,
            "MARKETDATA_VOLUME_PROFILE_ADDR": dead,
            "MARKETDATA_MCP_PORT": "0",
            "MARKETDATA_MCP_METRICS_PORT": "0",
            "MARKETDATA_MCP_TOKENS": TOKEN,
            "MARKETDATA_MCP_BACKEND_TIMEOUT_S": "2",
        }
    )
    service = await start_mcp_http(settings, process_metrics=False)
    try:
        lonely = Bridge(
            bridge.collector, service, bridge.collector_stub, bridge.profile_stub, bridge.flow_stub
        )
        text = await error_text(lonely, "get_volume_profile", instruments=[FUTURES.key])
        assert text.startswith("the volume-profile service is unavailable") and "retry" in text
        text = await error_text(lonely, "get_feed_status")
        assert text.startswith("the collector service is unavailable")
        async with lonely.client() as client:
            info = await client.call_tool("get_system_info", {})
        assert info.structured_content is not None
        assert info.structured_content["coverage"]["complete"] is False
    finally:
        await service.stop()


async def test_http_refuses_to_start_without_tokens() -> None:
    with pytest.raises(ConfigError, match="MARKETDATA_MCP_TOKENS: the HTTP transport needs at least one"):
        await start_mcp_http(load_settings({"MARKETDATA_MCP_PORT": "0"}))
    with pytest.raises(ConfigError, match="tier 'gold'"):
        await start_mcp_http(load_settings({"MARKETDATA_MCP_PORT": "0", "MARKETDATA_MCP_TOKENS": "abc:gold"}))
