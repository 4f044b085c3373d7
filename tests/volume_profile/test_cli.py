"""`marketdata up --replay` starts the volume-profile service; `marketdata profile --json` prints it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

import orjson

from tests.cli.test_cli import _free_port, _marketdata


async def test_up_starts_volume_profile_and_profile_json(tmp_path: Path) -> None:
    names = ("collector", "cmetrics", "storage", "smetrics", "vp", "vpmetrics", "replay")
    ports = {name: _free_port() for name in names}
    env = {
        "MARKETDATA_INSTRUMENTS": "binance-spot:BTCUSDT,bybit-spot:BTCUSDT",
        "MARKETDATA_COLLECTOR_PORT": str(ports["collector"]),
        "MARKETDATA_COLLECTOR_METRICS_PORT": str(ports["cmetrics"]),
        "MARKETDATA_COLLECTOR_ADDR": f"127.0.0.1:{ports['collector']}",
        "MARKETDATA_STORAGE_PORT": str(ports["storage"]),
        "MARKETDATA_STORAGE_METRICS_PORT": str(ports["smetrics"]),
        "MARKETDATA_STORAGE_URI": f"sqlite:///{tmp_path / 'store.db'}",
        "MARKETDATA_VOLUME_PROFILE_PORT": str(ports["vp"]),
        "MARKETDATA_VOLUME_PROFILE_METRICS_PORT": str(ports["vpmetrics"]),
        "MARKETDATA_REPLAY_PORT": str(ports["replay"]),
        "MARKETDATA_DATA_DIR": str(tmp_path),
        "MARKETDATA_LOG_LEVEL": "WARNING",
    }
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketdata.cli.main", "up", "--replay", "--replay-rate", "100",
        env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert up.stderr is not None
        banner = b""
        while b"Ctrl-C" not in banner:
            line = await asyncio.wait_for(up.stderr.readline(), 30)
            assert line, f"`marketdata up` ended early: {banner.decode()}"
            banner += line
        assert f"grpc 127.0.0.1:{ports['vp']}" in banner.decode()
        await asyncio.sleep(1.5)
        now = time.gmtime(time.time() + 120)
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", now)
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
        args = ["profile", "--instrument", "binance-spot:BTCUSDT", "--instrument", "bybit-spot:BTCUSDT",
                "--start", start, "--end", end, "--row-ticks", "10", "--json"]  # fmt: skip
        code, out, err = await _marketdata(*args, env=env)
        assert code == 0, err
        result = orjson.loads(out)
        assert {"poc", "vah", "val", "total_volume", "value_area_share", "rows"} <= result.keys()
        assert result["rows"] and Decimal(result["total_volume"]) > 0
        assert all(isinstance(r["price"], str) and isinstance(r["buy"], str) for r in result["rows"])
        assert sum(Decimal(r["buy"]) + Decimal(r["sell"]) for r in result["rows"]) == Decimal(
            result["total_volume"]
        )
        assert Decimal(result["val"]) <= Decimal(result["poc"]) <= Decimal(result["vah"])
        assert result["coverage"]["partial"]  # the range reaches into the future

        code, out, err = await _marketdata(*args[:-1], env=env)
        assert code == 0 and "POC" in out, err

        code, _, err = await _marketdata("profile", "--instrument", "binance-spot:BTCUSDT", "--start", end,
                                         "--end", start, "--json", env=env)  # fmt: skip
        assert code == 2 and "INVALID_ARGUMENT" in err and "range.end_time_ms" in err
    finally:
        up.terminate()
        assert await asyncio.wait_for(up.wait(), 20) == 0
