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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from marketdata.collector.frames import Frame, FrameError, FrameKind
from marketdata.collector.stats import FeedStats
from marketdata.core.instruments import InstrumentId

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
_ids = itertools.count(1)


class SubscriptionRejected(Exception):
    """The exchange refused a subscription: the configuration or the exchange must change."""


class FrameParser(Protocol):
    def parse(self, text: str | bytes, receive_ns: int) -> Frame: ...


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """What a connection needs to know about its exchange; built by the feed per market."""

    url: str
    subscribe: tuple[str, ...]  # text requests sent after connecting (Bybit); empty for Binance
    ping_interval_s: float
    ping_text: Callable[[int], str] | None  # application-level ping (Bybit); None = WebSocket ping
    parser: FrameParser


TradesSink = Callable[[InstrumentId, list], None]  # type: ignore[type-arg]
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
    ) -> None:
        self.id = next(_ids)
        self._on_book = on_book
        self._on_subscribed = on_subscribed
        self.reader: asyncio.Task[str] | None = None
        self.plan = plan
        self._session = session
        self._stats = stats
        self._on_trades = on_trades
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
        stats = self._stats
        parse = self.plan.parser.parse
        raw_sink = self._raw_sink
        text_type = aiohttp.WSMsgType.TEXT
        observe_latency = stats.latency.observe
        while True:
            message = await ws.receive()
            now_ns = time.time_ns()
            self._last_frame = time.monotonic()
            if message.type is text_type:
                text: str = message.data
                stats.messages += 1
                stats.bytes += len(text)
                stats.last_frame_ns = now_ns
                if raw_sink is not None:
                    raw_sink(now_ns, text)
                try:
                    frame = parse(text, now_ns)
                except FrameError as exc:
                    self._parse_error(str(exc), text)
                    continue
                if frame.kind is FrameKind.TRADES:
                    if not self.subscribed.is_set():
                        # Data proves the subscription even if an acknowledgement was lost or
                        # never sent; mark it first so sequencers see the (re)connect before its trades.
                        self._mark_subscribed()
                    trades = frame.trades
                    if trades:
                        # One latency sample per frame (its last trade), not per trade.
                        observe_latency(now_ns // 1_000_000 - trades[-1].exchange_time_ms)
                        self._on_trades(frame.instrument, trades)  # type: ignore[arg-type]
                        self.first_data.set()
                elif frame.kind is FrameKind.BOOK or frame.kind is FrameKind.BOOK_INVALID:
                    if frame.kind is FrameKind.BOOK and not self.subscribed.is_set():
                        self._mark_subscribed()  # data proves the subscription, as for trades
                    if self._on_book is not None:
                        self._on_book(frame)
                elif frame.kind is not FrameKind.IGNORED:
                    self._control(frame)
            elif message.type is aiohttp.WSMsgType.PING:
                stats.last_frame_ns = now_ns
                await ws.pong(message.data)
            elif message.type is aiohttp.WSMsgType.PONG:
                stats.last_frame_ns = now_ns
            elif message.type is aiohttp.WSMsgType.BINARY:
                stats.messages += 1
                self._parse_error("binary frame on a JSON stream", repr(message.data[:80]))
            else:
                code = ws.close_code
                self.end_reason = self.end_reason or (
                    f"closed by the exchange (code {code})"
                    if code
                    else f"connection lost ({message.type.name})"
                )
                return

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
