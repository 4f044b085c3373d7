"""Resources: reference data an agent reads once rather than calling a tool for (the instrument list,
and how the analytics are computed)."""

from __future__ import annotations

import orjson
from fastmcp import FastMCP

from marketdata.mcp import methodology
from marketdata.mcp.backends import Backends
from marketdata.mcp.tools.system import instrument_info

INSTRUMENTS_URI = "marketdata://instruments"
VOLUME_PROFILE_METHOD_URI = "marketdata://methodology/volume-profile"
ORDER_FLOW_METHOD_URI = "marketdata://methodology/order-flow"


def register(mcp: FastMCP, backends: Backends) -> None:
    @mcp.resource(
        INSTRUMENTS_URI,
        name="instruments",
        title="Collected instruments",
        description="Instrument keys collected now (market:SYMBOL) and failover composites (best:SYMBOL).",
        mime_type="application/json",
    )
    async def instruments() -> str:
        catalog = await backends.catalog()
        return orjson.dumps(
            {
                "instruments": [instrument_info(i).model_dump() for i in catalog.instruments],
                "composites": list(catalog.composites),
            }
        ).decode()

    @mcp.resource(
        VOLUME_PROFILE_METHOD_URI,
        name="methodology-volume-profile",
        title="Volume profile methodology",
        description="How POC, value area, HVN/LVN, naked POCs and coverage are computed, and what each parameter means.",
        mime_type="text/markdown",
    )
    def volume_profile_method() -> str:
        return methodology.VOLUME_PROFILE

    @mcp.resource(
        ORDER_FLOW_METHOD_URI,
        name="methodology-order-flow",
        title="Order flow methodology",
        description="How delta, CVD, diagonal imbalances, stacked imbalance zones and absorption are computed.",
        mime_type="text/markdown",
    )
    def order_flow_method() -> str:
        return methodology.ORDER_FLOW
