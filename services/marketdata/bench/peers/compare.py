"""Our collector side by side with cryptofeed, ccxt and the bare loop, in one run on this machine.

Every client gets a fresh replay exchange (TLS, the same seed) offering more trades than any client
takes, and counts the trades it hands on over the same window after the same warm-up. For our
collector that is the trades a StreamTrades subscriber receives over gRPC (normalized, batched,
serialized); for the peers the trades their library passes to a callback; for the bare loop the
trades in the frames it decoded. The ratios are the figures that carry over to other machines.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from marketdata.bench import collector
from marketdata.bench.processes import cpu_seconds
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.tls import write_self_signed

HERE = Path(__file__).parent
WARMUP_S = 2.0
OURS = "marketdata collector"


@dataclass(frozen=True)
class Scenario:
    name: str
    exchange: str  # binance | bybit (the peers' vocabulary)
    instrument: str
    trades_per_frame: int
    offered_rate: float


SCENARIOS = (
    Scenario("bybit-linear, 100 trades/frame", "bybit", "bybit-linear:BTCUSDT", 100, 250_000),
    Scenario("binance-spot, 1 trade/frame", "binance", "binance-spot:BTCUSDT", 1, 150_000),
)


@dataclass
class Result:
    scenario: str
    client: str
    offered_rate: float
    trades_per_s: float
    client_cpu_pct: float
    exchange_cpu_pct: float
    error: str = ""


async def _client_run(
    scenario: Scenario, client: str, command: list[str], tls: collector.Tls, seconds: float
) -> Result:
    instrument = InstrumentId.parse(scenario.instrument)
    exchange = await collector.start_exchange(
        [instrument], scenario.offered_rate, scenario.trades_per_frame, tls=tls
    )
    address = f"127.0.0.1:{exchange.port}"
    argv = [part.replace("{address}", address) for part in command]
    env = {**os.environ, **tls.client_env()}
    result = Result(scenario.name, client, scenario.offered_rate, 0.0, 0.0, 0.0)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        cpu_e, began = cpu_seconds(exchange.pid), time.monotonic()
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=WARMUP_S + seconds + 90)
        except TimeoutError:
            process.kill()
            out, err = await process.communicate()
        elapsed = time.monotonic() - began
        result.exchange_cpu_pct = round(100 * (cpu_seconds(exchange.pid) - cpu_e) / elapsed, 1)
        lines = out.decode(errors="replace").strip().splitlines()
        if process.returncode != 0 or not lines:
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            result.error = f"exit {process.returncode}: " + " | ".join(tail)
            return result
        figures = orjson.loads(lines[-1])
        result.trades_per_s = float(figures["trades_per_s"])
        result.client_cpu_pct = float(figures["cpu_pct"])
    finally:
        await exchange.stop()
    return result


async def _ours(scenario: Scenario, tls: collector.Tls, seconds: float) -> Result:
    instrument = InstrumentId.parse(scenario.instrument)
    figures = await collector.throughput(
        scenario.name, [instrument], scenario.offered_rate, scenario.trades_per_frame, seconds, tls=tls
    )
    return Result(
        scenario.name,
        OURS,
        scenario.offered_rate,
        figures.trades_per_s,
        figures.collector_cpu_pct,
        figures.exchange_cpu_pct,
    )


async def compare(seconds: float, peer_python: Path | None) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-tls-") as directory:
        cert, key = write_self_signed(Path(directory))
        tls = collector.Tls(str(cert), str(key))
        for scenario in SCENARIOS:
            window = [str(WARMUP_S), str(seconds)]
            results.append(await _ours(scenario, tls, seconds))
            bare = [
                sys.executable,
                str(HERE / "bare_trades.py"),
                "wss://{address}",
                scenario.exchange,
                *window,
            ]
            results.append(await _client_run(scenario, "bare loop", bare, tls, seconds))
            if peer_python is None:
                continue
            feed = [
                str(peer_python),
                str(HERE / "cryptofeed_trades.py"),
                "{address}",
                scenario.exchange,
                *window,
            ]
            results.append(await _client_run(scenario, "cryptofeed 2.4.1", feed, tls, seconds))
            ccxt = [
                str(peer_python),
                str(HERE / "ccxt_trades.py"),
                "{address}",
                scenario.exchange,
                *window,
                str(cert),
            ]
            results.append(await _client_run(scenario, "ccxt 4.5.90 (pro)", ccxt, tls, seconds))
    return results


def cpu_us_per_trade(result: Result) -> float:
    """The client's CPU per trade: the figure that stays comparable when the exchange, not the
    client, sets the rate (every client keeping up at the same trades/s)."""
    return result.client_cpu_pct / 100 / result.trades_per_s * 1e6 if result.trades_per_s else 0.0


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | client | trades/s | client CPU % | CPU us/trade | trades/s per core at that cost "
        "| ours / this (trades/s) | this / ours (CPU per trade) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ours = {r.scenario: r for r in results if r.client == OURS}
    for r in results:
        mine = ours.get(r.scenario)
        cost = cpu_us_per_trade(r)
        rate_ratio = mine.trades_per_s / r.trades_per_s if mine and r.trades_per_s else 0.0
        cost_ratio = cost / cpu_us_per_trade(mine) if mine and cpu_us_per_trade(mine) else 0.0
        if r.error:
            lines.append(f"| {r.scenario} | {r.client} | failed: {r.error} | | | | | |")
            continue
        lines.append(
            f"| {r.scenario} | {r.client} | {r.trades_per_s:,.0f} | {r.client_cpu_pct:.1f} | {cost:.2f} "
            f"| {1e6 / cost if cost else 0:,.0f} | {rate_ratio:.2f} | {cost_ratio:.2f} |"
        )
    return "\n".join(lines)
