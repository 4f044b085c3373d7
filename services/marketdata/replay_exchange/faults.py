"""Fault specifications (from the CLI, the config or the control API) and the faults waiting to happen.

CLI form: `kind:key=value,key=value`, e.g. `drop:market=binance-spot,every=5` or
`skip:instrument=binance-spot:BTCUSDT,count=3`. JSON form: {"kind": "drop", "market": "binance-spot", ...}.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Any

from marketdata.core.instruments import InstrumentId, MarketKey

DROP_MODES = ("close", "abort")
# Cycled through when no variant is given; `oversized` (a frame of OVERSIZED_FRAME_BYTES, bigger than
# any real exchange frame and than the collector's frame limit) only when asked for by name.
MALFORMED_VARIANTS = ("truncated", "text", "binary", "unknown_event", "missing_field", "bad_price")
MALFORMED_ON_REQUEST = ("oversized",)
REST_STATUSES = (429, 418, 500)
BOOK_MALFORMED_VARIANTS = ("negative_size", "non_numeric", "unknown_symbol")

# Which options each kind reads; anything else is an error, so a typo never silently does nothing.
_OPTIONS: dict[str, tuple[str, ...]] = {
    "drop": ("market", "exchange", "mode", "code"),
    "skip": ("market", "exchange", "instrument", "count"),
    "malformed": ("market", "exchange", "count", "variant"),
    "stall": ("market", "exchange", "seconds"),
    # The client's keepalives are lost for `seconds`: Binance ignores its pongs (and pings), so the
    # connection is cut at the pong deadline (1008 "pong timeout"); Bybit answers no `op:ping`, so an
    # idle connection is cut. Data keeps flowing meanwhile.
    "ping_timeout": ("market", "exchange", "seconds"),
    "shutdown": ("market", "seconds"),
    "max_age": ("market", "exchange", "seconds"),
    "reject": ("market", "exchange", "count", "message"),
    "rest": ("market", "exchange", "count", "status", "retry_after"),
    # Order books (synthetic books only): the next `count` depth pushes of each instrument are
    # withheld (an update-id gap), carry a level crossing the book, or a malformed level; Bybit
    # topics restart at u=1 with a snapshot; Binance REST snapshots come from seconds ago.
    "book_gap": ("market", "exchange", "instrument", "count"),
    "book_crossed": ("market", "exchange", "instrument", "count"),
    "book_malformed": ("market", "exchange", "instrument", "count", "variant"),
    "book_reset": ("market", "instrument", "count"),
    "stale_snapshot": ("market", "instrument", "count"),
    # Synthetic trades (and so books) of the chosen instruments: `lag` stamps them `seconds` in the
    # past (an exchange feed running late; 0 ends it); `drift` moves their price walk by `bps`
    # (cumulative; negative moves down), so they diverge from the same symbol elsewhere.
    "lag": ("market", "exchange", "instrument", "seconds"),
    "drift": ("market", "exchange", "instrument", "bps"),
}
_SCHEDULE = ("at", "every", "times")
FAULT_KINDS = tuple(_OPTIONS)


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    market: MarketKey | None = None  # None: every market the kind applies to (or `exchange`'s)
    exchange: str | None = None  # "binance" or "bybit"
    instrument: InstrumentId | None = None
    count: int = 1
    variant: str = ""  # malformed: one variant; "" cycles through all of them
    mode: str = "close"  # drop: close (with a close frame and `code`) or abort (TCP reset, no frame)
    code: int = 1001
    seconds: float = 0.0  # stall: duration; shutdown: delay before closing; max_age: the age
    status: int = 429
    retry_after: int = 1
    message: str = ""  # reject: the error text instead of the exchange's usual one
    bps: float = 0.0  # drift: how far to move the price walk, basis points
    at: float | None = None  # seconds after the server started; None: at once
    every: float | None = None  # repeat period in seconds
    times: int | None = None  # number of repeats with `every` (None: until stopped)

    def markets(self) -> list[MarketKey]:
        """The markets this fault touches."""
        if self.instrument is not None:
            return [self.instrument.market]
        if self.market is not None:
            return [self.market]
        chosen = [m for m in MarketKey if self.exchange is None or m.value.startswith(self.exchange)]
        if self.kind in ("shutdown", "max_age", "stale_snapshot"):
            chosen = [m for m in chosen if m.is_binance]
        if self.kind == "book_reset":
            chosen = [m for m in chosen if not m.is_binance]
        return chosen

    def to_dict(self) -> dict[str, Any]:
        """The options this kind reads (and its schedule), as JSON values."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in (*_OPTIONS[self.kind], *_SCHEDULE):
            value = getattr(self, name)
            if value is None or value == "":
                continue
            if isinstance(value, InstrumentId):
                value = value.key
            elif isinstance(value, MarketKey):
                value = value.value
            out[name] = value
        return out


