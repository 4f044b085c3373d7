"""Each tool over HTTP with a real MCP client, checked against the gRPC services it fronts."""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_flow_service_pb2 as of_pb2
from marketdata.v1 import volume_profile_service_pb2 as vp_pb2
from tests.mcp.conftest import FUTURES, LINEAR, Bridge

pytestmark = pytest.mark.asyncio(loop_scope="package")

TOOLS = {
    "ping",
    "get_system_info",
    "list_instruments",
    "get_feed_status",
    "get_market_depth",
    "get_volume_profile",
    "get_volume_profile_levels",
    "get_order_flow",
    "get_order_flow_stream",
}


async def call(bridge: Bridge, tool: str, **arguments: Any) -> tuple[dict[str, Any], str]:
    """Structured content (checked against the tool's output schema) and the summary text."""
    async with bridge.client() as client:
        tools = {t.name: t for t in await client.list_tools()}
        result = await client.call_tool(tool, arguments, raise_on_error=False)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    jsonschema.validate(result.structured_content, tools[tool].output_schema)
    summary = result.content[0].text  # type: ignore[union-attr]
    return result.structured_content, summary


async def test_tools_are_listed_with_schemas_and_read_only_annotations(bridge: Bridge) -> None:
    async with bridge.client() as client:
        tools = {t.name: t for t in await client.list_tools()}
    assert set(tools) >= TOOLS
    for tool in tools.values():
        assert tool.description, tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert "coverage" in tool.output_schema["properties"], tool.name
        assert tool.annotations is not None and tool.annotations.read_only_hint is True, tool.name
        assert tool.annotations.destructive_hint is False, tool.name
    depth = tools["get_market_depth"].input_schema["properties"]
    assert depth["depth"]["enum"] == [5, 10, 20, 50, 200]
    profile = tools["get_volume_profile"].input_schema
    assert profile["required"] == ["instruments"]
    assert profile["properties"]["value_area_pct"]["exclusiveMinimum"] == 0
    assert profile["properties"]["instruments"]["maxItems"] == 8


async def test_ping_and_system_info(bridge: Bridge) -> None:
    pong, summary = await call(bridge, "ping")
    assert pong["ok"] is True and summary.startswith("pong")
    info, _ = await call(bridge, "get_system_info")
    statuses = {s["name"]: s["status"] for s in info["services"]}
    assert statuses["collector"] == "SERVING" and statuses["volume-profile"] == "SERVING"
    assert info["instruments"] == 2
    assert info["transport"] == "http"
    assert info["caller"]["tier"] == "unlimited"


async def test_list_instruments_matches_the_collector(bridge: Bridge) -> None:
    listed = await bridge.collector_stub.ListInstruments(collector_pb2.ListInstrumentsRequest())
    result, summary = await call(bridge, "list_instruments")
    assert (
        [i["key"] for i in result["instruments"]]
        == [f"{FUTURES.key}", f"{LINEAR.key}"]
        == [
            f"{'binance-futures' if i.exchange == 1 else 'bybit-linear'}:{i.symbol}"
            for i in listed.instruments
        ]
    )
    assert result["composites"] == ["best:BTCUSDT"]
    assert FUTURES.key in summary


async def test_feed_status_matches_the_collector(bridge: Bridge) -> None:
    status = await bridge.collector_stub.GetFeedStatus(collector_pb2.GetFeedStatusRequest())
    result, _ = await call(bridge, "get_feed_status")
    by_feed = {f["feed"]: f for f in result["feeds"]}
    assert set(by_feed) == {f.feed for f in status.feeds}
    for feed in status.feeds:
        assert by_feed[feed.feed]["trades"] == feed.trades
        assert by_feed[feed.feed]["state"] == "CONNECTED"
    assert result["failovers"][0]["composite"] == "best:BTCUSDT"
    only, _ = await call(bridge, "get_feed_status", feeds=["bybit-linear"])
    assert [f["feed"] for f in only["feeds"]] == ["bybit-linear"]


