"""Configuration: defaults, YAML under env, and clear errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketdata.core.config import ConfigError, load_settings, markdown_table
from marketdata.core.instruments import InstrumentId, MarketKey

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_point_at_the_real_exchanges() -> None:
    s = load_settings({})
    assert s.binance_spot_ws_url == "wss://stream.binance.com:9443"
    assert s.binance_futures_ws_url == "wss://fstream.binance.com"
    assert s.bybit_ws_url == "wss://stream.bybit.com"
    assert s.binance_spot_rest_url == "https://api.binance.com"
    assert {i.market for i in s.instruments} == set(MarketKey)


def test_instruments_from_env() -> None:
    s = load_settings({"MARKETDATA_INSTRUMENTS": "binance-spot:btcusdt, bybit-linear:ETHUSDT"})
    assert s.instruments == (
        InstrumentId(MarketKey.BINANCE_SPOT, "BTCUSDT"),
        InstrumentId(MarketKey.BYBIT_LINEAR, "ETHUSDT"),
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MARKETDATA_INSTRUMENTS": "binance-spot:BTCUSDT,kraken:XBTUSD"},
            "MARKETDATA_INSTRUMENTS: entry 2 ('kraken:XBTUSD'): unknown market 'kraken'",
        ),
        ({"MARKETDATA_INSTRUMENTS": "BTCUSDT"}, "must be market:SYMBOL"),
        ({"MARKETDATA_INSTRUMENTS": "bybit-spot:BTC$"}, "symbol 'BTC$' is not an exchange symbol"),
        ({"MARKETDATA_INSTRUMENTS": "bybit-spot:BTCUSDT,bybit-spot:btcusdt"}, "listed twice"),
        ({"MARKETDATA_INSTRUMENTS": " , "}, "no instruments given"),
        (
            {"MARKETDATA_BYBIT_WS_URL": "https://stream.bybit.com"},
            "MARKETDATA_BYBIT_WS_URL: scheme must be ws or wss",
        ),
        (
            {"MARKETDATA_BINANCE_SPOT_WS_URL": "wss://stream.binance.com:9443/ws"},
            "give scheme, host and port only",
        ),
        ({"MARKETDATA_BINANCE_SPOT_REST_URL": "http://:80"}, "MARKETDATA_BINANCE_SPOT_REST_URL: no host"),
        (
            {"MARKETDATA_COLLECTOR_PORT": "http"},
            "MARKETDATA_COLLECTOR_PORT: must be a whole number, got 'http'",
        ),
        ({"MARKETDATA_COLLECTOR_PORT": "70000"}, "outside 0..65535"),
        ({"MARKETDATA_STALE_TIMEOUT_S": "0"}, "MARKETDATA_STALE_TIMEOUT_S: must be > 0"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert message in str(info.value)


def test_yaml_file_under_env(tmp_path: Path) -> None:
    path = tmp_path / "marketdata.yaml"
    path.write_text("instruments: [binance-spot:ETHUSDT, bybit-spot:ETHUSDT]\ncollector_port: 6000\n")
    s = load_settings({"MARKETDATA_CONFIG": str(path), "MARKETDATA_COLLECTOR_PORT": "7000"})
    assert [i.key for i in s.instruments] == ["binance-spot:ETHUSDT", "bybit-spot:ETHUSDT"]
    assert s.collector_port == 7000  # env wins over the file
    path.write_text("colector_port: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'colector_port'"):
        load_settings({"MARKETDATA_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"MARKETDATA_CONFIG": str(tmp_path / "missing.yaml")})


def test_secrets_are_masked() -> None:
    s = load_settings({"MARKETDATA_BINANCE_API_KEY": "k-123"})
    assert s.binance_api_key == "k-123"
    assert s.public_items()["binance_api_key"] == "***"


def test_readme_configuration_table_is_current() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text(), (
        "regenerate with `marketdata config --markdown`"
    )
