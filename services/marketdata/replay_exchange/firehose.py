"""Firehose mode (`--firehose`): each generated instrument's trades offered as fast as its subscribers
read them, for benchmarks that need an exchange faster than any client.

The paced generator builds a Trade object and a JSON document per trade (several microseconds), so
one exchange process cannot outrun a good client. Here a block of BLOCK trades is rendered once per
wire form with the real payload functions (binance.py, bybit.py: byte-for-byte the paced shapes),
and the values that change from block to block are swapped for `%s` slots: the timestamps and the
high digits of the trade id and of Bybit's `seq`. Ids are `<high><3 baked digits>`, so a live block
costs one `bytes % tuple` (C speed, under 0.1 us a trade) and ids stay consecutive per instrument
across blocks: block n carries ids (first_high + n) * 1000 + 0..999.
Prices and sizes come from the seeded random walk and repeat every POOL blocks.

A block goes to each receiving connection in one transport write; once the transport's buffer
passes its high-water mark the instrument waits for it to drain (asyncio flow control), so a slow
reader holds the instrument back instead of growing the exchange's memory, and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange import binance, bybit
from marketdata.replay_exchange.generator import InstrumentWalk
from marketdata.replay_exchange.peers import Hub, Peer, ws_frame
from marketdata.replay_exchange.trades import Tape, Trade

LOW_DIGITS = 3  # id digits baked into a block's template
BLOCK = 10**LOW_DIGITS  # trades per block (one transport write per receiving connection)
POOL = 4  # distinct blocks of prices and sizes, cycled
# Transport buffer (bytes not yet taken by the kernel) above which an instrument waits for drain;
# with the 4 MiB socket buffer (accept.py) a reader is never starved between two event-loop turns.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
IDLE_S = 0.02  # how often an instrument without receivers looks again

# Never in orjson output (valid UTF-8 has no 0xfe/0xff) nor in a WebSocket header followed by JSON.
MARK_TS = b"\xff\xfeTS\xfe\xff"
MARK_ID = b"\xff\xfeID\xfe\xff"
MARK_SEQ = b"\xff\xfeSQ\xfe\xff"
_MARKS = (MARK_TS, MARK_ID, MARK_SEQ)  # positions in the values tuple a block is filled from
_MARK = re.compile(b"|".join(re.escape(m) for m in _MARKS))


@dataclass(frozen=True, slots=True)
class Form:
    """One wire form of an instrument's trades: Binance stream kind and wrapping, or Bybit's topic."""

    stream: str  # the stream or topic name subscribers are indexed by
    aggregated: bool = False  # Binance @aggTrade
    combined: bool = False  # Binance {"stream":..,"data":..} wrapping


# Picks a block's %-format arguments, in order, from (ts, id_high, seq_high).
Picker = Callable[[tuple[bytes, bytes, bytes]], tuple[bytes, ...]]


@dataclass
class Template:
    """BLOCK trades of one form as %-format strings: `blocks[i] % pickers[i]((ts, id_high, seq_high))`.

    One `%` with a tuple picked in C (operator.itemgetter) costs about a third of what three
    `bytes.replace` passes cost: CPython's replace pays per occurrence, and there are 3000 a block."""

    blocks: list[bytes]  # POOL format strings
    pickers: list[Picker]
    frame_ends: list[list[tuple[int, int]]]  # per template: (byte offset after a frame, trades so far)
    id_width: int
    seq_width: int


@dataclass
class FirehoseStats:
    trades: int = 0
    blocks: int = 0
    drain_waits: int = 0
    drain_wait_s: float = 0.0
    max_buffered_bytes: int = 0  # the largest transport buffer seen right after a write
    waiting: bool = False  # now waiting for a slow connection to drain
    wait_began: float = 0.0  # time.monotonic() when the current wait began

    def describe(self) -> dict[str, object]:
        waited = self.drain_wait_s + (time.monotonic() - self.wait_began if self.waiting else 0.0)
        return {
            "trades": self.trades,
            "blocks": self.blocks,
            "drain_waits": self.drain_waits,
            "drain_wait_s": round(waited, 3),  # the current wait included
            "max_buffered_bytes": self.max_buffered_bytes,
            "waiting_for_drain": self.waiting,
        }


