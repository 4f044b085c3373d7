"""Applying faults to the running exchange, at once or on their schedule (`at`, `every`, `times`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange import binance
from marketdata.replay_exchange.faults import MALFORMED_VARIANTS, FaultSpec
from marketdata.replay_exchange.generator import InstrumentWalk
from marketdata.replay_exchange.malformed import bad_frame
from marketdata.replay_exchange.peers import Peer, ws_frame
from marketdata.replay_exchange.state import ReplayState


def schedule_faults(state: ReplayState, specs: Iterable[FaultSpec]) -> None:
    """Apply unscheduled faults now and start a timer task for each scheduled one."""
    for spec in specs:
        if spec.at is None and spec.every is None:
            apply_fault(state, spec)
        else:
            state.spawn(_run_schedule(state, spec), f"replay-fault-{spec.kind}")


async def _run_schedule(state: ReplayState, spec: FaultSpec) -> None:
    first = spec.at if spec.at is not None else spec.every or 0.0
    await asyncio.sleep(max(0.0, state.started_at + first - state.now()))
    applied = 0
    while True:
        apply_fault(state, spec)
        applied += 1
        if spec.every is None or (spec.times is not None and applied >= spec.times):
            return
        await asyncio.sleep(spec.every)


def apply_fault(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    """Do what the fault says; returns (and logs) what it touched."""
    action = _ACTIONS[spec.kind]
    detail = action(state, spec)
    state.faults.record(spec, state.uptime(), **detail)
    state.flush()
    return detail


def _peers(state: ReplayState, spec: FaultSpec) -> list[Peer]:
    return [p for m in spec.markets() for p in state.hubs[m].peers if not p.gone]


def _drop(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    peers = _peers(state, spec)
    for peer in peers:
        if spec.mode == "abort":
            peer.abort("fault: drop (abort)")
        else:
            state.spawn(peer.close(spec.code, "replay fault: drop"), "replay-drop")
    return {"connections": len(peers)}


def _skip(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    if spec.instrument is not None:
        instruments = [spec.instrument]
    else:
        markets = spec.markets()
        instruments = [i for i in state.tapes if i.market in markets]
    for instrument in instruments:
        state.faults.skips[instrument] = state.faults.skips.get(instrument, 0) + spec.count
    return {"instruments": [i.key for i in instruments]}


def _malformed(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    now_ms = time.time_ns() // 1_000_000
    peers = _peers(state, spec)
    for peer in peers:
        symbol, last_id = _peer_symbol(state, peer)
        for index in range(spec.count):
            variant = spec.variant or MALFORMED_VARIANTS[index % len(MALFORMED_VARIANTS)]
            peer.queue(bad_frame(variant, peer, symbol, last_id, now_ms))
    return {"connections": len(peers), "frames_each": spec.count}


def _peer_symbol(state: ReplayState, peer: Peer) -> tuple[str, int | str]:
    """A symbol the peer follows (else one the market lists) and its last trade id."""
    symbols = state.symbols(peer.market) or ["BTCUSDT"]
    for name in peer.subscriptions:
        head = name.partition("@")[0] if peer.market.is_binance else name.rpartition(".")[2]
        if head.upper() in symbols:
            symbols = [head.upper()]
            break
    tape = state.find_tape(peer.market, symbols[0])
    last = tape.last() if tape is not None else None
    return symbols[0], last.trade_id if last is not None else 0


def _stall(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    peers = _peers(state, spec)
    until = state.now() + spec.seconds
    for peer in peers:
        peer.stalled_until = max(peer.stalled_until, until)
    return {"connections": len(peers)}


def _ping_timeout(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    peers = _peers(state, spec)
    until = state.now() + spec.seconds
    for peer in peers:
        peer.deaf_until = max(peer.deaf_until, until)
    return {"connections": len(peers)}


def _shutdown(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    peers = [p for p in _peers(state, spec) if p.market.is_binance]
    payload = binance.server_shutdown(time.time_ns() // 1_000_000)
    wrapped = ws_frame(binance.combined(binance.SERVER_SHUTDOWN_STREAM, payload))
    raw = ws_frame(payload)
    for peer in peers:
        peer.queue(wrapped if peer.combined else raw)
    state.spawn(_close_later(peers, spec.seconds), "replay-shutdown")
    return {"connections": len(peers), "close_after_s": spec.seconds}


async def _close_later(peers: list[Peer], delay: float) -> None:
    await asyncio.sleep(delay)
    await asyncio.gather(*(p.close(1001, "server shutdown") for p in peers if not p.gone))


def _max_age(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    markets = [m for m in spec.markets() if m.is_binance]
    for market in markets:
        state.faults.max_age[market] = spec.seconds
    return {"markets": [m.value for m in markets]}


def _reject(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    markets = spec.markets()
    for market in markets:
        state.faults.rejects[market].extend([spec] * spec.count)
    return {"markets": [m.value for m in markets]}


def _rest(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    markets = spec.markets()
    for market in markets:
        state.faults.rest[market].extend([spec] * spec.count)
    return {"markets": [m.value for m in markets]}


def _book(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    if spec.instrument is not None:
        instruments = [spec.instrument]
    else:
        markets = spec.markets()
        instruments = [i for i in state.tapes if i.market in markets]
    applied = state.depth.add_fault(spec.kind, instruments, spec.count, spec.variant)
    return {"instruments": applied}


def _walks(state: ReplayState, spec: FaultSpec) -> list[tuple[InstrumentId, InstrumentWalk]]:
    generator = state.generator
    if generator is None:
        return []  # recordings only: nothing synthetic to delay or move
    markets = spec.markets()
    return [
        (instrument, slot.walk)
        for instrument, slot in generator.slots.items()
        if (spec.instrument is None and instrument.market in markets) or instrument == spec.instrument
    ]


def _lag(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    walks = _walks(state, spec)
    for _, walk in walks:
        walk.lag_ms = int(spec.seconds * 1000)
    return {"instruments": [i.key for i, _ in walks], "lag_ms": int(spec.seconds * 1000)}


def _drift(state: ReplayState, spec: FaultSpec) -> dict[str, Any]:
    walks = _walks(state, spec)
    return {"instruments": [i.key for i, _ in walks], "ticks": [walk.drift(spec.bps) for _, walk in walks]}


_ACTIONS = {
    "drop": _drop,
    "skip": _skip,
    "malformed": _malformed,
    "stall": _stall,
    "ping_timeout": _ping_timeout,
    "shutdown": _shutdown,
    "max_age": _max_age,
    "reject": _reject,
    "rest": _rest,
    "book_gap": _book,
    "book_crossed": _book,
    "book_malformed": _book,
    "book_reset": _book,
    "stale_snapshot": _book,
    "lag": _lag,
    "drift": _drift,
}
