"""Connected WebSocket clients (peers), the per-market subscription index (hub) and the outbox.

Data frames are framed once (RFC 6455 header + payload, server frames are unmasked) and the same bytes
are queued to every subscriber; each event-loop turn's queue goes to the socket in one transport write.
That is what lets one Python process push hundreds of thousands of frames a second, where one
`await ws.send_str()` per frame caps near a hundred thousand. It is safe next to aiohttp's own writer
because compression is off for our sockets and aiohttp writes uncompressed frames synchronously, so
frames never interleave; once aiohttp starts closing (`ws.closed`) we stop writing.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from marketdata.core.instruments import MarketKey

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_PING = 0x9
OP_PONG = 0xA

_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def ws_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One complete, final, unmasked WebSocket frame."""
    first = 0x80 | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _HEADER_16(first, 126, size) + payload
    return _HEADER_64(first, 127, size) + payload


class Outbox:
    """Peers with queued bytes; flushed after every batch of produced frames."""

    def __init__(self) -> None:
        self.dirty: set[Peer] = set()

    def flush(self, now: float) -> None:
        if not self.dirty:
            return
        waiting: set[Peer] = set()
        for peer in self.dirty:
            if not peer.flush(now):
                waiting.add(peer)
        self.dirty = waiting


class Peer:
    """One accepted WebSocket connection."""

    def __init__(
        self,
        *,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        outbox: Outbox,
        market: MarketKey,
        route: str,
        path: str,
        conn_id: str,
        combined: bool,
        now: float,
        max_buffer: int,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.outbox = outbox
        self.market = market
        self.route = route  # "spot", "public", "market" (Binance) or "v5" (Bybit)
        self.path = path
        self.conn_id = conn_id
        self.combined = combined  # Binance: {"stream":..,"data":..} wrapping
        self.max_buffer = max_buffer
        self.subscriptions: list[str] = []  # as the client asked, in order (LIST_SUBSCRIPTIONS)
        self.pending: list[bytes] = []
        self.held_bytes = 0  # bytes of `pending` counted while stalled
        self.held_counted = 0  # how many of `pending` are in held_bytes
        self.stalled_until = 0.0
        self.deaf_until = 0.0  # ping_timeout fault: the client's keepalives are lost until then
        self.opened_at = now
        self.last_sent = now
        self.last_client_ping = now
        self.pings_out: dict[bytes, float] = {}  # our unanswered ping payloads -> sent at
        self.last_ping_at = now
        self.incoming: deque[float] = deque()  # receive times within the last second (rate limit)
        self.frames_sent = 0
        self.gone = False  # closing or closed: never write again
        self.close_reason = ""

    def queue(self, frame: bytes) -> None:
        self.pending.append(frame)
        self.outbox.dirty.add(self)

    def queue_many(self, frames: list[bytes]) -> None:
        self.pending.extend(frames)
        self.outbox.dirty.add(self)

    def send(self, payload: bytes, opcode: int = OP_TEXT, now: float = 0.0) -> None:
        """Queue one frame behind any queued data and write now (unless stalled)."""
        self.queue(ws_frame(payload, opcode))
        self.flush(now or asyncio.get_running_loop().time())

    def stalled(self, now: float) -> bool:
        return now < self.stalled_until

    def deaf(self, now: float) -> bool:
        """True while the client's pings and pongs are lost (ping_timeout fault)."""
        return now < self.deaf_until

    def flush(self, now: float) -> bool:
        """Write queued frames; False while a stall holds them back."""
        if not self.pending:
            return True
        if self.gone or self.ws.closed or self.transport.is_closing():
            self.pending.clear()
            return True
        if now < self.stalled_until:
            # Count only frames queued since the last look, so a long stall stays O(frames).
            self.held_bytes += sum(map(len, self.pending[self.held_counted :]))
            self.held_counted = len(self.pending)
            if self.held_bytes > self.max_buffer:
                self.abort("send buffer over limit while stalled")
                return True
            return False
        self.held_bytes = self.held_counted = 0
        count = len(self.pending)
        data = b"".join(self.pending) if count > 1 else self.pending[0]
        self.pending.clear()
        self.transport.write(data)
        self.frames_sent += count
        self.last_sent = now
        if self.transport.get_write_buffer_size() > self.max_buffer:
            # A real exchange cuts consumers that do not read; so do we, instead of growing forever.
            self.abort("slow consumer: send buffer over limit")
        return True

    def abort(self, reason: str) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        if not self.gone:
            self.gone = True
            self.close_reason = reason
        self.pending.clear()
        self.transport.abort()

    async def close(self, code: int, message: str) -> None:
        """Close with a close frame; data still queued is discarded, as on a real cut."""
        if self.gone:
            return
        self.gone = True
        self.close_reason = f"{code} {message}"
        self.pending.clear()
        try:
            await self.ws.close(code=code, message=message.encode())
        except (ConnectionError, RuntimeError):
            self.transport.abort()

    def describe(self, now: float) -> dict[str, object]:
        return {
            "conn_id": self.conn_id,
            "path": self.path,
            "route": self.route,
            "combined": self.combined,
            "subscriptions": list(self.subscriptions),
            "age_s": round(now - self.opened_at, 3),
            "frames_sent": self.frames_sent,
            "buffered_bytes": 0 if self.gone else self.transport.get_write_buffer_size(),
            "stalled": self.stalled(now),
        }


@dataclass
class Hub:
    """The connections of one market and who receives which stream (Binance) or topic (Bybit)."""

    market: MarketKey
    peers: set[Peer] = field(default_factory=set)
    receivers: dict[str, set[Peer]] = field(default_factory=dict)
    connections_opened: int = 0
    first_subscription: asyncio.Event = field(default_factory=asyncio.Event)
    on_subscribe: Callable[[str], None] | None = None  # told each new subscription name
    on_peer_subscribe: Callable[[Peer, str], None] | None = None  # told each delivering subscription

    def add(self, peer: Peer) -> None:
        self.peers.add(peer)
        self.connections_opened += 1

    def remove(self, peer: Peer) -> None:
        self.peers.discard(peer)
        for name in peer.subscriptions:
            self._drop_receiver(name, peer)
        peer.gone = True

    def subscribe(self, peer: Peer, name: str, delivers: bool) -> bool:
        """Record a subscription; `delivers=False` keeps it listed but never sends it data
        (a USD-M stream asked on the wrong route). False if it was already there."""
        self.first_subscription.set()
        if name in peer.subscriptions:
            return False
        peer.subscriptions.append(name)
        if delivers:
            self.receivers.setdefault(name, set()).add(peer)
        if self.on_subscribe is not None:
            self.on_subscribe(name)
        if delivers and self.on_peer_subscribe is not None:
            self.on_peer_subscribe(peer, name)
        return True

    def unsubscribe(self, peer: Peer, name: str) -> bool:
        if name not in peer.subscriptions:
            return False
        peer.subscriptions.remove(name)
        self._drop_receiver(name, peer)
        return True

    def _drop_receiver(self, name: str, peer: Peer) -> None:
        group = self.receivers.get(name)
        if group is not None:
            group.discard(peer)
            if not group:
                del self.receivers[name]

    def prefixed(self, base: str) -> list[tuple[str, set[Peer]]]:
        """Subscriptions that `base` stands for: itself and its variants (`x@depth` -> `x@depth@100ms`)."""
        return [
            (name, group)
            for name, group in self.receivers.items()
            if name == base or name.startswith(base + "@")
        ]

    def all_subscriptions(self) -> list[str]:
        seen: dict[str, None] = {}
        for peer in self.peers:
            for name in peer.subscriptions:
                seen[name] = None
        return sorted(seen)
