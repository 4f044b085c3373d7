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


def _text(text: str) -> str:
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
    batch_max_trades: int = _setting(
        "2000", _positive_int, "Largest trade micro-batch; batches otherwise flush every event-loop turn."
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
