"""The gRPC services behind the tools: one channel each (addresses from settings), calls with the
bridge's deadline and error mapping, and the catalog of collected instruments used to check keys.

Routing: every tool names its service; the address comes from MARKETDATA_<SERVICE>_ADDR (the chart sets
them), so a partitioned deployment points the bridge at the right instance by configuration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.trace import TracerProvider

from marketdata.core.composite import PREFIX, is_composite
from marketdata.core.config import Settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.mcp.errors import InvalidArgument, from_rpc_error
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import order_flow_service_pb2_grpc as order_flow_grpc
from marketdata.v1 import volume_profile_service_pb2_grpc as volume_profile_grpc

log = logging.getLogger(__name__)

COLLECTOR = "collector"
VOLUME_PROFILE = "volume-profile"
ORDER_FLOW = "order-flow"
CATALOG_TTL_S = 10.0


def service_addresses(settings: Settings) -> dict[str, str]:
    """Where each service is reached: its _ADDR setting, else loopback and its port."""
    return {
        COLLECTOR: settings.collector_addr,
        VOLUME_PROFILE: settings.volume_profile_addr or f"127.0.0.1:{settings.volume_profile_port}",
        ORDER_FLOW: settings.order_flow_addr or f"127.0.0.1:{settings.order_flow_port}",
    }


@dataclass
class Catalog:
    """What the collector collects now: instruments, which have a book, and the composites."""

    instruments: tuple[InstrumentId, ...]
    composites: tuple[str, ...]
    from_collector: bool
    fetched_at: float = field(default_factory=time.monotonic)

    def available(self) -> str:
        keys = [i.key for i in self.instruments] + list(self.composites)
        return ", ".join(keys) if keys else "none"

    @property
    def symbols(self) -> set[str]:
        return {i.symbol for i in self.instruments}


@dataclass
class Selection:
    """Instrument keys of a request split into plain instruments and `best:SYMBOL` composites."""

    instruments: list[InstrumentId]
    composites: list[str]

    @property
    def keys(self) -> list[str]:
        return [i.key for i in self.instruments] + self.composites


class Backends:
    def __init__(self, settings: Settings, tracer_provider: TracerProvider | None = None) -> None:
        self.settings = settings
        self.timeout_s = settings.mcp_backend_timeout_s
        self.addresses = service_addresses(settings)
        self.channels = {name: create_channel(addr, tracer_provider) for name, addr in self.addresses.items()}
        self.collector = collector_grpc.CollectorServiceStub(self.channels[COLLECTOR])  # type: ignore[no-untyped-call]
        self.volume_profile = volume_profile_grpc.VolumeProfileServiceStub(self.channels[VOLUME_PROFILE])  # type: ignore[no-untyped-call]
        self.order_flow = order_flow_grpc.OrderFlowServiceStub(self.channels[ORDER_FLOW])  # type: ignore[no-untyped-call]
        self._catalog: Catalog | None = None

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    async def call(
        self,
        service: str,
        method: Callable[..., Awaitable[Any]],
        request: Message,
        timeout_s: float | None = None,
    ) -> Any:
        """One unary call with the bridge's deadline; failures become tool errors naming the service."""
        deadline = timeout_s or self.timeout_s
        try:
            return await method(request, timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            log.info(
                "backend call failed",
                extra={"service": service, "code": exc.code().name, "details": exc.details()},
            )
            raise from_rpc_error(exc, service, deadline) from None

    async def health(self, service: str) -> str:
        """grpc.health.v1 status of a service ("SERVING", "NOT_SERVING", or "UNREACHABLE: ...")."""
        stub = health_pb2_grpc.HealthStub(self.channels[service])
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=min(self.timeout_s, 2.0)
            )
        except grpc.aio.AioRpcError as exc:
            return f"UNREACHABLE: {exc.code().name}"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def catalog(self) -> Catalog:
        """The collector's instruments and composites, cached for 10 s; when the collector cannot be
        reached, the configured MARKETDATA_INSTRUMENTS (the same ConfigMap feeds every pod)."""
        cached = self._catalog
        if cached is not None and time.monotonic() - cached.fetched_at < CATALOG_TTL_S:
            return cached
        try:
            listed = await self.collector.ListInstruments(
                collector_pb2.ListInstrumentsRequest(), timeout=min(self.timeout_s, 3.0)
            )
            status = await self.collector.GetFeedStatus(
                collector_pb2.GetFeedStatusRequest(), timeout=min(self.timeout_s, 3.0)
            )
            instruments = tuple(InstrumentId.from_proto(i) for i in listed.instruments)
            composites = tuple(sorted(f.composite for f in status.failovers))
            catalog = Catalog(instruments, composites, from_collector=True)
        except grpc.aio.AioRpcError as exc:
            log.info(
                "collector catalog unavailable; using configured instruments", extra={"code": exc.code().name}
            )
            instruments = self.settings.instruments
            catalog = Catalog(instruments, _composites_of(instruments), from_collector=False)
        self._catalog = catalog
        return catalog

    async def select(self, keys: list[str], argument: str, *, composites: bool = True) -> Selection:
        """Check instrument keys against the catalog; errors name the argument and what is available."""
        catalog = await self.catalog()
        selection = Selection([], [])
        for position, raw in enumerate(keys):
            where = f"{argument}[{position}]" if len(keys) > 1 else argument
            text = raw.strip()
            if is_composite(text):
                if not composites:
                    raise InvalidArgument(
                        f"{where}: composites (best:SYMBOL) are not accepted here; give market:SYMBOL"
                    )
                key = PREFIX + text[len(PREFIX) :].strip().upper()
                if key not in catalog.composites:
                    raise InvalidArgument(
                        f"{where}: {key} is not a collected composite; available: {catalog.available()}"
                    )
                if key in selection.composites:
                    raise InvalidArgument(f"{where}: {key} is listed twice")
                selection.composites.append(key)
                continue
            try:
                instrument = InstrumentId.parse(text)
            except ValueError as exc:
                raise InvalidArgument(f"{where}: {exc}; available: {catalog.available()}") from None
            if instrument not in catalog.instruments:
                raise InvalidArgument(
                    f"{where}: {instrument.key} is not collected; available: {catalog.available()}"
                )
            if instrument in selection.instruments:
                raise InvalidArgument(f"{where}: {instrument.key} is listed twice")
            selection.instruments.append(instrument)
        if not selection.keys:
            raise InvalidArgument(
                f"{argument}: give at least one instrument; available: {catalog.available()}"
            )
        return selection


def _composites_of(instruments: tuple[InstrumentId, ...]) -> tuple[str, ...]:
    """Without the collector: the collector keeps a composite for every collected symbol."""
    return tuple(sorted({PREFIX + i.symbol for i in instruments}))
