"""Configuration: environment variables MARKETDATA_*, over an optional YAML file, over defaults.

Every setting is declared once in SETTINGS (name, type, default, description); the README's
configuration table is generated from it (`marketdata config --markdown`) and a test keeps the two
equal. A bad value stops start-up with a ConfigError naming the variable and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from marketdata.core.instruments import InstrumentId, MarketKey, parse_instrument_list
from marketdata.mcp.access import DEFAULT_TIERS, Tier, parse_tiers, parse_tokens

ENV_PREFIX = "MARKETDATA_"
CONFIG_FILE_ENV = "MARKETDATA_CONFIG"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the setting."""


def _ws_url(text: str) -> str:
    return _base_url(text, ("ws", "wss"))


def _http_url(text: str) -> str:
    return _base_url(text, ("http", "https"))


def _base_url(text: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in schemes:
        raise ValueError(f"scheme must be {' or '.join(schemes)}, got {text!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"give scheme, host and port only (the collector appends the exchange's paths), got {text!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _number(text: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"must be a {'whole ' if kind is int else ''}number, got {text!r}") from None


def _port(text: str) -> int:
    value: int = _number(text, int)
    if not 0 <= value <= 65535:
        raise ValueError(f"port {value} is outside 0..65535")
    return value


def _positive_float(text: str) -> float:
    value: float = _number(text, float)
    if not value > 0:
        raise ValueError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value: int = _number(text, int)
    if value <= 0:
        raise ValueError(f"must be > 0, got {text}")
    return value


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in ("json", "text"):
        raise ValueError(f"must be json or text, got {text!r}")
    return value


def _log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {text!r}")
    return value


def _instruments(text: str) -> tuple[InstrumentId, ...]:
    instruments = parse_instrument_list(text)
    if not instruments:
        raise ValueError("no instruments given")
    return instruments


def _duration(text: str) -> float:
    """Seconds from "90d", "12h", "30m", "45s" or a plain number of seconds; 0 means off."""
    value = text.strip().lower()
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    factor = units.get(value[-1:], 0.0)
    number = value[:-1] if factor else value
    try:
        seconds = float(number) * (factor or 1.0)
    except ValueError:
        raise ValueError(f"must be a duration like 7d, 12h, 30m or seconds, got {text!r}") from None
    if not seconds >= 0:
        raise ValueError(f"must be >= 0, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration for messages, in the units the settings take ("31 d", "12 h", "90 s")."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def _non_negative_int(text: str) -> int:
    value: int = _number(text, int)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text}")
    return value


def event_loop_choice(text: str) -> str:
    value = text.strip().lower()
    if value not in ("uvloop", "asyncio"):
        raise ValueError(f"must be uvloop or asyncio, got {text!r}")
    return value


def _nice(text: str) -> int:
    value: int = _number(text, int)
    if not 0 <= value <= 19:
        raise ValueError(f"must be 0..19 (a Linux nice increment), got {text}")
    return value


def _storage_uri(text: str) -> str:
    value = text.strip()
    if value and not value.startswith(("sqlite:///", "mongodb://", "mongodb+srv://")):
        raise ValueError(f"must start with sqlite:/// or mongodb:// (or be empty), got {value!r}")
    if value.startswith("sqlite:///") and len(value) == len("sqlite:///"):
        raise ValueError("sqlite:/// needs a file path, e.g. sqlite:///data/marketdata.db")
    return value


def _redis_url(text: str) -> str:
    value = text.strip()
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"must start with redis://, rediss:// or unix:// (or be empty), got {value!r}")
    return value


def _sqlite_synchronous(text: str) -> str:
    value = text.strip().upper()
    if value not in ("FULL", "NORMAL"):
        raise ValueError(f"must be FULL or NORMAL, got {text!r}")
    return value


def _book_instruments(text: str) -> str:
    """`all`, `none` or instrument keys (checked against MARKETDATA_INSTRUMENTS by Settings)."""
    value = text.strip()
    if value.lower() in ("all", "none", ""):
        return value.lower() or "none"
    return ",".join(i.key for i in parse_instrument_list(value))


def _book_depth(text: str) -> int:
    value: int = _number(text, int)
    if value not in (1, 50, 200, 1000):
        raise ValueError(f"must be 1, 50, 200 or 1000 (Bybit's order-book depths), got {text}")
    return value


def _share(text: str) -> float:
    value: float = _number(text, float)
    if not 0 < value <= 1:
        raise ValueError(f"must be within (0, 1], got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value: float = _number(text, float)
    if not value >= 0:
        raise ValueError(f"must be >= 0, got {text}")
    return value


def _text(text: str) -> str:
    return text.strip()


def _mcp_tokens(text: str) -> str:
    parse_tokens(text)  # validates; the bridge parses it again into hashed grants
    return text.strip()


def _setting(default: str, parse: Callable[[str], Any], doc: str, secret: bool = False) -> Any:
    return field(
        default=parse(default) if default != "" or parse is _text else default,
        metadata={"parse": parse, "doc": doc, "default_text": default, "secret": secret},
    )


@dataclass(frozen=True)
class Settings:
    """Every setting of every service. Field name = env var without MARKETDATA_, lower-cased."""

    instruments: tuple[InstrumentId, ...] = _setting(
        "binance-spot:BTCUSDT,binance-futures:BTCUSDT,bybit-spot:BTCUSDT,bybit-linear:BTCUSDT",
        _instruments,
        "Instruments to collect, comma-separated `market:SYMBOL`; markets are binance-spot, "
        "binance-futures, bybit-spot, bybit-linear.",
    )
    binance_spot_ws_url: str = _setting(
        "wss://stream.binance.com:9443", _ws_url, "Binance spot WebSocket base (scheme, host, port)."
    )
    binance_spot_rest_url: str = _setting("https://api.binance.com", _http_url, "Binance spot REST base.")
    binance_futures_ws_url: str = _setting(
        "wss://fstream.binance.com",
        _ws_url,
        "Binance USD-M WebSocket base; the collector uses the routed `/public` path for `@trade`.",
    )
    binance_futures_rest_url: str = _setting(
        "https://fapi.binance.com", _http_url, "Binance USD-M REST base."
    )
    bybit_ws_url: str = _setting(
        "wss://stream.bybit.com", _ws_url, "Bybit v5 public WebSocket base (`/v5/public/{spot,linear}`)."
    )
    bybit_rest_url: str = _setting("https://api.bybit.com", _http_url, "Bybit v5 REST base.")
    binance_api_key: str = _setting(
        "",
        _text,
        "Optional Binance API key (read-only is enough), sent only to USD-M `historicalTrades` for "
        "backfill; without it USD-M backfill uses the recent-trades endpoint (last 1000 trades).",
        secret=True,
    )
    bind_host: str = _setting("127.0.0.1", _text, "Address the services listen on (the chart sets 0.0.0.0).")
    collector_port: int = _setting("50051", _port, "Collector gRPC port.")
    collector_metrics_port: int = _setting("9101", _port, "Collector Prometheus metrics port (/metrics).")
    collector_addr: str = _setting(
        "127.0.0.1:50051", _text, "Where clients (`marketdata tail`, other services) reach the collector."
    )
    replay_port: int = _setting("8765", _port, "Port of `marketdata replay-exchange` (all protocols).")
    data_dir: str = _setting("./data", _text, "Data directory (embedded store, captures).")
    log_level: str = _setting("INFO", _log_level, "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _setting("json", _log_format, "`json` (one object per line) or `text`.")
    event_loop: str = _setting(
        "uvloop",
        event_loop_choice,
        "Event loop of every marketdata process: `uvloop` (libuv, less CPU per gRPC message and task "
        "switch) or `asyncio` (the standard library's; also where uvloop is not installed).",
    )
    batch_max_trades: int = _setting(
        "2000", _positive_int, "Largest trade micro-batch; batches otherwise flush every event-loop turn."
    )
    stream_min_interval_ms: float = _setting(
        "0",
        _non_negative_float,
        "Least time between two StreamTrades messages of the collector: a trade after a quiet spell "
        "goes out at once, later ones are gathered until the interval is over (fewer gRPC reads for "
        "many subscribers of one-trade frames, at up to this much more latency). 0: one message per "
        "event-loop turn.",
    )
    subscriber_queue_batches: int = _setting(
        "4096",
        _positive_int,
        "Batches buffered per StreamTrades subscriber; past it the oldest are dropped and counted.",
    )
    stale_timeout_s: float = _setting(
        "60",
        _positive_float,
        "Reconnect a connection that has received no frame (data or pong) for this long.",
    )
    bybit_ping_interval_s: float = _setting(
        "20", _positive_float, 'Interval of Bybit `{"op":"ping"}` keepalives.'
    )
    binance_ping_interval_s: float = _setting(
        "30",
        _positive_float,
        "Interval of our own WebSocket pings to Binance (we also answer the server's pings).",
    )
    binance_rotate_after_s: float = _setting(
        "85800",
        _positive_float,
        "Open a replacement Binance connection after this long (Binance cuts at 24 h); "
        "make-before-break, no gap.",
    )
    reconnect_initial_s: float = _setting(
        "0.5", _positive_float, "First reconnect delay; doubles per failure, with full jitter."
    )
    reconnect_max_s: float = _setting("30", _positive_float, "Largest reconnect delay.")
    health_window_s: float = _setting(
        "60",
        _positive_float,
        "Feed health: window over which reconnects, gaps and book resyncs count (docs/feed-health.md).",
    )
    breaker_failures: int = _setting(
        "5", _positive_int, "Consecutive failures of an exchange call that open its circuit breaker."
    )
    breaker_open_s: float = _setting(
        "5",
        _positive_float,
        "First open period of a circuit breaker after repeated failures (a 429/418 opens it for its "
        "Retry-After); doubles per failed probe.",
    )
    breaker_max_open_s: float = _setting("300", _positive_float, "Longest open period of a circuit breaker.")
    divergence_threshold_bps: float = _setting(
        "50",
        _positive_float,
        "Cross-exchange divergence (last trade or mid, basis points) past which a feed is flagged.",
    )
    divergence_window_s: float = _setting(
        "60", _positive_float, "Window over which the largest cross-exchange divergence is reported."
    )
    failover_margin: float = _setting(
        "15",
        _positive_float,
        "Failover hysteresis: another feed must score this many points above the followed one to take over.",
    )
    failover_hold_s: float = _setting(
        "10", _non_negative_float, "Failover hysteresis: least time a composite key stays on a feed."
    )
    gap_grace_s: float = _setting(
        "0.3",
        _positive_float,
        "Wait this long for a missing trade id to arrive (overlapping connections) before REST backfill.",
    )
    backfill_timeout_s: float = _setting(
        "20", _positive_float, "Give up a backfill after this long and record the gap as unrepaired."
    )
    backfill_max_held_trades: int = _setting(
        "200000",
        _positive_int,
        "Live trades held back per instrument while a gap is repaired; past it the repair is abandoned.",
    )
    restart_lookup_timeout_s: float = _setting(
        "5",
        _positive_float,
        "On start, how long the collector asks storage where each instrument's stored trades end "
        "(live trades wait meanwhile); past it collection goes on with the restart point unknown.",
    )
    restart_backfill_max_trades: int = _setting(
        "100000",
        _non_negative_int,
        "Binance: most trades backfilled per instrument after a restart (from the last stored trade "
        "to the first live one); older missed trades are recorded as an unrepaired gap (0: none).",
    )
    restart_backfill_timeout_s: float = _setting(
        "120",
        _positive_float,
        "Binance: give up the backfill after a restart after this long and record what is left as "
        "an unrepaired gap (REST weight limits pace it: about 2 pages of 500 trades a second on USD-M).",
    )
    book_instruments: str = _setting(
        "all",
        _book_instruments,
        "Instruments that get a local order book: `all` (every collected instrument), `none`, or a "
        "comma-separated subset of MARKETDATA_INSTRUMENTS.",
    )
    book_bybit_depth: int = _setting(
        "200",
        _book_depth,
        "Bybit order-book topic `orderbook.{depth}.SYMBOL`: 1, 50, 200 or 1000 levels per side.",
    )
    book_snapshot_limit: int = _setting(
        "1000",
        _positive_int,
        "Levels per side asked of Binance REST depth snapshots (weight: spot 50, USD-M 20 at 1000); "
        "levels beyond the snapshot's range are served flagged untrusted.",
    )
    book_snapshot_weight_share: float = _setting(
        "0.5",
        _share,
        "Share of Binance's REST weight per minute (spot 6000, USD-M 2400) that book snapshots may "
        "use; a snapshot storm over many symbols queues behind it, leaving the rest to trade backfill.",
    )
    book_buffer_max_events: int = _setting(
        "10000",
        _positive_int,
        "Depth updates buffered per Binance book while its snapshot is fetched; past it the oldest "
        "are dropped (a snapshot older than the buffer is fetched again).",
    )
    book_resync_max_delay_s: float = _setting(
        "30",
        _positive_float,
        "Longest wait between attempts to resync one book; the wait doubles from 0.25 s while "
        "attempts keep failing (refused snapshots, repeated gaps).",
    )
    book_serve_stale_s: float = _setting(
        "30",
        _non_negative_float,
        "While a book resyncs, GetOrderBook serves its last good book (state RESYNCING, with its age) "
        "for at most this long; then UNAVAILABLE until the book is back in sync.",
    )
    book_snapshot_interval_s: float = _setting(
        "10",
        _non_negative_float,
        "Cadence of top-of-book snapshots (of every synced book) handed to storage; 0: none.",
    )
    book_snapshot_depth: int = _setting(
        "20", _positive_int, "Levels per side in the book snapshots handed to storage."
    )

    storage_uri: str = _setting(
        "",
        _storage_uri,
        "Storage backend: `sqlite:///PATH` (embedded, durable single file) or `mongodb://...`; "
        "empty: `sqlite:///<MARKETDATA_DATA_DIR>/marketdata.db`.",
        secret=True,
    )
    storage_port: int = _setting("50052", _port, "Storage gRPC port.")
    storage_metrics_port: int = _setting("9102", _port, "Storage Prometheus metrics port (/metrics).")
    storage_addr: str = _setting(
        "",
        _text,
        "Where the collector (and other clients) reach storage, e.g. `127.0.0.1:50052`; empty: the "
        "collector stores nothing (`marketdata up` sets it).",
    )
    redis_url: str = _setting(
        "",
        _redis_url,
        "Optional Redis (`redis://host:6379/0`) caching footprint bars of closed minutes; empty: no cache.",
        secret=True,
    )
    storage_unacked_max_trades: int = _setting(
        "1000000",
        _positive_int,
        "Trades the collector keeps while storage has not acknowledged them; past it the oldest batches "
        "are shed (logged and counted).",
    )
    storage_write_linger_ms: float = _setting(
        "50",
        _non_negative_float,
        "How long the collector gathers an instrument's trades before writing them to storage (one "
        "request, one commit slot) unless 1000 are ready sooner; live streams are not delayed. "
        "0: every batch as it comes.",
    )
    storage_unacked_max_snapshots: int = _setting(
        "20000",
        _positive_int,
        "Order-book snapshots the collector keeps unacknowledged; past it the oldest are shed.",
    )
    storage_sqlite_synchronous: str = _setting(
        "FULL",
        _sqlite_synchronous,
        "SQLite `synchronous` in WAL mode: FULL fsyncs the WAL at every commit (acknowledged writes "
        "survive power loss); NORMAL survives a killed process but not power loss.",
    )
    storage_writer_nice: int = _setting(
        "10",
        _nice,
        "How much storage's writer thread lowers its CPU priority (Linux nice, per thread): its commit "
        "bursts then yield to the collector and the analytics services where they share cores (one "
        "machine, `marketdata up`); acknowledgements and queries run at the usual priority. 0: none.",
    )
    storage_sqlite_max_mb: int = _setting(
        "0",
        _non_negative_int,
        "Cap on the embedded store's size in MiB (0: none); past it writes fail like on a full disk.",
    )
    storage_query_max_trades: int = _setting(
        "5000000", _positive_int, "Most trades (or book snapshots) one query may return."
    )
    storage_query_max_range: float = _setting(
        "7d", _duration, "Longest exchange-time range of QueryTrades and QueryBookSnapshots."
    )
    storage_footprint_max_range: float = _setting(
        "31d", _duration, "Longest range of bar starts one QueryFootprints may ask for."
    )
    storage_retention_trades: float = _setting(
        "30d", _duration, "Keep raw trades this long (exchange time; 0: forever)."
    )
    storage_retention_book_snapshots: float = _setting(
        "7d", _duration, "Keep order-book snapshots this long (0: forever)."
    )
    storage_retention_footprints_1m: float = _setting(
        "180d", _duration, "Keep 1m footprint bars this long; removed ones are rolled up into 1h bars."
    )
    storage_retention_footprints_1h: float = _setting(
        "0", _duration, "Keep 1h footprint bars this long (0: forever)."
    )
    storage_retention_interval: float = _setting(
        "1h", _duration, "How often storage applies retention (0: only `marketdata storage cleanup`)."
    )
    storage_archive_dir: str = _setting(
        "",
        _text,
        "Before retention removes data, write it here as gzip JSON lines, one file per instrument and "
        "day (`marketdata storage restore` reads them back); empty: remove without archiving.",
    )
    storage_disk_free_min_mb: int = _setting(
        "1024",
        _non_negative_int,
        "Below this much free disk (MiB) beside the embedded store, `marketdata_storage_disk_free_low` is 1.",
    )

    volume_profile_port: int = _setting("50053", _port, "Volume-profile gRPC port.")
    volume_profile_metrics_port: int = _setting(
        "9103", _port, "Volume-profile Prometheus metrics port (/metrics)."
    )
    volume_profile_addr: str = _setting(
        "",
        _text,
        "Where clients (`marketdata profile`) reach the volume-profile service, e.g. `127.0.0.1:50053`; "
        "empty: 127.0.0.1 and MARKETDATA_VOLUME_PROFILE_PORT.",
    )
    volume_profile_max_rows: int = _setting(
        "20000", _positive_int, "Most rows one volume profile may have (a smaller row size is refused)."
    )
    volume_profile_max_range: float = _setting(
        "31d", _duration, "Longest range one volume profile may cover."
    )
    volume_profile_node_window: int = _setting(
        "5",
        _positive_int,
        "Rows (odd) of the centred moving average that smooths a profile before HVN/LVN are picked.",
    )
    volume_profile_naked_poc_sessions: int = _setting(
        "10", _positive_int, "Previous sessions GetVolumeProfileLevels checks for naked POCs by default."
    )
    volume_profile_cache_ttl: float = _setting(
        "5m",
        _duration,
        "How long a cached closed range is used before it is read again (late trades show up within it; "
        "0: no cache).",
    )
    volume_profile_cache_entries: int = _setting(
        "2048",
        _non_negative_int,
        "Closed-range chunks (a UTC day or hour of one instrument's profile) kept in process (0: none); "
        "with MARKETDATA_REDIS_URL they go to Redis instead.",
    )

    order_flow_port: int = _setting("50054", _port, "Order-flow gRPC port.")
    order_flow_metrics_port: int = _setting("9104", _port, "Order-flow Prometheus metrics port (/metrics).")
    order_flow_addr: str = _setting(
        "",
        _text,
        "Where clients (`marketdata flow`, `marketdata tail flow`) reach the order-flow service, e.g. "
        "`127.0.0.1:50054`; empty: 127.0.0.1 and MARKETDATA_ORDER_FLOW_PORT.",
    )
    order_flow_max_range: float = _setting("31d", _duration, "Longest range one GetOrderFlow may cover.")
    order_flow_max_bars: int = _setting("5000", _positive_int, "Most bars one GetOrderFlow may return.")
    order_flow_max_instruments: int = _setting(
        "16", _positive_int, "Most instruments plus composites one order-flow request may aggregate."
    )
    order_flow_max_rows: int = _setting(
        "20000", _positive_int, "Most footprint rows one bar may span (a smaller row size is refused)."
    )
    order_flow_max_large_trades: int = _setting(
        "1000", _positive_int, "Most large trades one GetOrderFlow lists (per-bar counts stay complete)."
    )
    order_flow_cache_entries: int = _setting(
        "20000",
        _non_negative_int,
        "Closed stored minutes (one instrument's 1m footprint on one grid) kept in process for reuse by "
        "later requests and streams (0: none).",
    )
    order_flow_cache_ttl: float = _setting(
        "5m",
        _duration,
        "How long a cached closed minute is used before it is read again (late trades show up within it).",
    )
    order_flow_stream_buffer: int = _setting(
        "10000",
        _positive_int,
        "Updates each StreamOrderFlow subscription key keeps for resuming by cursor.",
    )

    mcp_port: int = _setting("8080", _port, "MCP bridge HTTP port: streamable HTTP at /mcp, GET /health.")
    mcp_metrics_port: int = _setting("9105", _port, "MCP bridge Prometheus metrics port (/metrics).")
    mcp_tokens: str = _setting(
        "",
        _mcp_tokens,
        "MCP bearer tokens, comma-separated `TOKEN`, `TOKEN:TIER` (no tier: `standard`) or "
        "`TOKEN:TIER:EXPIRES` (ISO 8601, UTC); HTTP needs at least one (docs/mcp.md). Tokens are never logged.",
        secret=True,
    )
    mcp_tiers: tuple[Tier, ...] = _setting(
        DEFAULT_TIERS,
        parse_tiers,
        "MCP rate-limit tiers, comma-separated `NAME=PER_MINUTE/PER_DAY` tool calls per token (0: no "
        "limit); past a limit HTTP answers 429 with Retry-After. Counted across replicas in "
        "MARKETDATA_REDIS_URL when set, else per replica.",
    )
    mcp_backend_timeout_s: float = _setting(
        "10", _positive_float, "Deadline of each gRPC call the MCP bridge makes for a tool."
    )

    def public_items(self) -> dict[str, Any]:
        """Settings with secrets masked, for logs and `marketdata config`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            out[f.name] = value
        return out

    def instruments_of(self, market: MarketKey) -> tuple[InstrumentId, ...]:
        return tuple(i for i in self.instruments if i.market == market)

    def books(self) -> tuple[InstrumentId, ...]:
        """The instruments with a local order book (MARKETDATA_BOOK_INSTRUMENTS)."""
        if self.book_instruments == "all":
            return self.instruments
        if self.book_instruments == "none":
            return ()
        return parse_instrument_list(self.book_instruments)

    def __post_init__(self) -> None:
        if self.book_instruments not in ("all", "none"):
            missing = [i.key for i in self.books() if i not in self.instruments]
            if missing:
                raise ConfigError(
                    f"{env_name('book_instruments')}: {', '.join(missing)} not in "
                    f"{env_name('instruments')}; books are kept only for collected instruments"
                )


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> Settings:
    """Load settings: defaults, then the YAML file (MARKETDATA_CONFIG or config_file), then env."""
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    path = config_file or env.get(CONFIG_FILE_ENV)
    known = {f.name: f for f in fields(Settings)}
    if path:
        raw.update(_read_yaml(Path(path), known))
    for name in known:
        value = env.get(env_name(name))
        if value is not None:
            raw[name] = value
    values: dict[str, Any] = {}
    for name, text in raw.items():
        parse = known[name].metadata["parse"]
        try:
            values[name] = parse(text)
        except ValueError as exc:
            raise ConfigError(f"{env_name(name)}: {exc}") from None
    return Settings(**values)


def _read_yaml(path: Path, known: Mapping[str, Any]) -> dict[str, str]:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}: {path} is not valid YAML: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{CONFIG_FILE_ENV}: {path} must hold a mapping of setting: value")
    out: dict[str, str] = {}
    for key, value in document.items():
        name = str(key).lower()
        if name not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[name] = str(value)
    return out


def markdown_table() -> str:
    """The README configuration table, generated from the declarations above."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        default = f.metadata["default_text"] or "(empty)"
        lines.append(f"| `{env_name(f.name)}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(lines)
