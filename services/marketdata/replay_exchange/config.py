"""Configuration of one replay exchange: data sources, exchange timings and faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange.faults import FaultSpec

DEFAULT_INSTRUMENTS = (
    InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT"),
    InstrumentId(MarketKey.BINANCE_FUTURES, "BTCUSDT"),
    InstrumentId(MarketKey.BYBIT_SPOT, "BTCUSDT"),
    InstrumentId(MarketKey.BYBIT_LINEAR, "BTCUSDT"),
)


@dataclass(frozen=True)
class RecordingSource:
    """A recorded file to replay; `market` is needed only when neither format nor file name tells it."""

    path: Path
    market: MarketKey | None = None


@dataclass(frozen=True)
class ReplayConfig:
    # Synthetic generator (off when `instruments` is empty).
    instruments: tuple[InstrumentId, ...] = ()
    rate: float = 100.0  # total trades per second, split evenly across instruments
    seed: int = 1
    max_trades: int | None = None  # per instrument; the generator stops each one after that many
    trades_per_frame: int = 50  # Bybit: most trades in one publicTrade push (<= 1024)
    # Benchmarks: offer generated trades as fast as each subscriber reads them (`rate` is not used;
    # firehose.py), instead of pacing them at `rate`.
    firehose: bool = False
    tick_interval_s: float = 0.002  # how often due trades are produced
    history_size: int = 200_000  # trades kept per instrument for REST and /_replay/trades
    # Start an instrument when its trade stream is first subscribed (+ start_delay_s), so a test sees
    # the complete sequence; False starts everything when the server starts.
    start_on_subscribe: bool = True
    start_delay_s: float = 0.05
    # Recorded files, replayed per market from the market's first subscription (+ start_delay_s).
    recordings: tuple[RecordingSource, ...] = ()
    speed: float = 1.0  # divides the recorded gaps; 0 = as fast as possible
    loop: bool = False
    # Recorded REST depth snapshots (cryptofeed `*.http.*` captures) served by /api/v3/depth and
    # /fapi/v1/depth; those next to a recorded `*.ws.*` file are found without being listed.
    rest_recordings: tuple[Path, ...] = ()
    # Synthetic books: random level changes per second per instrument, besides those trades cause.
    book_churn_per_s: float = 40.0
    faults: tuple[FaultSpec, ...] = ()
    # Binance keepalive: spot pings every 20 s and wants a pong within 1 min; USD-M 3 min / 10 min.
    binance_spot_ping_interval_s: float = 20.0
    binance_spot_pong_timeout_s: float = 60.0
    binance_futures_ping_interval_s: float = 180.0
    binance_futures_pong_timeout_s: float = 600.0
    # Binance cuts every connection at 24 h; None disables the cut.
    max_connection_age_s: float | None = 86_400.0
    # Binance disconnects a connection sending more than this many messages a second (0: no limit).
    binance_spot_max_messages_per_s: int = 5
    binance_futures_max_messages_per_s: int = 10
    # Bybit cuts a connection with no ping and no data for this long.
    bybit_idle_timeout_s: float = 600.0
    # REST request weight per minute (Binance answers 429 past it; 0: no limit).
    binance_spot_weight_per_minute: int = 6000
    binance_futures_weight_per_minute: int = 2400
    # A connection whose unsent bytes pass this is cut (slow consumer), as a real exchange does.
    max_send_buffer_bytes: int = 64 * 1024 * 1024
    close_timeout_s: float = 2.0  # wait this long for the client's close frame after ours
    extra_symbols: dict[MarketKey, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate}")
        if not 1 <= self.trades_per_frame <= 1024:
            raise ValueError(f"trades_per_frame must be within 1..1024, got {self.trades_per_frame}")
        if self.max_trades is not None and self.max_trades < 0:
            raise ValueError(f"max_trades must be >= 0, got {self.max_trades}")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {self.speed}")
        if self.history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {self.history_size}")
        if self.book_churn_per_s < 0:
            raise ValueError(f"book_churn_per_s must be >= 0, got {self.book_churn_per_s}")
        if self.tick_interval_s <= 0:
            raise ValueError(f"tick_interval_s must be > 0, got {self.tick_interval_s}")
        if len(set(self.instruments)) != len(self.instruments):
            raise ValueError("instruments lists an instrument twice")

    def ping_interval(self, market: MarketKey) -> float:
        if market == MarketKey.BINANCE_SPOT:
            return self.binance_spot_ping_interval_s
        return self.binance_futures_ping_interval_s

    def pong_timeout(self, market: MarketKey) -> float:
        if market == MarketKey.BINANCE_SPOT:
            return self.binance_spot_pong_timeout_s
        return self.binance_futures_pong_timeout_s

    def max_messages_per_s(self, market: MarketKey) -> int:
        if market == MarketKey.BINANCE_SPOT:
            return self.binance_spot_max_messages_per_s
        return self.binance_futures_max_messages_per_s

    def weight_per_minute(self, market: MarketKey) -> int:
        if market == MarketKey.BINANCE_SPOT:
            return self.binance_spot_weight_per_minute
        return self.binance_futures_weight_per_minute
