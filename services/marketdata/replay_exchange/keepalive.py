"""Connection housekeeping, as the exchanges do it: Binance pings and pong deadlines, Binance's
maximum connection age, Bybit's idle cut; also resumes stalled connections when their stall ends."""

from __future__ import annotations

import asyncio
import time

from marketdata.replay_exchange.peers import OP_PING, Peer
from marketdata.replay_exchange.state import ReplayState

# Check at least this often, and at least four times per the shortest configured interval.
MAX_PERIOD_S = 0.25
MIN_PERIOD_S = 0.01


def period(state: ReplayState) -> float:
    config = state.config
    intervals = [
        config.binance_spot_ping_interval_s,
        config.binance_futures_ping_interval_s,
        config.bybit_idle_timeout_s,
    ]
    if config.max_connection_age_s:
        intervals.append(config.max_connection_age_s)
    return max(MIN_PERIOD_S, min(MAX_PERIOD_S, min(intervals) / 4))


async def keep_connections(state: ReplayState) -> None:
    while True:
        await asyncio.sleep(period(state))
        now = state.now()
        for market, hub in state.hubs.items():
            for peer in list(hub.peers):
                if peer.gone or peer.stalled(now):
                    continue  # a stalled server sends nothing and cuts nobody
                if market.is_binance:
                    _binance(state, peer, now)
                else:
                    _bybit(state, peer, now)
        state.outbox.flush(now)


def _binance(state: ReplayState, peer: Peer, now: float) -> None:
    config = state.config
    max_age = state.faults.max_age.get(peer.market, config.max_connection_age_s)
    if max_age and now - peer.opened_at >= max_age:
        state.spawn(peer.close(1001, "connection lifetime exceeded"), "replay-max-age")
        return
    if peer.pings_out and now - min(peer.pings_out.values()) > config.pong_timeout(peer.market):
        state.spawn(peer.close(1008, "pong timeout"), "replay-pong-timeout")
        return
    if now - peer.last_ping_at >= config.ping_interval(peer.market):
        payload = str(time.time_ns() // 1_000_000).encode()
        peer.pings_out[payload] = now
        peer.last_ping_at = now
        peer.send(payload, OP_PING, now)


def _bybit(state: ReplayState, peer: Peer, now: float) -> None:
    # "If there is no ping-pong and no stream data sent from server end, the connection will be cut off."
    if now - max(peer.last_sent, peer.last_client_ping) > state.config.bybit_idle_timeout_s:
        peer.abort("idle: no ping and no data")


def on_pong(peer: Peer, payload: bytes | bytearray) -> None:
    """A pong answers our ping only when it echoes its payload; unsolicited pongs do not count."""
    sent_at = peer.pings_out.get(bytes(payload))
    if sent_at is None:
        return
    for key, at in list(peer.pings_out.items()):
        if at <= sent_at:
            del peer.pings_out[key]
