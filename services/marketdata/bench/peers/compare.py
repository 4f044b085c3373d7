"""Our collector side by side with cryptofeed, ccxt and the bare loop, in one run on this machine.

Every client gets a fresh replay exchange (TLS, the same seed) in firehose mode: trades offered as
fast as the client reads them (pre-rendered blocks, flow control), so each figure is the client's own
ceiling, not the exchange's; the exchange's waiting share says so (near 100 %: the client set the
rate). Each counts the trades it hands on over the same window after the same warm-up. For our
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

import aiohttp
import orjson

from marketdata.bench import collector
from marketdata.bench.processes import cpu_seconds
from marketdata.core.instruments import InstrumentId
from marketdata.replay_exchange.tls import write_self_signed

HERE = Path(__file__).parent
WARMUP_S = 2.0
OURS = "marketdata collector"


FIREHOSE = 0.0  # offered rate: as fast as the client reads (replay exchange --firehose)
# The targets, as throughput ratios: ours >= 3x cryptofeed, >= 50 % of the bare loop.
TARGET_OVER_CRYPTOFEED = 3.0
TARGET_OF_BARE = 0.5


@dataclass(frozen=True)
class Scenario:
    name: str
    exchange: str  # binance | bybit (the peers' vocabulary)
    instrument: str
    trades_per_frame: int
    offered_rate: float = FIREHOSE
    profile_name: str = ""  # docs/profiles/collector-<profile_name>.txt


SCENARIOS = (
    Scenario("bybit-linear, 100 trades/frame", "bybit", "bybit-linear:BTCUSDT", 100, profile_name="bybit"),
    Scenario("binance-spot, 1 trade/frame", "binance", "binance-spot:BTCUSDT", 1, profile_name="binance"),
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
    # (last id - first id + 1) - trades over the window; 0: no loss, no duplicates; None: unchecked
    id_span_mismatch: int | None = None
    exchange_waited_pct: float | None = None  # firehose: share of the run it waited for the client
    subscriber_cpu_pct: float | None = None  # ours: the StreamTrades subscriber process beside it


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
        waited = await _waited_s(exchange.port, tls)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=WARMUP_S + seconds + 90)
        except TimeoutError:
            process.kill()
            out, err = await process.communicate()
        elapsed = time.monotonic() - began
        result.exchange_cpu_pct = round(100 * (cpu_seconds(exchange.pid) - cpu_e) / elapsed, 1)
        if process.returncode == 0 and not scenario.offered_rate:
            waited = await _waited_s(exchange.port, tls) - waited
            result.exchange_waited_pct = round(100 * min(waited / elapsed, 1.0), 1)
        lines = out.decode(errors="replace").strip().splitlines()
        if process.returncode != 0 or not lines:
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            result.error = f"exit {process.returncode}: " + " | ".join(tail)
            return result
        figures = orjson.loads(lines[-1])
        result.trades_per_s = float(figures["trades_per_s"])
        result.client_cpu_pct = float(figures["cpu_pct"])
        result.id_span_mismatch = figures.get("id_span_mismatch")
    finally:
        await exchange.stop()
    return result


async def _waited_s(port: int, tls: collector.Tls) -> float:
    """Seconds the firehose has waited for its client so far (the client reading is the limit)."""
    try:
        return await collector.exchange_waited_s(port, tls)
    except (OSError, aiohttp.ClientError):
        return 0.0  # the figure is left out rather than failing the comparison


async def _ours(scenario: Scenario, tls: collector.Tls, seconds: float, profiles: Path | None) -> Result:
    """Trades a StreamTrades subscriber receives over gRPC (normalized, batched); with `profiles`, a
    second run under py-spy writes collector-<name>.txt there (its figures are not reported: the
    sampler takes CPU from the 2 cores the measured run has to itself)."""
    instrument = InstrumentId.parse(scenario.instrument)
    figures = await collector.throughput(
        scenario.name, [instrument], scenario.offered_rate, scenario.trades_per_frame, seconds, tls=tls
    )
    if profiles is not None:
        await collector.throughput(
            scenario.name,
            [instrument],
            scenario.offered_rate,
            scenario.trades_per_frame,
            seconds,
            tls=tls,
            profile=profiles / f"collector-{scenario.profile_name}.txt",
        )
    return Result(
        scenario.name,
        OURS,
        scenario.offered_rate,
        figures.trades_per_s,
        figures.collector_cpu_pct,
        figures.exchange_cpu_pct,
        id_span_mismatch=figures.id_span_mismatch,
        exchange_waited_pct=figures.exchange_waited_pct,
        subscriber_cpu_pct=figures.subscriber_cpu_pct,
    )


async def compare(seconds: float, peer_python: Path | None, profiles: Path | None = None) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-tls-") as directory:
        cert, key = write_self_signed(Path(directory))
        tls = collector.Tls(str(cert), str(key))
        for scenario in SCENARIOS:
            window = [str(WARMUP_S), str(seconds)]
            results.append(await _ours(scenario, tls, seconds, profiles))
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
        "| scenario | client | trades/s | client CPU % (+ gRPC subscriber) | CPU us/trade | ours / this (trades/s) "
        "| ids: lost + repeated | exchange waited for client % | exchange CPU % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ours = {r.scenario: r for r in results if r.client == OURS}
    for r in results:
        if r.error:
            lines.append(f"| {r.scenario} | {r.client} | failed: {r.error} | | | | | | |")
            continue
        mine = ours.get(r.scenario)
        rate_ratio = mine.trades_per_s / r.trades_per_s if mine and r.trades_per_s else 0.0
        ids = "n/a" if r.id_span_mismatch is None else str(r.id_span_mismatch)
        waited = "paced" if r.exchange_waited_pct is None else f"{r.exchange_waited_pct:.0f}"
        cpu = f"{r.client_cpu_pct:.1f}"
        if r.subscriber_cpu_pct is not None:
            cpu += f" (+ {r.subscriber_cpu_pct:.1f})"
        lines.append(
            f"| {r.scenario} | {r.client} | {r.trades_per_s:,.0f} | {cpu} "
            f"| {cpu_us_per_trade(r):.2f} | {rate_ratio:.2f} | {ids} | {waited} | {r.exchange_cpu_pct:.0f} |"
        )
    lines += ["", *targets(results)]
    return "\n".join(lines)


def targets(results: list[Result]) -> list[str]:
    """The issue's two throughput ratios per scenario, against their targets."""
    out = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        rows = {r.client.split()[0]: r for r in results if r.scenario == scenario and not r.error}
        mine = rows.get("marketdata")
        if mine is None or not mine.trades_per_s:
            continue
        parts = []
        for client, target, label in (
            ("cryptofeed", TARGET_OVER_CRYPTOFEED, "ours / cryptofeed"),
            ("bare", TARGET_OF_BARE, "ours / bare loop"),
        ):
            peer = rows.get(client)
            if peer is not None and peer.trades_per_s:
                ratio = mine.trades_per_s / peer.trades_per_s
                verdict = "met" if ratio >= target else "not met"
                parts.append(f"{label} = {ratio:.2f} (target >= {target:g}: {verdict})")
        if parts:
            out.append(f"- {scenario}: " + "; ".join(parts))
    return out
