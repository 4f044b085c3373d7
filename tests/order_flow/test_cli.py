"""`marketdata up --replay` starts the order-flow service; `marketdata flow --json` prints its bars and
`marketdata tail flow` its live updates, end to end from the replay exchange."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal
from pathlib import Path

import orjson

from tests.cli.processes import run_marketdata, running_up, up_env
from tests.storage.conftest import free_port


async def test_up_starts_order_flow_and_flow_json(tmp_path: Path) -> None:
    env = up_env(
        tmp_path,
        instruments="binance-spot:BTCUSDT",
        log_level="WARNING",
        order_flow_port=str(free_port()),
        order_flow_metrics_port=str(free_port()),
    )
    async with running_up(env, "--replay", "--replay-rate", "200") as banner:
        assert f"grpc 127.0.0.1:{env['MARKETDATA_ORDER_FLOW_PORT']}" in banner
        await asyncio.sleep(1.5)
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        args = ["flow", "--instrument", "binance-spot:BTCUSDT", "--timeframe", "1m",
                "--start", start, "--end", end, "--json"]  # fmt: skip
        code, out, err = await run_marketdata(*args, env=env)
        assert code == 0, err
        result = orjson.loads(out)
        bars = result["bars"]
        assert bars and result["timeframe"] == "1m" and result["imbalance_ratio"] == "3"
        traded = [b for b in bars if b["trades"]]
        assert traded, bars
        for bar in traded:
            assert {
                "time",
                "open",
                "high",
                "low",
                "close",
                "buy",
                "sell",
                "delta",
                "cvd",
                "imbalances",
                "zones",
            } <= bar.keys()
            assert all(
                isinstance(bar[k], str)
                for k in ("open", "high", "low", "close", "buy", "sell", "delta", "cvd")
            )
            assert Decimal(bar["buy"]) - Decimal(bar["sell"]) == Decimal(bar["delta"])
            assert Decimal(bar["low"]) <= Decimal(bar["open"]) <= Decimal(bar["high"])
        # the CVD of the day's bars is the running sum of their deltas (the day began before the range
        # only if the range crosses midnight; then the first bar carries the earlier part)
        for before, after in itertools.pairwise(traded):
            if before["time"][:10] == after["time"][:10] and after["start_time_ms"] == before["end_time_ms"]:
                assert Decimal(after["cvd"]) == Decimal(before["cvd"]) + Decimal(after["delta"])

        code, out, err = await run_marketdata(
            "tail", "flow", "--instrument", "binance-spot:BTCUSDT", "--json", "--limit", "3", env=env
        )
        assert code == 0, err
        updates = [orjson.loads(line) for line in out.splitlines()]
        assert len(updates) == 3 and updates[0]["snapshot"]
        assert [u["sequence"] for u in updates[1:]] == [
            updates[0]["sequence"] + 1,
            updates[0]["sequence"] + 2,
        ]

        code, _, err = await run_marketdata(
            "flow", "--instrument", "binance-spot:BTCUSDT", "--start", end, "--end", start, "--json", env=env
        )
        assert code == 2 and "INVALID_ARGUMENT" in err and "end_time_ms" in err
