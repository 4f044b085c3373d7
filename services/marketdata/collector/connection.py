"""One exchange WebSocket connection: subscribe, read, keep alive, and notice when it goes stale.

We answer the server's pings ourselves (autoping off) so that every ping and pong counts as a
sign of life; the watchdog closes a connection that shows none for `stale_timeout_s`, which
catches stalls that never close the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from marketdata.collector.frames import Frame, FrameError, FrameKind
from marketdata.collector.stats import FeedStats
from marketdata.collector.trade_runs import FastPart, RunPart, TradeRun
from marketdata.core.instruments import InstrumentId

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
_ids = itertools.count(1)


class SubscriptionRejected(Exception):
    """The exchange refused a subscription: the configuration or the exchange must change."""


class FrameParser(Protocol):
    # The C fast path for the usual trade frame, or None: (key, wire, ids, last_time_ms, last_offset)
    # or None to decline; `fast_keys` maps the key (Binance symbol, Bybit topic) to the instrument.
    @property
    def fast(self) -> Callable[[str | bytes, int], FastPart | None] | None: ...
    @property
    def fast_keys(self) -> Mapping[str, InstrumentId]: ...

    def parse(self, text: str | bytes, receive_ns: int) -> Frame: ...


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """What a connection needs to know about its exchange; built by the feed per market."""

    url: str
    subscribe: tuple[str, ...]  # text requests sent after connecting (Bybit); empty for Binance
    ping_interval_s: float
    ping_text: Callable[[int], str] | None  # application-level ping (Bybit); None = WebSocket ping
    parser: FrameParser


TradesSink = Callable[[InstrumentId, TradeRun], None]
RawSink = Callable[[int, str], None]
BookSink = Callable[[Frame], None]  # BOOK and BOOK_INVALID frames


class FeedConnection:
    def __init__(
        self,
        plan: ConnectionPlan,
        session: aiohttp.ClientSession,
        stats: FeedStats,
        on_trades: TradesSink,
        stale_timeout_s: float,
        raw_sink: RawSink | None = None,
        on_subscribed: Callable[[], None] | None = None,
        on_book: BookSink | None = None,
        on_first_data: Callable[[], None] | None = None,
    ) -> None:
        self.id = next(_ids)
        # Called once, on the first trade or depth frame: for Binance (subscribed by URL) that is the
        # proof the connect worked (collector/feed.py tells the connect breaker).
        self._on_first_data = on_first_data
        self.data_seen = False
        self._on_book = on_book
        self._on_subscribed = on_subscribed
        self.reader: asyncio.Task[str] | None = None
        self.plan = plan
        self._session = session
        self._stats = stats
        self._on_trades = on_trades
        # Read, not yet handed to on_trades: per instrument, each frame's (key, wire, ids, last time,
        # last offset), as the fast path gives them (TradeRun.join_parts makes the run).
        self._pending: dict[InstrumentId, list[RunPart]] = {}
        self._latencies: list[int] = []  # latency samples of the frames of those trades
        self._stale_timeout_s = stale_timeout_s
        self._raw_sink = raw_sink
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._acks_expected = len(plan.subscribe)
        self._last_frame = time.monotonic()
        self._parse_errors_logged = 0
        self.opened_at = 0.0
        self.subscribed = asyncio.Event()
        self.first_data = asyncio.Event()
        self.shutdown_notice = asyncio.Event()
        self.end_reason = ""

    async def open(self) -> None:
        """Connect and send the subscriptions; raises aiohttp/OS errors on failure."""
        self._ws = await self._session.ws_connect(
            self.plan.url,
            autoping=False,
            max_msg_size=MAX_FRAME_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
        )
        self._stats.connections += 1
        self.opened_at = time.monotonic()
        self._last_frame = self.opened_at
        for request in self.plan.subscribe:
            await self._ws.send_str(request)
        if not self.plan.subscribe:
            self._mark_subscribed()

    def _mark_subscribed(self) -> None:
        # Called synchronously when the last acknowledgement is read, before any trade of the new
        # subscription is handled, so sequencers can hold those trades while they backfill.
        if self.subscribed.is_set():
            return
        self.subscribed.set()
        if self._on_subscribed is not None:
            self._on_subscribed()

    async def run(self) -> str:
        """Read until the connection ends; returns why. Raises SubscriptionRejected."""
        tasks = [
            asyncio.create_task(self._read(), name=f"ws-read-{self.id}"),
            asyncio.create_task(self._keepalive(), name=f"ws-keepalive-{self.id}"),
            asyncio.create_task(self._watchdog(), name=f"ws-watchdog-{self.id}"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, SubscriptionRejected):
                    raise exc
                if exc is not None:
                    self.end_reason = self.end_reason or f"{type(exc).__name__}: {exc}"
            return self.end_reason or "closed"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def send_text(self, text: str) -> bool:
        """Send a request on the open connection (e.g. a Bybit resubscription); False if it is closed."""
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        return True

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            self._stats.connections -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=2.0)

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            await self._read_frames(ws)
        finally:
            self._deliver_pending()  # nothing read may be lost when the connection ends

    async def _read_frames(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stats = self._stats
        parser = self.plan.parser
        parse = parser.parse
        # The parser's C fast path, called here directly: a trade frame it takes costs one call and
        # its tuple is kept as it is until the turn's run is made, no Frame, no TradeRun per frame
        # (the Binance stream is one frame per trade).
        fast, fast_keys = parser.fast, parser.fast_keys
        raw_sink = self._raw_sink
        text_type = aiohttp.WSMsgType.TEXT
        trades_kind = FrameKind.TRADES
        add_latency = self._latencies.append
        time_ns, monotonic = time.time_ns, time.monotonic
        # Trades of this event-loop turn per instrument, handed on once per turn (_deliver_pending),
        # so that the sequencer and the bus run once per batch rather than once per frame.
        pending = self._pending
        call_soon = asyncio.get_running_loop().call_soon
        deliver = self._deliver_pending
        last_instrument: InstrumentId | None = None
        last_batch: list[RunPart] = []
        # True once this connection is marked subscribed and has had data: the one-off steps of the
        # first trade frame are then skipped with one local test per frame.
        settled = False
        while True:
            # aiohttp hands out frames already buffered without suspending: a backlog is read in one
            # go, and its trades are delivered when the reader waits for the socket again.
            message = await ws.receive()
            now_ns = time_ns()
            self._last_frame = monotonic()
            if message.type is not text_type:
                if message.type is aiohttp.WSMsgType.PING:
                    stats.last_frame_ns = now_ns
                    await ws.pong(message.data)
                elif not self._other_message(message, now_ns):
                    return
                continue
            text: str = message.data
            stats.messages += 1
            stats.bytes += len(text)
            stats.last_frame_ns = now_ns
            if raw_sink is not None:
                raw_sink(now_ns, text)
            found = fast(text, now_ns) if fast is not None else None
            if found is not None and settled and (instrument := fast_keys.get(found[0])) is not None:
                part: RunPart = found
            else:
                try:
                    frame = parse(text, now_ns)
                except FrameError as exc:
                    self._parse_error(str(exc), text)
                    continue
                if frame.kind is not trades_kind:
                    self._other_frame(frame)
                    continue
                trades = frame.trades
                if not settled:
                    settled = self._settle(bool(trades.ids))
                if not trades.ids or frame.instrument is None:
                    continue
                instrument = frame.instrument
                part = trades.part()
            # One latency sample per frame (its last trade), not per trade; into the histogram with
            # the trades, once per turn.
            add_latency(now_ns // 1_000_000 - part[3])
            if pending and instrument is last_instrument:
                last_batch.append(part)  # a run of one instrument: no hashing
            else:
                batch = pending.get(instrument)
                if batch is None:
                    if not pending:
                        call_soon(deliver)
                    batch = pending[instrument] = [part]
                else:
                    batch.append(part)
                # While `pending` is not empty, last_batch is pending[last_instrument].
                last_instrument, last_batch = instrument, batch

    def _other_frame(self, frame: Frame) -> None:
        """A parsed frame that carries no trades: books, acknowledgements, pongs, notices."""
        if frame.kind is FrameKind.BOOK or frame.kind is FrameKind.BOOK_INVALID:
            if frame.kind is FrameKind.BOOK:
                if not self.subscribed.is_set():
                    self._mark_subscribed()  # data proves the subscription, as for trades
                if not self.data_seen:
                    self._first_data()
            if self._on_book is not None:
                self._on_book(frame)
        elif frame.kind is not FrameKind.IGNORED:
            self._control(frame)

    def _other_message(self, message: aiohttp.WSMessage, now_ns: int) -> bool:
        """A WebSocket message that is neither text nor a ping; False when it ends the connection."""
        ws = self._ws
        if message.type is aiohttp.WSMsgType.PONG:
            self._stats.last_frame_ns = now_ns
        elif message.type is aiohttp.WSMsgType.BINARY:
            self._stats.messages += 1
            self._parse_error("binary frame on a JSON stream", repr(message.data[:80]))
        else:
            code = ws.close_code if ws is not None else None
            self.end_reason = self.end_reason or (
                f"closed by the exchange (code {code})" if code else f"connection lost ({message.type.name})"
            )
            return False
        return True

    def _deliver_pending(self) -> None:
        """Hand the trades read since the last call to the sink, one run per instrument, and
        their frames' latency samples to the feed's histogram."""
        latencies = self._latencies
        if latencies:
            self._stats.latency.observe_many(latencies)
            latencies.clear()
        pending = self._pending
        if pending:
            batches = list(pending.items())
            pending.clear()
            for instrument, parts in batches:
                self._on_trades(instrument, TradeRun.join_parts(parts))

    def _settle(self, has_trades: bool) -> bool:
        """The one-off steps of a trade frame; True once none is left to do on this connection."""
        if not self.subscribed.is_set():
            # Data proves the subscription even if an acknowledgement was lost or never sent; mark
            # it first so sequencers see the (re)connect before its trades.
            self._mark_subscribed()
        if not self.data_seen:
            self._first_data()
        if has_trades:
            self.first_data.set()
        return self.first_data.is_set()

    def _first_data(self) -> None:
        self.data_seen = True
        if self._on_first_data is not None:
            self._on_first_data()

    def _control(self, frame: Frame) -> None:
        if frame.kind is FrameKind.SUBSCRIBED:
            self._acks_expected -= 1
            if self._acks_expected == 0:
                self._mark_subscribed()
        elif frame.kind is FrameKind.REJECTED:
            if self.subscribed.is_set() and "orderbook." in frame.detail:
                # A single order-book topic subscribed again for a fresh snapshot was refused: the
                # book retries on its own; the trades of this connection need not be interrupted.
                self._stats.record_error(
                    f"{self.plan.url}: order-book resubscription refused: {frame.detail}"
                )
                log.warning("order-book resubscription refused", extra={"detail": frame.detail})
                return
            raise SubscriptionRejected(f"{self.plan.url}: subscription refused: {frame.detail}")
        elif frame.kind is FrameKind.SHUTDOWN:
            log.info("exchange announced shutdown of a connection", extra={"url": self.plan.url})
            self.shutdown_notice.set()

    def _parse_error(self, problem: str, text: str) -> None:
        self._stats.parse_errors += 1
        self._parse_errors_logged += 1
        # The first few in full, then one in a thousand: a broken feed must not flood the logs.
        if self._parse_errors_logged <= 5 or self._parse_errors_logged % 1000 == 0:
            log.warning(
                "skipped a frame that could not be parsed",
                extra={
                    "feed": self._stats.feed.value,
                    "problem": problem,
                    "frame": text[:300],
                    "parse_errors": self._stats.parse_errors,
                },
            )

    async def _keepalive(self) -> None:
        ws = self._ws
        assert ws is not None
        for n in itertools.count(1):
            await asyncio.sleep(self.plan.ping_interval_s)
            if self.plan.ping_text is not None:
                await ws.send_str(self.plan.ping_text(n))
            else:
                await ws.ping()

    async def _watchdog(self) -> None:
        interval = min(1.0, self._stale_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            silent = time.monotonic() - self._last_frame
            if silent > self._stale_timeout_s:
                self.end_reason = f"stale: no frame for {silent:.1f} s"
                log.warning(
                    "connection stale; reconnecting", extra={"url": self.plan.url, "silent_s": silent}
                )
                return
