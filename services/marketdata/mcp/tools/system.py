"""ping, get_system_info, list_instruments, get_feed_status: what is collected and how healthy it is."""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Annotated, Literal

from fastmcp import FastMCP
from fastmcp.server.dependencies import get_http_request
from fastmcp.tools.base import ToolResult
from pydantic import BaseModel, Field

from marketdata.core.instruments import InstrumentId
from marketdata.mcp.access import Grant
from marketdata.mcp.backends import COLLECTOR, Backends
from marketdata.mcp.http_security import GRANT_STATE_KEY
from marketdata.mcp.ratelimit import RateLimiter
from marketdata.mcp.shaping import Coverage, answer, iso, now_ms, register_tool
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_book_pb2

Market = Literal["binance-spot", "binance-futures", "bybit-spot", "bybit-linear"]


def _version() -> str:
    try:
        return metadata.version("marketdata")
    except metadata.PackageNotFoundError:
        return "unknown"


class Pong(BaseModel):
    ok: bool = Field(description="Always true: the bridge answered.")
    server_time: str = Field(description="The bridge's clock, UTC ISO 8601.")
    server_time_ms: int
    version: str = Field(description="marketdata version of the bridge.")
    coverage: Coverage


class ServiceInfo(BaseModel):
    name: str = Field(description="collector, volume-profile or order-flow.")
    address: str = Field(description="host:port the bridge calls.")
    status: str = Field(description="grpc.health.v1 status: SERVING, NOT_SERVING, or UNREACHABLE: CODE.")


class CallerLimits(BaseModel):
    tier: str
    calls_per_minute: int = Field(description="0: no limit.")
    calls_per_day: int = Field(description="0: no limit.")
    used_this_minute: int
    used_today: int = Field(description="Tool calls counted in the current UTC day (this replica).")


class SystemInfo(BaseModel):
    version: str
    server_time: str
    transport: Literal["http", "stdio"]
    services: list[ServiceInfo]
    instruments: int = Field(description="Instruments collected now.")
    composites: int = Field(description="Failover composites (best:SYMBOL) available.")
    caller: CallerLimits | None = Field(description="Your token's tier and usage (HTTP only).")
    tool_timeout_s: float = Field(description="Deadline of each backend call.")
    coverage: Coverage


class InstrumentInfo(BaseModel):
    key: str = Field(description="The instrument key to pass to other tools, e.g. binance-futures:BTCUSDT.")
    market: Market
    exchange: Literal["binance", "bybit"]
    kind: Literal["spot", "linear"] = Field(description="spot, or linear (USD-margined perpetuals/futures).")
    symbol: str


class InstrumentList(BaseModel):
    instruments: list[InstrumentInfo]
    composites: list[str] = Field(
        description="Failover composite keys (best:SYMBOL) accepted where instruments are."
    )
    coverage: Coverage


class InstrumentFeed(BaseModel):
    key: str
    trades: int
    last_trade_age_ms: int = Field(
        description="Milliseconds since the last trade was received; -1: none yet."
    )
    repairing_gap: bool
    book: str = Field(description="Order book state: OFF, SYNCING, SYNCED or RESYNCING.")


class FailoverInfo(BaseModel):
    composite: str
    following: str | None = Field(description="The instrument followed now.")
    switches: int
    last_switch: str | None = Field(description="`from -> to: reason at time` of the newest switch.")


class FeedInfo(BaseModel):
    feed: str
    state: str = Field(description="CONNECTING, CONNECTED, RECONNECTING or STOPPED.")
    health_score: int = Field(description="0 (not trustworthy) to 100.")
    health_reason: str
    connections: int
    last_message_age_ms: int
    trades: int
    reconnects: int
    gaps_detected: int
    gaps_repaired: int
    gaps_unrepaired: int
    books: int
    books_synced: int
    last_error: str
    instruments: list[InstrumentFeed]


class FeedStatus(BaseModel):
    feeds: list[FeedInfo]
    failovers: list[FailoverInfo]
    coverage: Coverage


def instrument_info(instrument: InstrumentId) -> InstrumentInfo:
    market = instrument.market
    return InstrumentInfo(
        key=instrument.key,
        market=market.value,  # type: ignore[arg-type]
        exchange="binance" if market.is_binance else "bybit",
        kind="spot" if market.value.endswith("spot") else "linear",
        symbol=instrument.symbol,
    )


def failover_info(failover: collector_pb2.Failover) -> FailoverInfo:
    following = InstrumentId.from_proto(failover.selected).key if failover.selected.symbol else None
    last = None
    if failover.switches:
        s = failover.switches[-1]
        last = f"{s.from_feed or '(none)'} -> {s.to_feed}: {s.reason} at {iso(s.time_ns // 1_000_000)}"
    return FailoverInfo(
        composite=failover.composite, following=following, switches=len(failover.switches), last_switch=last
    )


