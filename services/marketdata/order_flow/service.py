"""OrderFlowService over gRPC: request validation, data assembly, bars, zones and the live stream."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from marketdata.core.analytics.orderflow import Minute
from marketdata.core.analytics_requests import HANDLED, RequestError, TickSizes, abort_for
from marketdata.core.bar_sources import StorageSource, now_ms
from marketdata.core.composite import CompositeResolver
from marketdata.core.config import Settings, env_name
from marketdata.core.coverage import CoverageSource
from marketdata.core.instruments import InstrumentId
from marketdata.order_flow.compute import analyse, bar_proto, build_bars, count_large, large_trade_proto
from marketdata.order_flow.data import FlowData, LargeTradeRecord
from marketdata.order_flow.query import FlowQuery, echo, parse_instruments, parse_query
from marketdata.order_flow.stream import StreamHub
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import order_flow_service_pb2 as pb
from marketdata.v1 import order_flow_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrderFlowService"].full_name


@dataclass
class Loaded:
    minutes: list[Minute] = field(default_factory=list)
    large: list[LargeTradeRecord] = field(default_factory=list)
    followed: list[InstrumentId] = field(default_factory=list)
    # (instrument, start, end) read over the range: coverage is judged per stretch
    sources: list[tuple[InstrumentId, int, int]] = field(default_factory=list)
    includes_live: bool = False


@dataclass
class Counters:
    requests: dict[str, int] = field(default_factory=dict)

    def count(self, rpc: str) -> None:
        self.requests[rpc] = self.requests.get(rpc, 0) + 1


class OrderFlowServicer:
    def __init__(
        self,
        settings: Settings,
        storage: StorageSource,
        data: FlowData,
        coverage: CoverageSource,
        composites: CompositeResolver,
        hub: StreamHub | None,
        tick_sizes: dict[InstrumentId, str] | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.data = data
        self.coverage = coverage
        self.composites = composites
        self.hub = hub
        self.counters = Counters()
        self.ticks = TickSizes(settings, storage, tick_sizes)

    # --- request parsing -------------------------------------------------------------------------

    def _candidates(self, composite: str) -> list[InstrumentId]:
        symbol = composite.split(":", 1)[1]
        return [i for i in self.settings.instruments if i.symbol == symbol]

    async def query(self, request: Any, now: int, *, stream: bool = False) -> FlowQuery:
        instruments, composites = parse_instruments(request.instruments, request.composites, self.settings)
        every = list(dict.fromkeys([*instruments, *(c for k in composites for c in self._candidates(k))]))
        ticks = await self.ticks.of(every)
        return parse_query(request, self.settings, now, instruments, composites, ticks, stream=stream)

    # --- data ------------------------------------------------------------------------------------

    async def load(self, q: FlowQuery, now: int) -> tuple[Loaded, list[collector_pb2.Failover]]:
        """Minutes from the anchor's start (for the CVD) to the range's end, and the large trades."""
        pieces: list[tuple[InstrumentId, int, int]] = [(i, q.data_start, q.end) for i in q.instruments]
        resolved = await self.composites.resolve(q.composites, q.data_start, q.end)
        failovers = [r.failover for r in resolved.values()]
        pieces += [(g.instrument, g.start_ms, g.end_ms) for r in resolved.values() for g in r.segments]
        parts = await asyncio.gather(
            *(self.data.minutes(i, a, b, q.grid, now, q.hourly, q.detail_start) for i, a, b in pieces)
        )
        out = Loaded()
        for part in parts:
            out.minutes += part.minutes
            out.includes_live = out.includes_live or part.includes_live
        out.followed = list(dict.fromkeys(i for i, _, _ in pieces))
        out.sources = [
            (i, max(a, q.start), min(b, q.end)) for i, a, b in pieces if min(b, q.end) > max(a, q.start)
        ]
        if q.large_min:
            found = await asyncio.gather(
                *(
                    self.data.large_trades(i, max(a, q.start), b, q.large_min, q.large_min_text, now)
                    for i, a, b in pieces
                    if b > q.start
                )
            )
            out.large = sorted((t for part in found for t in part), key=lambda t: (t.time_ms, t.trade_id))
        return out, failovers

    def _check_rows(self, q: FlowQuery, rows: dict[int, list[int]]) -> None:
        if not rows or not q.include_rows:
            return
        count = (max(rows) - min(rows)) // q.grid.row_units + 1
        limit = self.settings.order_flow_max_rows
        if count > limit:
            raise RequestError(
                "parameters.row_ticks",
                f"a bar would have {count} rows (row size {q.grid.row_size}), above the limit of {limit} "
                f"({env_name('order_flow_max_rows')}); use a larger row size",
            )

    async def get(self, request: pb.GetOrderFlowRequest, now: int) -> pb.GetOrderFlowResponse:
        q = await self.query(request, now)
        loaded, failovers = await self.load(q, now)
        bars = build_bars(q, loaded.minutes, now)
        for bar in bars:
            self._check_rows(q, bar.rows)
        count_large(bars, loaded.large, q.start, q.size_ms)
        result = analyse(q, bars)
        # minutes holding trades (a 1h bar's: a range of 60), gathered in C
        minutes = set(
            itertools.chain.from_iterable(
                m.traded_minutes or (m.start_ms,) for m in loaded.minutes if m.trades or m.rows
            )
        )
        coverage = pb.OrderFlowCoverage()
        figures = await self.coverage.measure(
            loaded.sources, q.start, q.end, now, minutes, loaded.includes_live
        )
        figures.fill(coverage)
        limit = self.settings.order_flow_max_large_trades
        response = pb.GetOrderFlowResponse(
            parameters=echo(q, loaded.followed),
            coverage=coverage,
            large_trades=[large_trade_proto(t) for t in loaded.large[:limit]],
            large_trades_truncated=len(loaded.large) > limit,
            failovers=failovers,
        )
        add_bar = response.bars.add  # each bar made in place (a list passed in is copied)
        for bar, imbalances, zones in zip(bars, result.imbalances, result.zones, strict=True):
            bar_proto(q, bar, imbalances, zones, q.include_rows, add_bar())
        return response

    # --- RPCs ------------------------------------------------------------------------------------

    async def GetOrderFlow(
        self, request: pb.GetOrderFlowRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetOrderFlowResponse:
        self.counters.count("GetOrderFlow")
        try:
            return await self.get(request, now_ms())
        except HANDLED as exc:
            await abort_for(context, exc)
            raise

    async def StreamOrderFlow(
        self, request: pb.StreamOrderFlowRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamOrderFlowResponse]:
        self.counters.count("StreamOrderFlow")
        try:
            q = await self.query(request, now_ms(), stream=True)
            if self.hub is None:
                raise RequestError(
                    "instruments",
                    f"live order flow needs the collector ({env_name('collector_addr')})",
                    grpc.StatusCode.FAILED_PRECONDITION,
                )
            producer = await self.hub.producer(q)
        except HANDLED as exc:
            await abort_for(context, exc)
            raise
        queue: asyncio.Queue[pb.StreamOrderFlowResponse | None] = asyncio.Queue(maxsize=10_000)
        first = producer.subscribe(queue, request.resume_cursor)
        try:
            for message in first:
                yield message
            while True:
                update = await queue.get()
                yield update if update is not None else producer.snapshot()
        finally:
            producer.unsubscribe(queue)
            self.hub.release(producer)


def add_order_flow_service(servicer: OrderFlowServicer, server: grpc.aio.Server) -> None:
    pb_grpc.add_OrderFlowServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
