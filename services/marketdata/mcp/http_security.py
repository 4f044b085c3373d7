"""HTTP access to /mcp: bearer tokens with tiers and per-token rate limits (docs/mcp.md, "Access").

An ASGI middleware in front of the MCP endpoint, so a refused request never reaches the MCP layer:
- no `Authorization: Bearer` header, or a token not configured: 401 with `WWW-Authenticate: Bearer`;
- a `tools/call` past the token's tier limits: 429 with `Retry-After` (seconds) and a JSON-RPC error
  saying which limit and when to retry. Only tool calls count; listing tools or reading resources does not.

Tokens are compared by their SHA-256 (the configured tokens are kept only as digests) and are never
logged: logs name a token by its fingerprint (`sha256:` + 8 hex digits) at most.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketdata.mcp.access import Grant, token_digest
from marketdata.mcp.metrics import BridgeMetrics, Outcome
from marketdata.mcp.ratelimit import RateLimiter, Refusal

GRANT_STATE_KEY = "marketdata_mcp_grant"
MAX_BODY_BYTES = 1 << 20


class BearerGate:
    """The ASGI middleware: authenticate, then rate-limit tool calls, then hand over to the MCP app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        grants: tuple[Grant, ...],
        limiter: RateLimiter,
        metrics: BridgeMetrics,
        path: str = "/mcp",
    ) -> None:
        self.app = app
        self._grants = {g.digest: g for g in grants}
        self._limiter = limiter
        self._metrics = metrics
        self._path = path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == self._path or path.startswith(self._path + "/")):
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token is None:
            self._metrics.unauthorized.labels("missing").inc()
            await _unauthorized(
                send, "missing bearer token: send `Authorization: Bearer <token>`", error=False
            )
            return
        grant = self._grants.get(token_digest(token))
        if grant is None:
            self._metrics.unauthorized.labels("invalid").inc()
            await _unauthorized(send, "the bearer token is not valid for this server", error=True)
            return
        if grant.expired(time.time()):
            self._metrics.unauthorized.labels("expired").inc()
            await _unauthorized(send, "the bearer token has expired; ask for a new one", error=True)
            return
        scope.setdefault("state", {})[GRANT_STATE_KEY] = grant
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, {"error": f"request body over {MAX_BODY_BYTES} bytes"})
            return
        for request_id, tool in _tool_calls(body):
            refusal = await self._limiter.take(grant)
            if refusal is not None:
                self._metrics.count(tool, Outcome.RATE_LIMITED)
                await _rate_limited(send, request_id, grant, refusal)
                return
        await self.app(scope, _replay(body, receive), send)


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = bytes(value).decode("latin-1")
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read for inspection, handed to the app as if unread; then the real receive (disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _tool_calls(body: bytes) -> list[tuple[Any, str]]:
    """(JSON-RPC id, tool name) of each tools/call in a request body; unreadable bodies hold none (the
    MCP layer answers them with its own parse error)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    messages = document if isinstance(document, list) else [document]
    calls = []
    for message in messages:
        if isinstance(message, dict) and message.get("method") == "tools/call":
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            calls.append((message.get("id"), name if isinstance(name, str) else ""))
    return calls


async def _respond(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _unauthorized(send: Send, description: str, *, error: bool) -> None:
    # RFC 6750: without credentials the challenge carries no error code; with a bad token, invalid_token.
    challenge = 'Bearer realm="marketdata-mcp"' + (', error="invalid_token"' if error else "")
    await _respond(
        send,
        401,
        {"error": "invalid_token" if error else "unauthorized", "error_description": description},
        [(b"www-authenticate", challenge.encode())],
    )


async def _rate_limited(send: Send, request_id: Any, grant: Grant, refusal: Refusal) -> None:
    message = (
        f"rate limit reached: tier {grant.tier} allows {refusal.allowed} tool calls {refusal.limit}; "
        f"retry after {refusal.retry_after_s} s"
    )
    await _respond(
        send,
        429,
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {
                "code": -32000,
                "message": message,
                "data": {"retry_after_s": refusal.retry_after_s, "tier": grant.tier, "limit": refusal.limit},
            },
        },
        [(b"retry-after", str(refusal.retry_after_s).encode())],
    )