async def test_market_depth_matches_the_collector(bridge: Bridge) -> None:
    request = collector_pb2.GetOrderBookRequest(instrument=FUTURES.to_proto(), depth=10)
    book = await bridge.collector_stub.GetOrderBook(request)
    result, summary = await call(bridge, "get_market_depth", instrument=FUTURES.key, depth=10)
    assert result["instrument"] == FUTURES.key
    assert [(x["price"], x["size"]) for x in result["bids"]] == [
        (x.price, x.size) for x in book.view.book.bids
    ]
    assert [(x["price"], x["size"]) for x in result["asks"]] == [
        (x.price, x.size) for x in book.view.book.asks
    ]
    assert result["spread"] == book.view.summary.spread
    assert result["coverage"]["state"] == "SYNCED" and result["coverage"]["complete"] is True
    assert result["best_bid"] in summary
    composite, _ = await call(bridge, "get_market_depth", instrument="best:BTCUSDT", depth=5)
    assert composite["failover"]["composite"] == "best:BTCUSDT"
    assert composite["instrument"] == composite["failover"]["following"]


async def test_volume_profile_matches_the_service(bridge: Bridge) -> None:
    request = vp_pb2.GetVolumeProfileRequest(
        instruments=[FUTURES.to_proto()], range=vp_pb2.ProfileRange(anchor=vp_pb2.ANCHOR_UTC_DAY)
    )
    direct = await bridge.stable_profile(request)
    result, summary = await call(
        bridge, "get_volume_profile", instruments=[FUTURES.key], include_rows=True, max_rows=5000
    )
    profile = direct.profile
    assert result["poc"] == profile.poc != ""
    assert (result["value_area_low"], result["value_area_high"]) == (
        profile.value_area_low,
        profile.value_area_high,
    )
    assert result["total_volume"] == profile.total_volume
    assert result["delta"] == profile.delta
    assert [r["price"] for r in result["rows"]] == [r.price for r in profile.rows]
    assert [r["total_volume"] for r in result["rows"]] == [r.total_volume for r in profile.rows]
    assert result["parameters"]["row_size"] == direct.parameters.row_size
    assert result["coverage"]["minutes_expected"] >= 1
    assert result["coverage"]["developing"] is True  # today runs to 24:00 UTC
    assert all(g["reason"] != "in the future" for g in result["coverage"]["known_gaps"])
    assert f"POC {profile.poc}" in summary

    truncated, _ = await call(
        bridge, "get_volume_profile", instruments=[FUTURES.key], include_rows=True, max_rows=3
    )
    assert len(truncated["rows"]) == min(3, len(profile.rows))
    assert truncated["rows_truncated"] is (len(profile.rows) > 3)
    assert profile.poc in [r["price"] for r in truncated["rows"]]

    both, _ = await call(bridge, "get_volume_profile", instruments=[FUTURES.key, LINEAR.key], row_ticks=10)
    assert both["parameters"]["instruments"] == [FUTURES.key, LINEAR.key]
    assert both["parameters"]["row_size"] == "1.00"
    assert both["rows"] is None


async def test_volume_profile_levels_match_the_service(bridge: Bridge) -> None:
    request = vp_pb2.GetVolumeProfileLevelsRequest(
        instruments=[LINEAR.to_proto()], range=vp_pb2.ProfileRange(timeframe="1h", lookback=2)
    )
    await bridge.stable_profile(
        vp_pb2.GetVolumeProfileRequest(instruments=request.instruments, range=request.range)
    )
    direct = await bridge.profile_stub.GetVolumeProfileLevels(request)
    result, summary = await call(
        bridge, "get_volume_profile_levels", instruments=[LINEAR.key], timeframe="1h", lookback=2
    )
    assert (result["poc"], result["value_area_high"], result["value_area_low"]) == (
        direct.poc,
        direct.value_area_high,
        direct.value_area_low,
    )
    assert [n["price"] for n in result["high_volume_nodes"]] == [n.price for n in direct.high_volume_nodes]
    assert f"POC {direct.poc}" in summary


