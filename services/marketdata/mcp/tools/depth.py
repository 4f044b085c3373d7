"""get_market_depth: the top of an instrument's local order book (collector GetOrderBook)."""

from __future__ import annotations

from typing import Literal

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from pydantic import BaseModel, Field

from marketdata.core.instruments import InstrumentId
from marketdata.mcp.backends import COLLECTOR, Backends
from marketdata.mcp.shaping import Coverage, InstrumentKey, answer, iso, register_tool
from marketdata.mcp.tools.system import FailoverInfo, failover_info
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_book_pb2


class Level(BaseModel):
    price: str = Field(description="Exact decimal price as the exchange sent it.")
    size: str = Field(description="Total size resting at the price (base quantity).")
    untrusted: bool = Field(
        description="Beyond the range the book's snapshot covered: levels next to it may be missing."
    )


class DepthCoverage(Coverage):
    state: str = Field(
        description="SYNCED, or RESYNCING when this is the last good book while it is rebuilt."
    )
    age_ms: int = Field(description="Milliseconds since the book's last applied update was received.")
    untrusted_levels: int


class MarketDepth(BaseModel):
    instrument: str = Field(
        description="The instrument whose book answered (for best:SYMBOL, the feed followed now)."
    )
    depth: int = Field(description="Levels per side asked for; fewer are returned when the book holds fewer.")
    bids: list[Level] = Field(description="Best (highest) first.")
    asks: list[Level] = Field(description="Best (lowest) first.")
    best_bid: str | None
    best_ask: str | None
    spread: str | None = Field(description="best ask - best bid.")
    mid: str | None
    depth_imbalance: float = Field(
        description="(bid size - ask size) / (bid size + ask size) over the returned levels, -1..1; positive: more bids."
    )
    bid_size: str = Field(description="Total size of the returned bid levels.")
    ask_size: str = Field(description="Total size of the returned ask levels.")
    update_id: int = Field(description="The exchange's update id the book reflects.")
    exchange_time: str | None = Field(description="Exchange time of the last applied update, UTC ISO 8601.")
    failover: FailoverInfo | None = Field(description="For best:SYMBOL: the feed followed and its switches.")
    coverage: DepthCoverage


def register(mcp: FastMCP, backends: Backends) -> None:
    async def get_market_depth(
        instrument: InstrumentKey,
        depth: Literal[5, 10, 20, 50, 200] = 20,
    ) -> ToolResult:
        """The top of an instrument's live order book: bids and asks best first (exact decimals), spread,
        mid, depth imbalance over the returned levels, and whether the book is in sync and how fresh."""
        selection = await backends.select([instrument], "instrument")
        request = collector_pb2.GetOrderBookRequest(depth=depth)
        if selection.composites:
            request.composite = selection.composites[0]
        else:
            request.instrument.CopyFrom(selection.instruments[0].to_proto())
        reply: collector_pb2.GetOrderBookResponse = await backends.call(
            COLLECTOR, backends.collector.GetOrderBook, request
        )
        result = shape(reply, depth)
        s = result
        summary = (
            f"{s.instrument} book ({s.coverage.state.lower()}, {s.coverage.age_ms} ms old): "
            f"bid {s.best_bid or '-'} / ask {s.best_ask or '-'}, spread {s.spread or '-'}, "
            f"imbalance {s.depth_imbalance:+.3f} over {len(s.bids)}x{len(s.asks)} levels"
        )
        return answer(result, summary)

    register_tool(mcp, get_market_depth, output=MarketDepth, title="Market depth", timeout_s=15)


def shape(reply: collector_pb2.GetOrderBookResponse, depth: int) -> MarketDepth:
    view = reply.view
    book = view.book
    summary = view.summary
    bids = [Level(price=x.price, size=x.size, untrusted=x.untrusted) for x in book.bids]
    asks = [Level(price=x.price, size=x.size, untrusted=x.untrusted) for x in book.asks]
    state = order_book_pb2.BookSyncState.Name(view.state).removeprefix("BOOK_SYNC_STATE_")
    untrusted = sum(1 for x in (*bids, *asks) if x.untrusted)
    notes = []
    if state != "SYNCED":
        notes.append(f"book is {state.lower()}: this is its last good state, {view.age_ms} ms old")
    if untrusted:
        notes.append(f"{untrusted} levels lie beyond the snapshot's range (untrusted)")
    return MarketDepth(
        instrument=InstrumentId.from_proto(book.instrument).key,
        depth=view.depth or depth,
        bids=bids,
        asks=asks,
        best_bid=summary.best_bid.price if summary.HasField("best_bid") else None,
        best_ask=summary.best_ask.price if summary.HasField("best_ask") else None,
        spread=summary.spread or None,
        mid=summary.mid or None,
        depth_imbalance=summary.depth_imbalance,
        bid_size=summary.bid_size or "0",
        ask_size=summary.ask_size or "0",
        update_id=book.update_id,
        exchange_time=iso(book.exchange_time_ms) if book.exchange_time_ms else None,
        failover=failover_info(reply.failover) if reply.HasField("failover") else None,
        coverage=DepthCoverage(
            complete=not notes, notes=notes, state=state, age_ms=view.age_ms, untrusted_levels=untrusted
        ),
    )
