"""What the analytics services (volume profile, order flow) share when reading a request: the error
that names the bad field, the row grid from row_size / row_ticks over the instruments' tick sizes, and
how failures become gRPC status codes."""

from __future__ import annotations

from typing import Any

import grpc

from marketdata.core.analytics.exact import decimals_of, is_plain_decimal, to_units
from marketdata.core.analytics.profile import Grid, is_multiple
from marketdata.core.bar_sources import StorageSource
from marketdata.core.composite import CompositeError, CompositeUnavailable
from marketdata.core.config import Settings
from marketdata.core.instrument_meta import MetadataError, fetch_tick_sizes
from marketdata.core.instruments import InstrumentId

MAX_ROW_TICKS = 1_000_000


class RequestError(Exception):
    """A bad argument: INVALID_ARGUMENT (or another code) with "<field>: <message>"."""

    def __init__(
        self, field_name: str, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
    ) -> None:
        super().__init__(f"{field_name}: {message}")
        self.code = code


# What a handler catches and hands to `abort_for`.
HANDLED = (RequestError, CompositeError, CompositeUnavailable, grpc.aio.AioRpcError, ValueError)


class TickSizes:
    """Each instrument's price tick, from the exchanges' instrument metadata, kept once known.

    When the metadata cannot be reached, the row size storage wrote an instrument's bars with is its
    tick (storage writes 1m bars at the tick). An instrument the metadata does not know is the
    caller's error, named by its position."""

    def __init__(
        self, settings: Settings, storage: StorageSource, known: dict[InstrumentId, str] | None
    ) -> None:
        self.settings = settings
        self.storage = storage
        self._ticks: dict[InstrumentId, str] = dict(known or {})

    async def of(self, instruments: list[InstrumentId]) -> dict[InstrumentId, str]:
        missing = [i for i in instruments if i not in self._ticks]
        if missing:
            try:
                self._ticks.update(await fetch_tick_sizes(self.settings, missing))
            except MetadataError as exc:
                text = str(exc)
                for index, instrument in enumerate(instruments):
                    if text.startswith(instrument.key + ":"):
                        raise RequestError(f"instruments[{index}]", text) from None
                # storage rejects instruments it does not hold: INVALID_ARGUMENT naming them
                self._ticks.update(await self.storage.stored_tick_sizes(missing))
                if not all(i in self._ticks for i in instruments):
                    raise RequestError(
                        "instruments", f"tick sizes unavailable: {text}", grpc.StatusCode.UNAVAILABLE
                    ) from None
        return {i: self._ticks[i] for i in instruments}


def row_grid(row_size: str, row_ticks: int, ticks: dict[InstrumentId, str]) -> tuple[Grid, int, str]:
    """(grid, row_ticks, tick): rows of `row_size`, or else `row_ticks` (0 = 1) times the largest tick
    among the instruments; the row size must be a whole multiple of every instrument's tick. Prices
    print with the finest decimals among the ticks and the row size. RequestError names the field."""
    tick = max(ticks.values(), key=lambda t: to_units(t, 18))
    decimals = max(decimals_of(t) for t in ticks.values())
    if row_size:
        if not is_plain_decimal(row_size) or to_units(row_size, 18) == 0:
            raise RequestError("parameters.row_size", f"must be a plain decimal > 0, got {row_size!r}")
        where = "parameters.row_size"
    else:
        row_ticks = row_ticks or 1
        if row_ticks > MAX_ROW_TICKS:
            raise RequestError("parameters.row_ticks", f"must be within 1..{MAX_ROW_TICKS}, got {row_ticks}")
        base = Grid.of(tick, decimals)
        row_size, where = Grid(base.row_units * row_ticks, base.decimals).row_size, "parameters.row_ticks"
    for instrument, own in ticks.items():
        if not is_multiple(row_size, own):
            raise RequestError(
                where, f"row size {row_size} is not a whole multiple of {instrument.key}'s tick size {own}"
            )
    grid = Grid.of(row_size, decimals)
    return grid, grid.row_units // Grid.of(tick, grid.decimals).row_units, tick


async def abort_for(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    """End the call with the status `exc` stands for; re-raises what it does not know.

    Storage's INVALID_ARGUMENT (an instrument it does not hold) is the caller's error; any other
    storage failure makes the answer UNAVAILABLE, as does a collector that cannot say what a composite
    follows."""
    if isinstance(exc, RequestError):
        await context.abort(exc.code, str(exc))
    if isinstance(exc, CompositeError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, CompositeUnavailable):
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    if isinstance(exc, grpc.aio.AioRpcError):
        details = exc.details() or ""
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"instruments: storage: {details}")
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"storage: {exc.code().name}: {details}")
    if isinstance(exc, ValueError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"parameters: {exc}")
    raise exc