async def test_order_flow_matches_the_service(bridge: Bridge) -> None:
    await bridge.stable_profile(
        vp_pb2.GetVolumeProfileRequest(
            instruments=[FUTURES.to_proto()], range=vp_pb2.ProfileRange(anchor=vp_pb2.ANCHOR_UTC_DAY)
        )
    )
    request = of_pb2.GetOrderFlowRequest(instruments=[FUTURES.to_proto()], timeframe="1m", last_bars=30)
    direct = await bridge.flow_stub.GetOrderFlow(request)
    result, summary = await call(
        bridge,
        "get_order_flow",
        instruments=[FUTURES.key],
        timeframe="1m",
        last_bars=30,
        include_imbalances=True,
    )
    assert any(b.trades for b in direct.bars), "the replayed trades make bars"
    assert len(result["bars"]) == len(direct.bars) == result["bars_total"]
    for shaped, bar in zip(result["bars"], direct.bars, strict=True):
        assert (shaped["delta"], shaped["cvd"], shaped["trades"]) == (
            bar.delta or "0",
            bar.cvd or "0",
            bar.trades,
        )
        assert [i["price"] for i in shaped["imbalances"]] == [i.price for i in bar.imbalances]
    assert result["parameters"]["imbalance_ratio"] == direct.parameters.imbalance_ratio
    assert result["last_cvd"] == (direct.bars[-1].cvd or None)
    assert f"1m x {len(direct.bars)} bars" in summary

    newest, _ = await call(
        bridge, "get_order_flow", instruments=[FUTURES.key], timeframe="1m", last_bars=30, max_bars=5
    )
    assert [b["start"] for b in newest["bars"]] == [b["start"] for b in result["bars"][-5:]]
    assert newest["bars_total"] == len(direct.bars) and newest["bars_truncated"] is True
    composite, _ = await call(
        bridge, "get_order_flow", instruments=["best:BTCUSDT"], timeframe="5m", last_bars=2
    )
    assert composite["failovers"][0]["composite"] == "best:BTCUSDT"


async def test_order_flow_stream_returns_updates_and_a_cursor(bridge: Bridge) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with bridge.client(progress_handler=on_progress) as client:
        tools = {t.name: t for t in await client.list_tools()}
        first = await client.call_tool(
            "get_order_flow_stream", {"instruments": [FUTURES.key], "seconds": 2}, raise_on_error=False
        )
        assert not first.is_error, first.content
        data = first.structured_content
        assert data is not None
        jsonschema.validate(data, tools["get_order_flow_stream"].output_schema)
        assert data["updates"], "the stream starts with a snapshot"
        assert data["updates"][0]["snapshot"] is True
        assert data["cursor"]
        assert progress and progress[0][1] == 2 and (progress[0][2] or "").startswith("#")
        again = await client.call_tool(
            "get_order_flow_stream",
            {"instruments": [FUTURES.key], "seconds": 1, "cursor": data["cursor"]},
            raise_on_error=False,
        )
    assert not again.is_error, again.content
    assert again.structured_content is not None and again.structured_content["cursor"]
    assert 0 < again.structured_content["coverage"]["window_s"] <= 5


async def test_resources_list_instruments_and_methodology(bridge: Bridge) -> None:
    async with bridge.client() as client:
        uris = {str(r.uri) for r in await client.list_resources()}
        assert uris >= {
            "marketdata://instruments",
            "marketdata://methodology/volume-profile",
            "marketdata://methodology/order-flow",
        }
        instruments = await client.read_resource("marketdata://instruments")
        profile = await client.read_resource("marketdata://methodology/volume-profile")
        flow = await client.read_resource("marketdata://methodology/order-flow")
    listed = json.loads(instruments[0].text)  # type: ignore[union-attr]
    assert [i["key"] for i in listed["instruments"]] == [FUTURES.key, LINEAR.key]
    assert "Value area" in profile[0].text and "value_area_pct" in profile[0].text  # type: ignore[union-attr]
    assert "Absorption" in flow[0].text and "imbalance_ratio" in flow[0].text  # type: ignore[union-attr]
