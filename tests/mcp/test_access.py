"""HTTP access: bearer tokens (401), per-token rate limits (429 + Retry-After), /health open, tokens
never in logs or metrics; the rate limiter's windows with a fake clock."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from mcp import MCPError

from marketdata.mcp.access import parse_tokens
from tests.mcp.conftest import EXPIRED_TOKEN, LIMITED_TOKEN, TOKEN, Bridge

pytestmark = pytest.mark.asyncio(loop_scope="package")

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def post(bridge: Bridge, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, str], str]:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(bridge.url, json=body, headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.text()


def tool_call(name: str, request_id: int = 7) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {}},
    }


async def test_no_token_and_a_wrong_token_get_401(bridge: Bridge) -> None:
    status, headers, body = await post(bridge, INITIALIZE, None)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in body
    status, headers, _ = await post(bridge, INITIALIZE, "not-a-configured-token")
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, _, _ = await post(bridge, INITIALIZE, TOKEN)
    assert status == 200
    with pytest.raises(MCPError):  # the client reports the refused request
        async with bridge.client(token="wrong") as client:
            await client.list_tools()


async def test_an_expired_token_gets_401_saying_so(bridge: Bridge) -> None:
    status, headers, body = await post(bridge, INITIALIZE, EXPIRED_TOKEN)
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert "expired" in body and EXPIRED_TOKEN not in body


def test_token_expiry_is_parsed_and_a_bad_one_named_without_the_token() -> None:
    (dated, timed) = parse_tokens("abc:pro:2026-12-31,def:free:2026-12-31T18:00Z")
    assert (dated.tier, dated.expires_at) == ("pro", 1798675200.0)  # midnight UTC
    assert (
        timed.expires_at == 1798740000.0 and not timed.expired(1798739999.0) and timed.expired(1798740000.0)
    )
    with pytest.raises(ValueError, match="entry 1: expiry 'soon'") as caught:
        parse_tokens("s3cr3t:pro:soon")
    assert "s3cr3t" not in str(caught.value)


async def test_a_foreign_host_header_is_refused_on_loopback(bridge: Bridge) -> None:
    """DNS rebinding: a web page on another name must not reach a bridge bound to 127.0.0.1."""
    headers = {**HEADERS, "Authorization": f"Bearer {TOKEN}", "Host": "attacker.example"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(bridge.url, json=INITIALIZE, headers=headers) as r,
    ):
        assert r.status in (400, 403, 421)


async def test_stateless_any_request_stands_alone(bridge: Bridge) -> None:
    """No session: a tool call without initialize is answered, and no session id is handed out, so a
    load balancer may send each request to any replica."""
    status, headers, body = await post(bridge, tool_call("ping"), TOKEN)
    assert status == 200, body
    assert "pong at" in body
    assert "mcp-session-id" not in {k.lower() for k in headers}


async def test_health_needs_no_token(bridge: Bridge) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(bridge.url.replace("/mcp", "/health")) as response,
    ):
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_rate_limit_answers_429_with_retry_after(bridge: Bridge) -> None:
    async with bridge.client(token=LIMITED_TOKEN) as client:
        # Listing tools is free; the tier allows three tool calls a day.
        await client.list_tools()
        for _ in range(3):
            assert (await client.call_tool("ping", {})).is_error is False
        with pytest.raises(MCPError):  # refused with 429 (checked raw below)
            await client.call_tool("ping", {})
    status, headers, body = await post(bridge, tool_call("ping"), LIMITED_TOKEN)
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= 86_400
    assert "tier tiny allows 3 tool calls per day" in body
    # Other tokens are not affected.
    async with bridge.client() as client:
        assert (await client.call_tool("ping", {})).is_error is False
    text = await metrics_text(bridge)
    assert 'marketdata_mcp_tool_calls_total{outcome="rate_limited",tool="ping"}' in text


async def metrics_text(bridge: Bridge) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(bridge.service.metrics_server.url + "/metrics") as r,
    ):
        return await r.text()


async def test_tokens_never_reach_logs_or_metrics(bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-that-must-not-be-logged-42"
    await post(bridge, INITIALIZE, wrong)
    async with bridge.client() as client:
        await client.call_tool(
            "get_market_depth", {"instrument": "binance-spot:XYZUSDT"}, raise_on_error=False
        )
        await client.call_tool("ping", {})
    await post(bridge, tool_call("ping"), LIMITED_TOKEN)
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    text = await metrics_text(bridge)
    for secret in (TOKEN, LIMITED_TOKEN, wrong):
        assert secret not in logged
        assert secret not in text
    assert 'marketdata_mcp_http_unauthorized_total{reason="invalid"}' in text
