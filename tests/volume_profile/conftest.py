"""Volume profile under test: real storage (embedded SQLite) and the volume-profile service in-process
on loopback, an independent Decimal oracle of DESIGN's definitions."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from marketdata.core.config import load_settings
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import common_pb2
from marketdata.v1 import volume_profile_service_pb2 as pb
from marketdata.v1 import volume_profile_service_pb2_grpc as pb_grpc
from marketdata.volume_profile.server import VolumeProfileService, start_volume_profile_service
from tests.storage.conftest import Running, running_storage, storage_env

BTC = InstrumentId.parse("binance-futures:BTCUSDT")
BTC_BYBIT = InstrumentId.parse("bybit-linear:BTCUSDT")
TICKS = {BTC: "0.10", BTC_BYBIT: "0.10"}


@dataclass
class Stack:
    storage: Running
    service: VolumeProfileService
    stub: pb_grpc.VolumeProfileServiceStub


@contextlib.asynccontextmanager
async def running_profile(tmp_path: Path, **extra: str) -> AsyncIterator[Stack]:
    env = storage_env(tmp_path, volume_profile_port="0", volume_profile_metrics_port="0", **extra)
    async with running_storage(load_settings(env)) as storage:
        env["MARKETDATA_STORAGE_ADDR"] = storage.address
        settings = load_settings(env)
        service = await start_volume_profile_service(
            settings, process_metrics=False, tick_sizes=TICKS, live=False
        )
        channel = create_channel(f"127.0.0.1:{service.grpc.port}")
        try:
            yield Stack(storage, service, pb_grpc.VolumeProfileServiceStub(channel))  # type: ignore[no-untyped-call]
        finally:
            await channel.close()
            await service.stop(grace=0.5)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_profile(tmp_path) as running:
        yield running


def request(
    instruments: Iterable[InstrumentId], start: int, end: int, **params: object
) -> pb.GetVolumeProfileRequest:
    return pb.GetVolumeProfileRequest(
        instruments=[i.to_proto() for i in instruments],
        range=pb.ProfileRange(start_time_ms=start, end_time_ms=end),
        parameters=pb.ProfileParameters(**params),  # type: ignore[arg-type]
    )


# --- an independent oracle, written plainly from DESIGN ------------------------------------------


def oracle_profile(
    trades: Iterable[common_pb2.Trade], row: str, pct: int = 70, rows_per_step: int = 2
) -> dict:
    step = Decimal(row)
    hist: dict[Decimal, list[Decimal]] = {}
    for t in trades:
        r = (Decimal(t.price) / step).to_integral_value(rounding=ROUND_FLOOR) * step
        cell = hist.setdefault(r, [Decimal(0), Decimal(0)])
        cell[0 if t.side == common_pb2.SIDE_BUY else 1] += Decimal(t.size)
    prices = []
    p = min(hist)
    while p <= max(hist):
        prices.append(p)
        p += step
    rows = [(p, *hist.get(p, [Decimal(0), Decimal(0)])) for p in prices]
    totals = [b + s for _, b, s in rows]
    best = max(totals)
    mid = Fraction(len(totals) - 1, 2)
    ties = [i for i, v in enumerate(totals) if v == best]
    poc = min(ties, key=lambda i: (abs(i - mid), i))
    low = high = poc
    va = totals[poc]
    total = sum(totals)
    while va < Decimal(pct) / 100 * total:
        above = list(range(high + 1, min(high + rows_per_step, len(totals) - 1) + 1))
        below = list(range(max(low - rows_per_step, 0), low))
        if not above and not below:
            break
        a, b = sum(totals[i] for i in above), sum(totals[i] for i in below)
        if not below or (above and a >= b):
            high, va = above[-1], va + a
        else:
            low, va = below[0], va + b
    return {"rows": rows, "poc": prices[poc], "vah": prices[high], "val": prices[low], "total": total}
