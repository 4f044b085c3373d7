"""StorageService over gRPC.

Query responses are assembled from stored bytes (trades are stored already framed as TradeBatch fields,
bars as FootprintBar messages), so their handlers are registered with no response serializer and
send the bytes as they are, like the collector's StreamTrades.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from marketdata.core.config import Settings, env_name, format_duration
from marketdata.core.grpc_server import add_servicer
from marketdata.core.instruments import InstrumentId
from marketdata.core.wire import length_delimited
from marketdata.storage.backends.base import InvalidBatch, StoredBar, StoreUnavailable, TradeWrite
from marketdata.storage.cache import FootprintCache
from marketdata.storage.footprints import BAR_MS, RES_1M, is_plain_decimal, volume_units
from marketdata.storage.store import Store
from marketdata.v1 import order_book_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name
TRADES_PER_MESSAGE = 4096
LAST_TRADES_MAX = 1000  # GetLastTrades: most trades of the newest millisecond returned per instrument
BYTES_PER_MESSAGE = 1024 * 1024


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _page_token(index: int, cursor: tuple[int, int] | None) -> str:
    return f"v1:{index}" + (f":{cursor[0]}:{cursor[1]}" if cursor else "")


def _parse_page_token(token: str, count: int) -> tuple[int, tuple[int, int] | None]:
    parts = token.split(":")
    try:
        if parts[0] != "v1" or len(parts) not in (2, 4):
            raise ValueError
        index = int(parts[1])
        cursor = (int(parts[2]), int(parts[3])) if len(parts) == 4 else None
    except ValueError:
        raise _invalid(f"page_token: {token!r} is not a token this service returned") from None
    if not 0 <= index < count:
        raise _invalid("page_token: does not match the instruments of the request")
    return index, cursor


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class StorageServicer:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        cache: FootprintCache | None = None,
        tick_lookup: Callable[[InstrumentId], Any] | None = None,
        retention: Any = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.cache = cache
        self._tick_lookup = tick_lookup
        self.retention = retention

    # --- validation --------------------------------------------------------------------------------

    def _instrument(self, message: Any, field: str) -> InstrumentId:
        try:
            instrument = InstrumentId.from_proto(message)
        except ValueError as exc:
            raise _invalid(f"{field}: {exc}") from None
        if instrument not in self.store.backend.known_instruments():
            stored = ", ".join(sorted(i.key for i in self.store.backend.known_instruments())) or "none"
            raise _invalid(f"{field}: {instrument.key} is not stored; stored instruments: {stored}")
        return instrument

    def _range(self, start: int, end: int, limit_s: float, setting: str) -> None:
        if start < 0:
            raise _invalid("start_time_ms: must be >= 0")
        if end <= start:
            raise _invalid(f"end_time_ms: must be after start_time_ms ({end} <= {start})")
        if limit_s and (end - start) / 1000 > limit_s:
            raise _invalid(
                f"end_time_ms: the range is {format_duration((end - start) / 1000)}, longer than the limit of "
                f"{format_duration(limit_s)} ({env_name(setting)})"
            )

    @staticmethod
    def _min_size(text: str) -> int:
        """QueryTradesRequest.min_size in volume units (0: no filter)."""
        if not text:
            return 0
        if not is_plain_decimal(text):
            raise _invalid(
                f"min_size: {text!r} must be a plain decimal >= 0 (like 0.5), or empty for every trade"
            )
        return volume_units(text)

    def _limit(self, limit: int) -> int:
        maximum = self.settings.storage_query_max_trades
        if limit > maximum:
            raise _invalid(
                f"limit: {limit} is above the limit of {maximum} ({env_name('storage_query_max_trades')})"
            )
        return limit

    # --- writes ------------------------------------------------------------------------------------

    async def _submit(self, request: storage_pb2.WriteTradesRequest) -> asyncio.Future[Any]:
        try:
            instrument = InstrumentId.from_proto(request.batch.instrument)
        except ValueError as exc:
            return self._failed(InvalidBatch(f"batch.instrument: {exc}"))
        tick = request.tick_size
        if not tick and not self.store.tick_size(instrument):
            if self._tick_lookup is None:
                return self._failed(
                    RequestError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"tick_size: {instrument.key} is new to storage; send its tick size",
                    )
                )
            try:
                tick = await self._tick_lookup(instrument)
            except Exception as exc:
                return self._failed(
                    RequestError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"tick_size: {instrument.key} is new to storage, no tick size was sent and the "
                        f"exchange metadata is unavailable: {exc}",
                    )
                )
        return await self.store.write_trades(TradeWrite(instrument, request.batch.trades, tick))

    @staticmethod
    def _failed(exc: BaseException) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
        return future

    async def _acknowledge(
        self,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
        submit: Callable[[Any], Any],
        respond: Callable[[int, Any], Any],
    ) -> AsyncIterator[Any]:
        acks: asyncio.Queue[tuple[int, asyncio.Future[Any]] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in requests:
                    acks.put_nowait((request.batch_id, await submit(request)))
            finally:
                acks.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await acks.get()) is not None:
                batch_id, future = item
                try:
                    outcome = await future
                except InvalidBatch as exc:
                    context.set_trailing_metadata((("rejected-batch-id", str(batch_id)),))
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch {batch_id}: {exc}")
                except RequestError as exc:
                    context.set_trailing_metadata((("rejected-batch-id", str(batch_id)),))
                    await context.abort(exc.code, f"batch {batch_id}: {exc}")
                except StoreUnavailable as exc:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store cannot commit: {exc}")
                yield respond(batch_id, outcome)
            await reader
        finally:
            reader.cancel()
            # The stream ended early (error, client gone): later batches still commit (or fail); their
            # outcomes have no one to go to.
            while not acks.empty():
                left = acks.get_nowait()
                if left is not None:
                    left[1].add_done_callback(_consume)

    async def WriteTrades(
        self,
        requests: AsyncIterator[storage_pb2.WriteTradesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[storage_pb2.WriteTradesResponse]:
        def respond(batch_id: int, outcome: Any) -> storage_pb2.WriteTradesResponse:
            return storage_pb2.WriteTradesResponse(
                batch_id=batch_id,
                inserted=outcome.inserted,
                duplicates=outcome.duplicates,
                late_bars=outcome.late_bars,
            )

        async for response in self._acknowledge(requests, context, self._submit, respond):
            yield response

    async def WriteBookSnapshots(
        self,
        requests: AsyncIterator[storage_pb2.WriteBookSnapshotsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[storage_pb2.WriteBookSnapshotsResponse]:
        async def submit(request: storage_pb2.WriteBookSnapshotsRequest) -> asyncio.Future[Any]:
            return await self.store.write_snapshots(request.snapshots)

        def respond(batch_id: int, outcome: Any) -> storage_pb2.WriteBookSnapshotsResponse:
            return storage_pb2.WriteBookSnapshotsResponse(
                batch_id=batch_id, inserted=outcome.inserted, duplicates=outcome.duplicates
            )

        async for response in self._acknowledge(requests, context, submit, respond):
            yield response

    # --- queries -----------------------------------------------------------------------------------

    async def QueryTrades(
        self, request: storage_pb2.QueryTradesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        try:
            if not request.instruments:
                raise _invalid("instruments: give at least one instrument")
            instruments = [
                self._instrument(m, f"instruments[{n}]") for n, m in enumerate(request.instruments)
            ]
            for n, instrument in enumerate(instruments):
                if instrument in instruments[:n]:  # else every trade of it would be sent again
                    raise _invalid(f"instruments[{n}]: {instrument.key} is given twice")
            self._range(
                request.start_time_ms,
                request.end_time_ms,
                self.settings.storage_query_max_range,
                "storage_query_max_range",
            )
            limit = self._limit(request.limit)
            min_size = self._min_size(request.min_size)
            index, cursor = (
                _parse_page_token(request.page_token, len(instruments)) if request.page_token else (0, None)
            )
            start, end = request.start_time_ms, request.end_time_ms
            if limit == 0:
                await self._check_count(instruments[index:], start, end, min_size)
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
            return
        held: bytes | None = None  # the last message is held back so that a page token can join it
        left = limit
        next_token = ""
        backend = self.store.backend
        for position in range(index, len(instruments)):
            instrument = instruments[position]
            header = length_delimited(0x0A, instrument.to_proto().SerializeToString())
            after = cursor if position == index else None
            last: tuple[int, int] | None = after
            async for chunk in self.store.iterate(
                backend.read_trades(instrument, start, end, after, left, TRADES_PER_MESSAGE, min_size)
            ):
                if held is not None:
                    yield held
                held = length_delimited(0x0A, header + chunk.framed)
                last = chunk.last
                if left:
                    left -= chunk.count
            if limit and left == 0:
                if await self._more_trades(instruments, position, last, start, end, min_size):
                    next_token = _page_token(position, last)
                break
        if held is not None or next_token:
            message = held or b""
            if next_token:
                message += length_delimited(0x12, next_token.encode())
            yield message

    async def _check_count(
        self, instruments: Sequence[InstrumentId], start: int, end: int, min_size: int
    ) -> None:
        maximum = self.settings.storage_query_max_trades
        total = 0
        for instrument in instruments:
            total += await self.store.run_read(
                self.store.backend.count_trades, instrument, start, end, maximum - total, min_size
            )
            if total > maximum:
                raise _invalid(
                    f"limit: the range holds more than {maximum} trades, the limit "
                    f"({env_name('storage_query_max_trades')}); narrow the range, or set limit and page "
                    "with page_token"
                )

    async def _more_trades(
        self,
        instruments: Sequence[InstrumentId],
        position: int,
        last: tuple[int, int] | None,
        start: int,
        end: int,
        min_size: int,
    ) -> bool:
        backend = self.store.backend

        def probe() -> bool:
            if last is not None:
                rest = backend.read_trades(instruments[position], start, end, last, 1, 1, min_size)
                try:
                    if next(rest, None) is not None:
                        return True
                finally:
                    rest.close()  # type: ignore[attr-defined]
            return any(backend.count_trades(i, start, end, 1, min_size) for i in instruments[position + 1 :])

        return await self.store.run_read(probe)

    async def QueryBookSnapshots(
        self, request: storage_pb2.QueryBookSnapshotsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[storage_pb2.QueryBookSnapshotsResponse]:
        try:
            instrument = self._instrument(request.instrument, "instrument")
            self._range(
                request.start_time_ms,
                request.end_time_ms,
                self.settings.storage_query_max_range,
                "storage_query_max_range",
            )
            limit = self._limit(request.limit)
            if limit == 0:
                maximum = self.settings.storage_query_max_trades
                count = await self.store.run_read(
                    self.store.backend.count_book_snapshots,
                    instrument,
                    request.start_time_ms,
                    request.end_time_ms,
                    maximum,
                )
                if count > maximum:
                    raise _invalid(
                        f"limit: the range holds more than {maximum} snapshots, the limit "
                        f"({env_name('storage_query_max_trades')}); narrow the range or set limit"
                    )
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
            return
        depth = request.depth
        async for chunk in self.store.iterate(
            self.store.backend.read_book_snapshots(
                instrument, request.start_time_ms, request.end_time_ms, limit
            )
        ):
            snapshots = [order_book_pb2.OrderBookSnapshot.FromString(p) for p in chunk]
            if depth:
                for snapshot in snapshots:
                    del snapshot.bids[depth:]
                    del snapshot.asks[depth:]
            yield storage_pb2.QueryBookSnapshotsResponse(snapshots=snapshots)

    async def QueryFootprints(
        self, request: storage_pb2.QueryFootprintsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        try:
            instrument = self._instrument(request.instrument, "instrument")
            self._range(
                request.start_time_ms,
                request.end_time_ms,
                self.settings.storage_footprint_max_range,
                "storage_footprint_max_range",
            )
            resolution = request.resolution or RES_1M
            if resolution not in BAR_MS:
                raise _invalid(f"resolution: {resolution} is not a stored resolution (1M or 1H)")
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
            return
        bars = await self.footprints(instrument, resolution, request.start_time_ms, request.end_time_ms)
        header = length_delimited(0x0A, instrument.to_proto().SerializeToString())
        parts: list[bytes] = [header]
        size = len(header)
        sent = False
        for bar in bars:
            framed = length_delimited(0x12, bar.payload)
            if size + len(framed) > BYTES_PER_MESSAGE and len(parts) > 1:
                yield b"".join(parts)
                sent = True
                parts, size = [header], len(header)
            parts.append(framed)
            size += len(framed)
        if len(parts) > 1 or not sent:
            yield b"".join(parts)

    async def footprints(
        self, instrument: InstrumentId, resolution: int, start: int, end: int
    ) -> list[StoredBar]:
        """Stored bars in [start, end): closed ones from the cache where it has them."""
        size = BAR_MS[resolution]
        if self.cache is None:
            return await self.store.read_footprints(instrument, resolution, start, end)
        first = start + (-start) % size
        closed_end = min(end, FootprintCache.closed_before(int(time.time() * 1000), resolution))
        starts = list(range(first, closed_end, size)) if closed_end > first else []
        cached = await self.cache.get(instrument, resolution, starts) if starts else None
        if cached is None:
            return await self.store.read_footprints(instrument, resolution, start, end)
        found, epoch = cached
        missing = [s for s in starts if s not in found]
        fetched: dict[int, StoredBar] = {}
        if missing:
            rows = await self.store.read_footprints(instrument, resolution, missing[0], missing[-1] + size)
            fetched = {b.start_ms: b for b in rows}
            await self.cache.fill(epoch, instrument, resolution, [(s, fetched.get(s)) for s in missing])
        out = [b for s in starts if (b := found.get(s) or fetched.get(s)) is not None]
        if end > closed_end:
            out += await self.store.read_footprints(instrument, resolution, max(start, closed_end), end)
        return out

    # --- stats and retention -----------------------------------------------------------------------

    async def GetStorageStats(
        self, request: storage_pb2.GetStorageStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> storage_pb2.GetStorageStatsResponse:
        wanted: set[InstrumentId] = set()
        try:
            for n, message in enumerate(request.instruments):
                wanted.add(self._instrument(message, f"instruments[{n}]"))
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
        stats = await self.store.run_read(self.store.backend.stats)
        state = self.store.state
        return storage_pb2.GetStorageStatsResponse(
            collections=[
                s.to_proto()
                for s in sorted(stats, key=lambda s: (s.instrument.key, s.collection))
                if not wanted or s.instrument in wanted
            ],
            backend=self.store.backend.name,
            writable=state.writable,
            last_error=state.last_error,
            store_bytes=await self.store.run_read(self.store.backend.store_bytes),
            disk_free_bytes=max(0, state.disk_free_bytes),
            disk_free_low=state.disk_free_low,
        )

    async def GetLastTrades(
        self, request: storage_pb2.GetLastTradesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """Assembled from the stored framed trades (registered without a response serializer)."""
        backend = self.store.backend
        try:
            instruments: list[InstrumentId] = []
            for n, message in enumerate(request.instruments):
                try:
                    instruments.append(InstrumentId.from_proto(message))
                except ValueError as exc:
                    raise _invalid(f"instruments[{n}]: {exc}") from None
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
        if not request.instruments:
            instruments = sorted(backend.known_instruments(), key=lambda i: i.key)
        out: list[bytes] = []
        try:
            for instrument in dict.fromkeys(instruments):
                framed = await self.store.run_read(backend.last_trades, instrument, LAST_TRADES_MAX)
                if framed:
                    header = length_delimited(0x0A, instrument.to_proto().SerializeToString())
                    out.append(length_delimited(0x0A, header + b"".join(framed)))
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store cannot be read: {exc}")
        return b"".join(out)

    async def ApplyRetention(
        self, request: storage_pb2.ApplyRetentionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> storage_pb2.ApplyRetentionResponse:
        if self.retention is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "retention is not configured")
        try:
            response: storage_pb2.ApplyRetentionResponse = await self.retention.apply(dry_run=request.dry_run)
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store cannot commit: {exc}")
        return response


def add_storage_service(servicer: StorageServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_StorageServiceServicer_to_server, but the query streams send raw bytes."""
    add_servicer(
        servicer,
        server,
        storage_pb2.DESCRIPTOR.services_by_name["StorageService"],
        frozenset({"QueryTrades", "QueryFootprints", "GetLastTrades"}),
    )