def register(mcp: FastMCP, backends: Backends, limiter: RateLimiter | None) -> None:
    async def ping() -> ToolResult:
        """Check that the MCP bridge answers; returns its clock and version."""
        now = now_ms()
        pong = Pong(
            ok=True,
            server_time=iso(now),
            server_time_ms=now,
            version=_version(),
            coverage=Coverage(complete=True),
        )
        return answer(pong, f"pong at {pong.server_time} (marketdata {pong.version})")

    async def get_system_info() -> ToolResult:
        """The bridge's version, the health of the services it calls, how many instruments are collected,
        and (over HTTP) your token's tier, limits and usage."""
        names = list(backends.addresses)
        statuses = await asyncio.gather(*(backends.health(n) for n in names))
        services = [
            ServiceInfo(name=n, address=backends.addresses[n], status=s)
            for n, s in zip(names, statuses, strict=True)
        ]
        catalog = await backends.catalog()
        caller = await _caller(limiter)
        down = [s.name for s in services if s.status != "SERVING"]
        coverage = Coverage(
            complete=not down and catalog.from_collector,
            notes=[f"{n} is not serving" for n in down]
            + (
                []
                if catalog.from_collector
                else ["instrument list from configuration (collector unreachable)"]
            ),
        )
        info = SystemInfo(
            version=_version(),
            server_time=iso(now_ms()),
            transport="http" if caller is not None or _in_http() else "stdio",
            services=services,
            instruments=len(catalog.instruments),
            composites=len(catalog.composites),
            caller=caller,
            tool_timeout_s=backends.timeout_s,
            coverage=coverage,
        )
        health = ", ".join(f"{s.name} {s.status}" for s in services)
        return answer(info, f"marketdata {info.version}: {health}; {info.instruments} instruments collected")

    async def list_instruments() -> ToolResult:
        """Every instrument collected now (keys to pass to the other tools) and the failover composites
        (best:SYMBOL follows whichever feed of the symbol is healthiest)."""
        catalog = await backends.catalog()
        result = InstrumentList(
            instruments=[instrument_info(i) for i in catalog.instruments],
            composites=list(catalog.composites),
            coverage=Coverage(
                complete=catalog.from_collector,
                notes=[] if catalog.from_collector else ["from configuration: the collector did not answer"],
            ),
        )
        keys = ", ".join(i.key for i in result.instruments)
        return answer(
            result,
            f"{len(result.instruments)} instruments: {keys}; composites: {', '.join(result.composites) or 'none'}",
        )

    async def get_feed_status(
        feeds: Annotated[
            list[Market] | None,
            Field(description="Markets to report; omit for all.", max_length=4),
        ] = None,
    ) -> ToolResult:
        """Health of each exchange feed: connection state, health score and its main reason, last
        message age, reconnects, trade-id gaps (repaired or not), order books in sync, per instrument
        the last trade's age; and which feed each best:SYMBOL composite follows."""
        reply: collector_pb2.GetFeedStatusResponse = await backends.call(
            COLLECTOR,
            backends.collector.GetFeedStatus,
            collector_pb2.GetFeedStatusRequest(feeds=list(feeds or [])),
        )
        infos = [_feed_info(f) for f in reply.feeds]
        notes = [
            f"{f.feed}: {f.state.lower()}, health {f.health_score} ({f.health_reason})"
            for f in infos
            if f.state != "CONNECTED" or f.health_score < 50
        ] + [f"{f.feed}: {f.gaps_unrepaired} unrepaired trade gaps" for f in infos if f.gaps_unrepaired]
        result = FeedStatus(
            feeds=infos,
            failovers=[failover_info(f) for f in reply.failovers],
            coverage=Coverage(complete=not notes, notes=notes),
        )
        summary = (
            "; ".join(f"{f.feed} {f.state.lower()} health {f.health_score}" for f in infos) or "no feeds"
        )
        return answer(result, summary)

    register_tool(mcp, ping, output=Pong, title="Ping", timeout_s=5)
    register_tool(mcp, get_system_info, output=SystemInfo, title="System info", timeout_s=15)
    register_tool(mcp, list_instruments, output=InstrumentList, title="List instruments", timeout_s=15)
    register_tool(mcp, get_feed_status, output=FeedStatus, title="Feed status", timeout_s=15)


def _feed_info(feed: collector_pb2.FeedStatus) -> FeedInfo:
    return FeedInfo(
        feed=feed.feed,
        state=collector_pb2.FeedState.Name(feed.state).removeprefix("FEED_STATE_"),
        health_score=feed.health.score,
        health_reason=feed.health.reason,
        connections=feed.connections,
        last_message_age_ms=feed.last_message_age_ms,
        trades=feed.trades,
        reconnects=feed.reconnects,
        gaps_detected=feed.gaps_detected,
        gaps_repaired=feed.gaps_repaired,
        gaps_unrepaired=feed.gaps_unrepaired,
        books=feed.books,
        books_synced=feed.books_synced,
        last_error=feed.last_error,
        instruments=[
            InstrumentFeed(
                key=InstrumentId.from_proto(i.instrument).key,
                trades=i.trades,
                last_trade_age_ms=i.last_trade_age_ms,
                repairing_gap=i.repairing,
                book=order_book_pb2.BookSyncState.Name(i.book_state).removeprefix("BOOK_SYNC_STATE_"),
            )
            for i in feed.instruments
        ],
    )


def _in_http() -> bool:
    try:
        get_http_request()
    except RuntimeError:
        return False
    return True


async def _caller(limiter: RateLimiter | None) -> CallerLimits | None:
    if limiter is None:
        return None
    try:
        request = get_http_request()
    except RuntimeError:
        return None
    grant = request.scope.get("state", {}).get(GRANT_STATE_KEY)
    if not isinstance(grant, Grant):
        return None
    tier = limiter.tier(grant)
    minute, day = await limiter.used(grant)
    return CallerLimits(
        tier=tier.name,
        calls_per_minute=tier.per_minute,
        calls_per_day=tier.per_day,
        used_this_minute=minute,
        used_today=day,
    )
