"""The control API under /_replay/ that tests and benchmarks use to observe and steer the exchange.

GET  /_replay/status                      connections, subscriptions, counters, faults
GET  /_replay/trades?instrument=<key>     every retained trade of an instrument, in order
GET  /_replay/book?instrument=<key>       the synthetic book of an instrument now (every level, best first)
POST /_replay/faults                      {"kind": "drop", "market": "binance-spot", ...}
POST /_replay/generator                   {"action": "pause"|"resume"|"start", "rate": 5000, "instrument": key}
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.fault_actions import apply_fault, schedule_faults
from marketdata.replay_exchange.faults import parse_fault
from marketdata.replay_exchange.state import ReplayState


def routes(state: ReplayState) -> list[web.RouteDef]:
    async def status(request: web.Request) -> web.StreamResponse:
        return _json(status_of(state))

    async def trades(request: web.Request) -> web.StreamResponse:
        return _trades(state, request)

    async def faults(request: web.Request) -> web.StreamResponse:
        return await _post_fault(state, request)

    async def book(request: web.Request) -> web.StreamResponse:
        return _book(state, request)

    async def generator(request: web.Request) -> web.StreamResponse:
        return await _post_generator(state, request)

    return [
        web.get("/_replay/status", status),
        web.get("/_replay/trades", trades),
        web.get("/_replay/book", book),
        web.post("/_replay/faults", faults),
        web.post("/_replay/generator", generator),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _bad(message: str) -> web.Response:
    return _json({"error": message}, 400)


def status_of(state: ReplayState) -> dict[str, Any]:
    now = state.now()
    markets: dict[str, Any] = {}
    for market, hub in state.hubs.items():
        feed = state.feeds[market]
        markets[market.value] = {
            "connections": len(hub.peers),
            "connections_opened": hub.connections_opened,
            "subscriptions": hub.all_subscriptions(),
            "peers": [p.describe(now) for p in sorted(hub.peers, key=lambda p: p.opened_at)],
            "symbols": state.symbols(market),
            "rest_calls": state.rest_calls[market.value],
            "recorded_frames": feed.recorded_frames,
            "unroutable_frames": feed.unroutable_frames,
        }
    instruments = {
        instrument.key: {
            "trades": tape.total,
            "trades_sent": tape.trades_sent,
            "frames_sent": tape.frames_sent,
            "skipped": tape.skipped,
            "retained": tape.total - tape.evicted,
            "last_id": last.trade_id if (last := tape.last()) is not None else None,
        }
        for instrument, tape in state.tapes.items()
    }
    return {
        "uptime_s": round(state.uptime(), 3),
        "markets": markets,
        "instruments": instruments,
        "generator": _generator_status(state),
        "firehose": state.firehose.describe() if state.firehose is not None else None,
        "recordings": [t.describe() for t in state.timelines],
        "depth": state.depth.describe(),
        "faults": {
            "counts": dict(state.faults.counts),
            "pending": state.faults.pending(),
            "applied": list(state.faults.applied),
        },
    }


def _generator_status(state: ReplayState) -> dict[str, Any] | None:
    generator = state.generator
    if generator is None:
        return None
    return {
        "paused": generator.paused,
        "rate": generator.rate,
        "instruments": {
            instrument.key: {
                "rate": slot.rate,
                "generated": slot.generated,
                "started": slot.started_at is not None,
                "done": slot.done,
            }
            for instrument, slot in generator.slots.items()
        },
    }


def _trades(state: ReplayState, request: web.Request) -> web.Response:
    text = request.query.get("instrument", "")
    try:
        instrument = InstrumentId.parse(text)
    except ValueError as exc:
        return _bad(f"instrument: {exc}")
    tape = state.tapes.get(instrument)
    if tape is None:
        return _json({"error": f"instrument {instrument} is not served"}, 404)
    return _json(
        {
            "instrument": instrument.key,
            "evicted": tape.evicted,
            "trades": [t.to_control() for t in tape.all()],
        }
    )


def _book(state: ReplayState, request: web.Request) -> web.Response:
    text = request.query.get("instrument", "")
    try:
        instrument = InstrumentId.parse(text)
    except ValueError as exc:
        return _bad(f"instrument: {exc}")
    book = state.depth.books.get(instrument)
    if book is None:
        return _json({"error": f"instrument {instrument} has no synthetic book (yet)"}, 404)
    bids, asks = book.top(10**6)
    return _json({"instrument": instrument.key, "update_id": book.update_id, "bids": bids, "asks": asks})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        value = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("body must be a JSON object")
    return value


async def _post_fault(state: ReplayState, request: web.Request) -> web.Response:
    try:
        spec = parse_fault(await _body(request))
    except ValueError as exc:
        return _bad(str(exc))
    if spec.at is None and spec.every is None:
        detail = apply_fault(state, spec)
        return _json({"ok": True, "fault": spec.to_dict(), "applied": detail})
    schedule_faults(state, [spec])
    return _json({"ok": True, "fault": spec.to_dict(), "scheduled": True})


async def _post_generator(state: ReplayState, request: web.Request) -> web.Response:
    generator = state.generator
    if generator is None:
        return _json({"error": "no generator: the exchange was started without instruments"}, 409)
    try:
        body = await _body(request)
        unknown = sorted(set(body) - {"action", "rate", "instrument"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; fields: action, rate, instrument")
        instrument = InstrumentId.parse(str(body["instrument"])) if "instrument" in body else None
        if instrument is not None and instrument not in generator.slots:
            raise ValueError(f"instrument: {instrument} is not generated")
        action = body.get("action")
        if action not in (None, "pause", "resume", "start"):
            raise ValueError(f"action must be pause, resume or start, got {action!r}")
        if "rate" in body:
            rate = body["rate"]
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise ValueError(f"rate must be a number of trades per second, got {rate!r}")
            generator.set_rate(float(rate), instrument)
    except ValueError as exc:
        return _bad(str(exc))
    if action == "pause":
        generator.paused = True
    elif action == "resume":
        generator.paused = False
    elif action == "start":
        for key in [instrument] if instrument is not None else list(generator.slots):
            generator.start(key, state.now())
    return _json(_generator_status(state))
