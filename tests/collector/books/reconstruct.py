"""An independent, deliberately simple reconstruction of Binance books from recorded files, written
from Binance's documented procedure (shared/reference/collectors.md §3a/§3b) without any code of the
collector: Decimal keys in plain dicts, sorted at the end."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "recorded"
SPOT_WS = RECORDED / "cryptofeed-BINANCE.ws.1.0"
SPOT_HTTP = RECORDED / "cryptofeed-BINANCE.http.0.0"
FUTURES_WS = RECORDED / "cryptofeed-BINANCE_FUTURES.ws.1.0"
FUTURES_HTTP = RECORDED / "cryptofeed-BINANCE_FUTURES.http.0.0"


@dataclass
class Recording:
    """Depth events and REST snapshots of one recorded Binance session, per symbol."""

    frames: list[tuple[float, str]] = field(default_factory=list)  # (receive s, raw frame text)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    snapshots: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)


def load(ws: Path, http: Path) -> Recording:
    out = Recording()
    lines = ws.read_text().splitlines()
    for line in lines[1:]:
        if not line.strip():
            continue
        stamp, _, text = line.partition(": ")
        out.frames.append((float(stamp), text))
        message = json.loads(text)
        data = message["data"]
        if data.get("e") == "depthUpdate":
            out.events.setdefault(data["s"], []).append(data)
    for line in http.read_text().splitlines():
        if not line.strip():
            continue
        url, _, rest = line.partition(" -> ")
        stamp, _, body = rest.partition(": ")
        symbol = re.search(r"symbol=(\w+)", url)
        assert symbol is not None
        out.snapshots[symbol[1]] = (float(stamp), json.loads(body))
    return out


def reconstruct(
    snapshot: dict[str, Any], events: list[dict[str, Any]], futures: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
    """(bids best first, asks best first, last update id) after the snapshot and every event."""
    bids = {Decimal(p): (p, q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): (p, q) for p, q in snapshot["asks"]}
    last = snapshot["lastUpdateId"]
    started = False
    for event in events:
        if not started:
            if futures:
                if event["u"] < last:
                    continue
                assert event["U"] <= last <= event["u"] or event["pu"] == last
            else:
                if event["u"] <= last:
                    continue
                assert event["U"] <= last + 1 <= event["u"]
            started = True
        elif futures:
            assert event["pu"] == last, "the recording has a gap"
        else:
            assert event["U"] == last + 1, "the recording has a gap"
        for side, levels in ((bids, event["b"]), (asks, event["a"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = (price, qty)
        last = event["u"]
    return (
        [bids[k] for k in sorted(bids, reverse=True)],
        [asks[k] for k in sorted(asks)],
        last,
    )