@dataclass
class InstrumentFirehose:
    """The block counter, templates and counters of one instrument."""

    walk: InstrumentWalk
    trades_per_frame: int
    max_trades: int | None
    first_id_high: int
    first_seq_high: int
    uuid_prefix: str  # Bybit linear: the constant first 24 characters of every id
    block_number: int = 0
    templates: dict[Form, Template] = field(default_factory=dict)
    stats: FirehoseStats = field(default_factory=FirehoseStats)
    task: asyncio.Task[None] | None = None

    @property
    def market(self) -> MarketKey:
        return self.walk.market

    @property
    def symbol(self) -> str:
        return self.walk.spec.instrument.symbol

    def forms(self) -> list[Form]:
        symbol = self.symbol
        if self.market.is_binance:
            return [
                Form(binance.trade_stream(symbol), aggregated=False),
                Form(binance.agg_trade_stream(symbol), aggregated=True),
            ]
        return [Form(bybit.trade_topic(symbol))]

    def id_high_text(self, number: int) -> bytes:
        high = self.first_id_high + number
        # Bybit linear ids end in 12 hex characters: a zero-padded decimal counter is valid hex.
        return (b"%09d" % high) if self.market == MarketKey.BYBIT_LINEAR else b"%d" % high

    def seq_high_text(self, number: int) -> bytes:
        return b"%d" % (self.first_seq_high + number)

    def template(self, form: Form, id_width: int, seq_width: int) -> Template:
        found = self.templates.get(form)
        if found is None or found.id_width != id_width or found.seq_width != seq_width:
            found = self.templates[form] = self._render(form, id_width, seq_width)
        return found

    def _render(self, form: Form, id_width: int, seq_width: int) -> Template:
        # Representative highs of the live widths: every occurrence is replaced by a marker.
        id_high = b"1" * id_width
        seq_high = b"1" * seq_width
        time_ms = time.time_ns() // 1_000_000
        ts = b"%d" % time_ms
        blocks: list[bytes] = []
        pickers: list[Picker] = []
        ends: list[list[tuple[int, int]]] = []
        for _ in range(POOL):
            trades = self.walk.next_trades(BLOCK, time_ms)
            for low, trade in enumerate(trades):
                digits = id_high + b"%03d" % low
                if self.market == MarketKey.BYBIT_LINEAR:
                    trade.trade_id = self.uuid_prefix + digits.decode()
                elif self.market == MarketKey.BYBIT_SPOT:
                    trade.trade_id = digits.decode()
                else:
                    trade.trade_id = int(digits)
                trade.bybit_seq = int(seq_high + b"%03d" % low)
            frames = self._frames(form, trades, time_ms)
            block, frame_ends = b"".join(f for f, _ in frames), []
            offset = done = 0
            for frame, count in frames:
                offset += len(frame)
                done += count
                frame_ends.append((offset, done))
            marked = self._mark(block, ts, id_high, seq_high, form)
            kinds = [_MARKS.index(m.group()) for m in _MARK.finditer(marked)]
            blocks.append(_MARK.sub(b"%s", marked.replace(b"%", b"%%")))
            pickers.append(cast(Picker, operator.itemgetter(*kinds)))
            ends.append(frame_ends)
        return Template(blocks, pickers, ends, id_width, seq_width)

    def _frames(self, form: Form, trades: list[Trade], time_ms: int) -> list[tuple[bytes, int]]:
        symbol, market = self.symbol, self.market
        if market.is_binance:
            render = binance.agg_trade_payload if form.aggregated else binance.trade_payload
            out = []
            for trade in trades:
                payload = render(market, symbol, trade)
                if form.combined:
                    payload = binance.combined(form.stream, payload)
                out.append((ws_frame(payload), 1))
            return out
        size = self.trades_per_frame
        return [
            (
                ws_frame(bybit.trade_frame(market, symbol, trades[i : i + size], time_ms)),
                len(trades[i : i + size]),
            )
            for i in range(0, len(trades), size)
        ]

    def _mark(self, block: bytes, ts: bytes, id_high: bytes, seq_high: bytes, form: Form) -> bytes:
        """Swap the changing values for markers, keyed by their JSON field so nothing else matches;
        the counts are checked so a shape change in binance.py/bybit.py cannot go unnoticed."""
        if self.market.is_binance:
            ts_keys = (b"E", b"T")
            id_fields = [
                b'"%s":%s' % (key, id_high) for key in ((b"a", b"f", b"l") if form.aggregated else (b"t",))
            ]
            seq_fields: list[bytes] = []
        else:
            ts_keys = (b"ts", b"T")
            prefix = self.uuid_prefix.encode() if self.market == MarketKey.BYBIT_LINEAR else b""
            id_fields = [b'"i":"' + prefix + id_high]
            seq_fields = [b'"seq":' + seq_high]
        frames = BLOCK if self.market.is_binance else -(-BLOCK // self.trades_per_frame)
        expected_ts = 2 * BLOCK if self.market.is_binance else BLOCK + frames
        for key in ts_keys:
            block = block.replace(b'"%s":%s' % (key, ts), b'"%s":%s' % (key, MARK_TS))
        for found in id_fields:
            block = block.replace(found, found[: -len(id_high)] + MARK_ID)
        for found in seq_fields:
            block = block.replace(found, found[: -len(seq_high)] + MARK_SEQ)
        counts = (block.count(MARK_TS), block.count(MARK_ID), block.count(MARK_SEQ))
        if counts != (expected_ts, BLOCK * len(id_fields), BLOCK * len(seq_fields)):
            raise RuntimeError(f"firehose template of {form.stream} has unexpected markers {counts}")
        return block


class Firehose:
    """Runs one pump per generated instrument once its trade stream or topic has a subscriber."""

    def __init__(self, hubs: dict[MarketKey, Hub], trades_per_frame: int, max_trades: int | None) -> None:
        self.hubs = hubs
        self.trades_per_frame = trades_per_frame
        self.max_trades = max_trades
        self.instruments: dict[InstrumentId, InstrumentFirehose] = {}

    def add(self, walk: InstrumentWalk) -> None:
        rng = walk.rng
        first_id = walk.next_int_id if walk.market.is_binance else walk.next_spot_id
        uuid_prefix = ""
        if walk.market == MarketKey.BYBIT_LINEAR:
            text = f"{rng.getrandbits(96):024x}"
            uuid_prefix = (
                f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{'89ab'[int(text[16], 16) & 3]}{text[17:20]}-"
            )
            first_id = rng.randrange(10**11, 8 * 10**11)  # the counter's 12 hex digits stay 12
        self.instruments[walk.spec.instrument] = InstrumentFirehose(
            walk,
            self.trades_per_frame,
            self.max_trades,
            first_id_high=-(-first_id // BLOCK),
            first_seq_high=-(-walk.seq // BLOCK),
            uuid_prefix=uuid_prefix,
        )

    def start(self, instrument: InstrumentId, tape: Tape, delay: float) -> None:
        hose = self.instruments.get(instrument)
        if hose is not None and hose.task is None:
            hose.task = asyncio.get_running_loop().create_task(
                self._pump(hose, tape, delay), name=f"replay-firehose-{instrument.key}"
            )

    async def stop(self) -> None:
        tasks = [h.task for h in self.instruments.values() if h.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def describe(self) -> dict[str, object]:
        return {i.key: h.stats.describe() for i, h in self.instruments.items() if h.task is not None}

    async def _pump(self, hose: InstrumentFirehose, tape: Tape, delay: float) -> None:
        await asyncio.sleep(delay)
        hub = self.hubs[hose.market]
        forms = hose.forms()
        stats = hose.stats
        while hose.max_trades is None or stats.trades < hose.max_trades:
            targets = [(form, peer) for form in forms for peer in hub.receivers.get(form.stream, ())]
            targets = [(f, p) for f, p in targets if not (p.gone or p.ws.closed or p.transport.is_closing())]
            if not targets:
                await asyncio.sleep(IDLE_S)
                continue
            sent = self._write_block(hose, tape, targets)
            if sent == 0:
                return
            for _, peer in targets:
                await self._drain(peer, stats)
            await asyncio.sleep(0)  # let reads (pings, requests) and the control API in

    def _write_block(self, hose: InstrumentFirehose, tape: Tape, targets: list[tuple[Form, Peer]]) -> int:
        number = hose.block_number
        id_high, seq_high = hose.id_high_text(number), hose.seq_high_text(number)
        ts = b"%d" % (time.time_ns() // 1_000_000)
        stats = hose.stats
        left = BLOCK if hose.max_trades is None else min(BLOCK, hose.max_trades - stats.trades)
        rendered: dict[Form, tuple[bytes, int, int]] = {}
        for form, peer in targets:
            if peer.combined != form.combined and hose.market.is_binance:
                form = Form(form.stream, form.aggregated, peer.combined)
            chunk = rendered.get(form)
            if chunk is None:
                template = hose.template(form, len(id_high), len(seq_high))
                pick = number % POOL
                data = template.blocks[pick] % template.pickers[pick]((ts, id_high, seq_high))
                chunk = rendered[form] = _cut(data, template.frame_ends[pick], left)
            data, trades, frames = chunk
            if trades:
                peer.transport.write(data)
                peer.frames_sent += frames
                tape.frames_sent += frames
                stats.max_buffered_bytes = max(
                    stats.max_buffered_bytes, peer.transport.get_write_buffer_size()
                )
        trades = max((c[1] for c in rendered.values()), default=0)
        hose.block_number += 1
        stats.trades += trades
        stats.blocks += 1
        tape.total += trades
        tape.trades_sent += trades
        return trades

    @staticmethod
    async def _drain(peer: Peer, stats: FirehoseStats) -> None:
        """Wait while the connection's transport is over its high-water mark (asyncio flow control:
        aiohttp's protocol is paused and resumed by the transport)."""
        transport = peer.transport
        if transport.get_write_buffer_size() <= HIGH_WATER:
            return
        protocol = transport.get_protocol()
        drain = getattr(protocol, "_drain_helper", None)  # aiohttp's BaseProtocol: awaits resume_writing
        stats.drain_waits += 1
        stats.waiting = True
        stats.wait_began = began = time.monotonic()
        try:
            while not (peer.gone or transport.is_closing()) and transport.get_write_buffer_size() > LOW_WATER:
                if drain is not None and getattr(protocol, "writing_paused", False):
                    await drain()
                else:
                    await asyncio.sleep(0.001)
        except ConnectionError:
            pass  # the connection went away while waiting: the next block skips it
        finally:
            stats.waiting = False
            stats.drain_wait_s += time.monotonic() - began


def configure_flow_control(transport: object) -> None:
    """Pause at HIGH_WATER, resume at LOW_WATER (asyncio calls the protocol's pause/resume_writing)."""
    setter = getattr(transport, "set_write_buffer_limits", None)
    if setter is not None:
        setter(high=HIGH_WATER, low=LOW_WATER)


def _cut(data: bytes, frame_ends: list[tuple[int, int]], left: int) -> tuple[bytes, int, int]:
    """The block, or its first whole frames holding at most `left` trades (the --max-trades end):
    (bytes, trades, frames)."""
    total = frame_ends[-1][1]
    if left >= total:
        return data, total, len(frame_ends)
    offset = trades = frames = 0
    for end, done in frame_ends:
        if done > left:
            break
        offset, trades, frames = end, done, frames + 1
    return data[:offset], trades, frames
