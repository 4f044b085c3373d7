"""`marketdata up --replay` starts the volume-profile service; `marketdata profile --json` prints it."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import orjson

from tests.cli.processes import run_marketdata, running_up, up_env


async def test_up_starts_volume_profile_and_profile_json(tmp_path: Path) -> None:
    env = up_env(tmp_path, instruments="binance-spot:BTCUSDT,bybit-spot:BTCUSDT", log_level="WARNING")
    async with running_up(env, "--replay", "--replay-rate", "100") as banner:
        assert f"grpc 127.0.0.1:{env['MARKETDATA_VOLUME_PROFILE_PORT']}" in banner
        await asyncio.sleep(1.5)
        now = time.gmtime(time.time() + 120)
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", now)
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
        args = ["profile", "--instrument", "binance-spot:BTCUSDT", "--instrument", "bybit-spot:BTCUSDT",
                "--start", start, "--end", end, "--row-ticks", "10", "--json"]  # fmt: skip
        code, out, err = await run_marketdata(*args, env=env)
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

        code, out, err = await run_marketdata(*args[:-1], env=env)
        assert code == 0 and "POC" in out, err

        code, _, err = await run_marketdata("profile", "--instrument", "binance-spot:BTCUSDT", "--start", end,
                                         "--end", start, "--json", env=env)  # fmt: skip
        assert code == 2 and "INVALID_ARGUMENT" in err and "range.end_time_ms" in err
