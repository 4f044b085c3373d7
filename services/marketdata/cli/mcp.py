"""`marketdata serve mcp [--stdio]`: the MCP bridge over streamable HTTP (default) or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys

from marketdata.core.config import ConfigError, Settings, env_name


def serve_mcp(settings: Settings, *, stdio: bool) -> int:
    from marketdata.mcp.server import run_mcp_http, run_mcp_stdio

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_mcp_stdio(settings) if stdio else run_mcp_http(settings))
    except ConfigError as exc:
        print(f"marketdata: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


def up_token(settings: Settings, env: dict[str, str]) -> str:
    """The bearer token `marketdata up` prints for the MCP bridge: generated per run (and put into the
    bridge's env) unless MARKETDATA_MCP_TOKENS is configured, whose tokens are never printed."""
    if settings.mcp_tokens:
        return f"one of {env_name('mcp_tokens')}"
    tiers = [t.name for t in settings.mcp_tiers]
    tier = "unlimited" if "unlimited" in tiers else tiers[0]
    token = secrets.token_urlsafe(24)
    env[env_name("mcp_tokens")] = f"{token}:{tier}"
    return token