def parse_fault_text(text: str) -> FaultSpec:
    """Parse the CLI form `kind:key=value,...`."""
    kind, _, rest = text.strip().partition(":")
    options: dict[str, Any] = {"kind": kind}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault {text!r}: option {part!r} must be key=value")
        options[key.strip()] = value.strip()
    return parse_fault(options)


def parse_fault(options: dict[str, Any]) -> FaultSpec:
    """Validate a fault given as a mapping (JSON body or parsed CLI text); errors name the field."""
    kind = str(options.get("kind", "")).strip().lower()
    if kind not in _OPTIONS:
        raise ValueError(f"fault kind {kind!r} is unknown; kinds: {', '.join(FAULT_KINDS)}")
    allowed = set(_OPTIONS[kind]) | set(_SCHEDULE) | {"kind"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"{kind} fault: unknown option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(_OPTIONS[kind] + _SCHEDULE)}"
        )
    spec = FaultSpec(kind)
    values: dict[str, Any] = {}
    for key, raw in options.items():
        if key == "kind" or raw is None:
            continue
        values[key] = _convert(kind, key, raw)
    spec = replace(spec, **values)
    _check(spec)
    return spec


def _convert(kind: str, key: str, raw: Any) -> Any:
    where = f"{kind} fault: {key}"
    try:
        if key == "market":
            return MarketKey.parse(str(raw))
        if key == "instrument":
            return InstrumentId.parse(str(raw))
        if key == "exchange":
            value = str(raw).strip().lower()
            if value not in ("binance", "bybit"):
                raise ValueError(f"must be binance or bybit, got {raw!r}")
            return value
        if key in ("count", "code", "status", "retry_after", "times"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(f"must be a whole number, got {raw!r}")
            return int(raw)
        if key == "bps":
            if isinstance(raw, bool):
                raise ValueError(f"must be a number of basis points, got {raw!r}")
            number = float(raw)
            if not math.isfinite(number) or abs(number) >= 10_000:
                raise ValueError(f"must be a number of basis points within (-10000, 10000), got {raw!r}")
            return number
        if key in ("seconds", "at", "every"):
            if isinstance(raw, bool):
                raise ValueError(f"must be a number of seconds, got {raw!r}")
            number = float(raw)
            if not math.isfinite(number) or number < 0:
                raise ValueError(f"must be a number of seconds >= 0, got {raw!r}")
            return number
        return str(raw).strip()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check(spec: FaultSpec) -> None:
    kind = spec.kind
    if spec.count < 1:
        raise ValueError(f"{kind} fault: count must be >= 1, got {spec.count}")
    if (
        spec.market is not None
        and spec.exchange is not None
        and not spec.market.value.startswith(spec.exchange)
    ):
        raise ValueError(f"{kind} fault: market {spec.market} is not on exchange {spec.exchange}")
    if kind == "drop":
        if spec.mode not in DROP_MODES:
            raise ValueError(f"drop fault: mode must be one of {', '.join(DROP_MODES)}, got {spec.mode!r}")
        if not (spec.code == 1000 or 3000 <= spec.code <= 4999 or 1001 <= spec.code <= 1014) or spec.code in (
            1004,
            1005,
            1006,
        ):
            raise ValueError(f"drop fault: code {spec.code} cannot be sent in a close frame")
    if kind == "book_malformed" and spec.variant and spec.variant not in BOOK_MALFORMED_VARIANTS:
        raise ValueError(
            f"book_malformed fault: variant must be one of {', '.join(BOOK_MALFORMED_VARIANTS)}, "
            f"got {spec.variant!r}"
        )
    target = spec.instrument.market if spec.instrument is not None else spec.market
    if kind == "book_reset" and target is not None and target.is_binance:
        raise ValueError("book_reset fault: u=1 resets are Bybit's; market must be bybit-*")
    if kind == "stale_snapshot" and target is not None and not target.is_binance:
        raise ValueError("stale_snapshot fault: REST snapshots are Binance's; market must be binance-*")
    variants = MALFORMED_VARIANTS + MALFORMED_ON_REQUEST
    if kind == "malformed" and spec.variant and spec.variant not in variants:
        raise ValueError(
            f"malformed fault: variant must be one of {', '.join(variants)}, got {spec.variant!r}"
        )
    if kind == "rest" and spec.status not in REST_STATUSES:
        raise ValueError(f"rest fault: status must be one of 429, 418, 500, got {spec.status}")
    if kind in ("stall", "max_age", "ping_timeout") and spec.seconds <= 0:
        raise ValueError(f"{kind} fault: seconds must be > 0")
    if kind == "shutdown" and spec.market is not None and not spec.market.is_binance:
        raise ValueError("shutdown fault: serverShutdown is a Binance event; market must be binance-*")
    if kind == "max_age" and spec.market is not None and not spec.market.is_binance:
        raise ValueError("max_age fault: the connection age cut is Binance's; market must be binance-*")
    if spec.every is not None and spec.every <= 0:
        raise ValueError(f"{kind} fault: every must be > 0")
    if spec.times is not None and spec.times < 1:
        raise ValueError(f"{kind} fault: times must be >= 1")


class FaultBook:
    """Faults armed for later (skips, rejects, REST errors) and the log of faults applied."""

    LOG_SIZE = 1000

    def __init__(self) -> None:
        self.skips: dict[InstrumentId, int] = {}
        self.rejects: dict[MarketKey, deque[FaultSpec]] = {m: deque() for m in MarketKey}
        self.rest: dict[MarketKey, deque[FaultSpec]] = {m: deque() for m in MarketKey}
        self.max_age: dict[MarketKey, float] = {}
        self.applied: deque[dict[str, Any]] = deque(maxlen=self.LOG_SIZE)
        self.counts: Counter[str] = Counter()

    def take_skips(self, instrument: InstrumentId, available: int) -> int:
        """How many of the next `available` trades of the instrument to withhold from WebSocket."""
        pending = self.skips.get(instrument, 0)
        if pending <= 0:
            return 0
        taken = min(pending, available)
        self.skips[instrument] = pending - taken
        return taken

    def take_reject(self, market: MarketKey) -> FaultSpec | None:
        queue = self.rejects[market]
        return queue.popleft() if queue else None

    def take_rest(self, market: MarketKey) -> FaultSpec | None:
        queue = self.rest[market]
        return queue.popleft() if queue else None

    def record(self, spec: FaultSpec, at: float, **detail: Any) -> None:
        self.counts[spec.kind] += 1
        self.applied.append({"at_s": round(at, 3), **spec.to_dict(), **detail})

    def pending(self) -> dict[str, Any]:
        return {
            "skip": {i.key: n for i, n in self.skips.items() if n > 0},
            "reject": {m.value: len(q) for m, q in self.rejects.items() if q},
            "rest": {m.value: len(q) for m, q in self.rest.items() if q},
            "max_age": {m.value: s for m, s in self.max_age.items()},
        }
