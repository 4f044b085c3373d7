"""Publishing to WebSocket subscribers: generated trades and recorded frames, per market.

Every frame is serialized and framed once per wire form (Binance raw / combined, Bybit) and the same
bytes are queued to every receiving connection; the outbox writes them at the end of the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import orjson

from marketdata.core.capture import RecordedFrame
from marketdata.core.instruments import InstrumentId, MarketKey, parse_symbol
from marketdata.replay_exchange import binance, bybit
from marketdata.replay_exchange.faults import FaultBook
from marketdata.replay_exchange.peers import Hub, Peer, ws_frame
from marketdata.replay_exchange.trades import Tape, Trade


class MarketFeed:
    def __init__(
        self,
        market: MarketKey,
        hub: Hub,
        tape_for: Callable[[InstrumentId], Tape],
        faults: FaultBook,
        trades_per_frame: int,
    ) -> None:
        self.market = market
        self.hub = hub
        self.tape_for = tape_for
        self.faults = faults
        self.trades_per_frame = trades_per_frame
        self.recorded_frames = 0
        self.unroutable_frames = 0  # recorded frames without a stream/topic we could route

    # -- generated trades ---------------------------------------------------------------------------

    def publish_trades(self, tape: Tape, trades: list[Trade]) -> None:
        """Keep the trades for REST and send them to the subscribers of the instrument's trade stream."""
        tape.extend(trades)
        skipped = self.faults.take_skips(tape.instrument, len(trades))
        if skipped:
            tape.skipped += skipped
            trades = trades[skipped:]
        if not trades:
            return
        if self.market.is_binance:
            self._send_binance_trades(tape, trades)
        else:
            self._send_bybit_trades(tape, trades)

    def _send_binance_trades(self, tape: Tape, trades: list[Trade]) -> None:
        symbol = tape.instrument.symbol
        frames = 0
        for stream, payload in (
            (binance.trade_stream(symbol), binance.trade_payload),
            (binance.agg_trade_stream(symbol), binance.agg_trade_payload),
        ):
            peers = self.hub.receivers.get(stream)
            if peers:
                payloads = [payload(self.market, symbol, t) for t in trades]
                self._send_binance_stream(stream, peers, payloads)
                frames += len(payloads) * len(peers)
        if frames:
            self._mark_sent(tape, trades, frames)

    @staticmethod
    def _send_binance_stream(stream: str, peers: Iterable[Peer], payloads: list[bytes]) -> None:
        raw: list[bytes] | None = None
        wrapped: list[bytes] | None = None
        for peer in peers:
            if peer.combined:
                if wrapped is None:
                    head = b'{"stream":"' + stream.encode() + b'","data":'
                    wrapped = [ws_frame(head + p + b"}") for p in payloads]
                peer.queue_many(wrapped)
            else:
                if raw is None:
                    raw = [ws_frame(p) for p in payloads]
                peer.queue_many(raw)

    def _send_bybit_trades(self, tape: Tape, trades: list[Trade]) -> None:
        symbol = tape.instrument.symbol
        peers = self.hub.receivers.get(bybit.trade_topic(symbol))
        if not peers:
            return
        size = self.trades_per_frame
        frames = [
            ws_frame(bybit.trade_frame(self.market, symbol, chunk, chunk[-1].time_ms))
            for chunk in (trades[i : i + size] for i in range(0, len(trades), size))
        ]
        for peer in peers:
            peer.queue_many(frames)
        self._mark_sent(tape, trades, len(frames) * len(peers))

    @staticmethod
    def _mark_sent(tape: Tape, trades: list[Trade], frames: int) -> None:
        # Frames queued in this loop turn are written at its end (peers.py), so the queueing time
        # is the send time to within one turn; it lets benchmarks measure send -> receipt.
        now_ns = time.time_ns()
        for trade in trades:
            if not trade.sent:
                trade.sent = True
                trade.sent_ns = now_ns
        tape.trades_sent += len(trades)
        tape.frames_sent += frames

    # -- recorded frames ----------------------------------------------------------------------------

    def publish_recorded(self, frame: RecordedFrame, keep_history: bool) -> None:
        """Send a recorded frame, unchanged, to the subscribers of its stream or topic.

        `keep_history` adds recorded trades to the REST history (off on later loops, whose ids repeat).
        """
        self.recorded_frames += 1
        if self.market.is_binance:
            self._binance_recorded(frame.text, keep_history)
        else:
            self._bybit_recorded(frame.text, keep_history)

    def _binance_recorded(self, text: str, keep_history: bool) -> None:
        split = binance.split_combined(text)
        explicit = split is not None
        if split is not None:
            stream, payload_text = split
        else:
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                self.unroutable_frames += 1
                return
            if isinstance(value, dict) and isinstance(value.get("stream"), str) and "data" in value:
                stream, payload_text, explicit = value["stream"], orjson.dumps(value["data"]).decode(), True
            else:
                derived = binance.derive_stream(value)
                if derived is None:
                    self.unroutable_frames += 1
                    return
                stream, payload_text = derived, text
        payload = payload_text.encode()
        if stream == binance.SERVER_SHUTDOWN_STREAM:
            self._broadcast_shutdown(text.encode() if explicit else None, payload)
            return
        tape = self._tape_of(stream.partition("@")[0])
        trade = _binance_trade(payload) if stream.endswith("@trade") and tape is not None else None
        if trade is not None and tape is not None and self.faults.take_skips(tape.instrument, 1):
            tape.skipped += 1
            if keep_history:
                tape.append(trade)
            return
        groups = [(stream, self.hub.receivers.get(stream))] if explicit else self.hub.prefixed(stream)
        sent = 0
        for name, peers in groups:
            if not peers:
                continue
            raw_frame: bytes | None = None
            wrapped_frame: bytes | None = None
            for peer in peers:
                if peer.combined:
                    if wrapped_frame is None:
                        exact = explicit and name == stream
                        wrapped_frame = ws_frame(text.encode() if exact else binance.combined(name, payload))
                    peer.queue(wrapped_frame)
                else:
                    if raw_frame is None:
                        raw_frame = ws_frame(payload)
                    peer.queue(raw_frame)
                sent += 1
        self._count_recorded(tape, trade, sent, keep_history)

    def _broadcast_shutdown(self, exact_combined: bytes | None, payload: bytes) -> None:
        wrapped = exact_combined or binance.combined(binance.SERVER_SHUTDOWN_STREAM, payload)
        for peer in self.hub.peers:
            peer.queue(ws_frame(wrapped if peer.combined else payload))

    def _bybit_recorded(self, text: str, keep_history: bool) -> None:
        topic = bybit.frame_topic(text)
        if topic is None:
            self.unroutable_frames += 1
            return
        tape = self._tape_of(bybit.topic_symbol(topic))
        trades: list[Trade] = []
        if topic.startswith("publicTrade.") and tape is not None:
            try:
                trades = bybit.trades_from_frame(orjson.loads(text))
            except orjson.JSONDecodeError:
                trades = []
            if trades and self.faults.take_skips(tape.instrument, len(trades)):
                tape.skipped += len(trades)
                if keep_history:
                    tape.extend(trades)
                return
        peers: set[Peer] = self.hub.receivers.get(topic) or set()
        if peers:
            framed = ws_frame(text.encode())
            for peer in peers:
                peer.queue(framed)
        if tape is None:
            return
        tape.frames_sent += len(peers)
        if trades:
            for trade in trades:
                trade.sent = bool(peers)
            if peers:
                tape.trades_sent += len(trades)
            if keep_history:
                tape.extend(trades)

    def _count_recorded(self, tape: Tape | None, trade: Trade | None, sent: int, keep_history: bool) -> None:
        if tape is None:
            return
        tape.frames_sent += sent
        if trade is not None:
            trade.sent = sent > 0
            if sent:
                tape.trades_sent += 1
            if keep_history:
                tape.append(trade)

    def _tape_of(self, symbol_text: str) -> Tape | None:
        try:
            return self.tape_for(InstrumentId(self.market, parse_symbol(symbol_text)))
        except ValueError:
            return None


def _binance_trade(payload: bytes) -> Trade | None:
    try:
        value = orjson.loads(payload)
        return Trade(int(value["t"]), str(value["p"]), str(value["q"]), not value["m"], int(value["T"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
