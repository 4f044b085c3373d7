"""`marketdata bench memory`: resident memory of every service of `marketdata up --replay` carrying 20
instruments, sampled through a long run. A leak shows as growth after the warm-up: the report gives
each service's anonymous memory (heap and stacks, RssAnon) when warm, at the end, the peak, and the
slope of a straight line fitted to the samples after the warm-up (MB per 10 minutes), and beside it
the total resident memory, which also counts mapped file pages (SQLite's mmap of a growing database
file: page cache the kernel reclaims, not a leak)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from marketdata.bench.collector import machine
from marketdata.bench.processes import child_processes, local_env, rss_bytes

# The replay exchange is the test stand-in, not a service: it keeps the last 200k trades per instrument
# for its REST endpoints, so it grows until that history is full.
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
MARKETS = ("binance-spot", "binance-futures", "bybit-spot", "bybit-linear")
MB = 1024 * 1024


@dataclass
class ServiceMemory:
    service: str
    warm_mb: float  # mean over the first minute after the warm-up (a quarter of a short run)
    end_mb: float  # mean over the last minute (idem)
    peak_mb: float
    growth_mb: float  # end - warm
    slope_mb_per_10min: float  # least-squares slope of the samples after the warm-up
    end_total_mb: float = 0.0  # VmRSS at the end: anonymous + mapped files


@dataclass
class Report:
    machine: dict[str, Any]
    minutes: float
    warmup_minutes: float
    instruments: int
    trades_per_s: float
    services: list[ServiceMemory] = field(default_factory=list)
    # service -> [(seconds since start, RssAnon MB)], and the same for VmRSS
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    total_samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def instruments(count: int) -> list[str]:
    keys = [f"{market}:{symbol}" for symbol in SYMBOLS for market in MARKETS]
    return keys[:count]


def service_name(command_line: str) -> str:
    """`... marketdata.cli.main serve storage` -> storage; the replay exchange by its subcommand."""
    words = command_line.split()
    if "serve" in words and words.index("serve") + 1 < len(words):
        return words[words.index("serve") + 1]
    return "replay-exchange" if "replay-exchange" in words else words[-1] if words else "?"


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope in MB per second."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (m - mean_m) for t, m in points) / spread if spread else 0.0


def summarize(name: str, samples: list[tuple[float, float]], warmup_s: float) -> ServiceMemory:
    after = [(t, m) for t, m in samples if t >= warmup_s] or samples
    # a minute at each end, or a quarter of a short run, so that the two never overlap
    edge = min(60.0, (after[-1][0] - after[0][0]) / 4)
    first = [m for t, m in after if t <= after[0][0] + edge]
    last = [m for t, m in after if t >= after[-1][0] - edge]
    warm, end = sum(first) / len(first), sum(last) / len(last)
    return ServiceMemory(
        service=name,
        warm_mb=round(warm, 1),
        end_mb=round(end, 1),
        peak_mb=round(max(m for _, m in samples), 1),
        growth_mb=round(end - warm, 1),
        slope_mb_per_10min=round(_slope(after) * 600, 2),
    )


def _log_text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def _wait_banner(log: Path, process: asyncio.subprocess.Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while "Ctrl-C" not in _log_text(log):
        if process.returncode is not None or time.monotonic() > deadline:
            tail = _log_text(log).strip().splitlines()[-5:]
            raise RuntimeError("`marketdata up --replay` did not start: " + " | ".join(tail))
        await asyncio.sleep(0.2)


async def run(minutes: float, warmup_minutes: float, count: int, rate: float, sample_s: float) -> Report:
    keys = instruments(count)
    report = Report(machine(), minutes, warmup_minutes, len(keys), rate)
    with tempfile.TemporaryDirectory(prefix="marketdata-bench-memory-") as directory:
        env = local_env(directory, instruments=",".join(keys), log_level="WARNING")
        log = Path(directory) / "up.log"
        with log.open("wb") as sink:
            up = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "marketdata.cli.main", "up", "--replay",
                "--replay-rate", str(rate / len(keys)),
                env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL, stderr=sink,
            )  # fmt: skip
        try:
            await _wait_banner(log, up)
            began = time.monotonic()
            services = {pid: service_name(cmd) for pid, cmd in child_processes(up.pid).items()}
            services[up.pid] = "up (supervisor)"
            while (elapsed := time.monotonic() - began) < minutes * 60:
                for pid, name in services.items():
                    anon, total = rss_bytes(pid, "RssAnon"), rss_bytes(pid)
                    if total:
                        report.samples.setdefault(name, []).append((round(elapsed, 1), round(anon / MB, 2)))
                        report.total_samples.setdefault(name, []).append(
                            (round(elapsed, 1), round(total / MB, 2))
                        )
                print(
                    f"\r{elapsed / 60:5.1f} min  "
                    + "  ".join(f"{n} {s[-1][1]:.0f} MB" for n, s in report.samples.items()),
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                await asyncio.sleep(sample_s)
            print(file=sys.stderr)
        finally:
            with contextlib.suppress(ProcessLookupError):
                up.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(up.wait(), 30)
    report.services = [summarize(n, s, warmup_minutes * 60) for n, s in report.samples.items()]
    for service in report.services:
        service.end_total_mb = report.total_samples[service.service][-1][1]
    return report


def table(report: Report) -> str:
    lines = [
        f"machine: {report.machine['cpus']} cpus, Python {report.machine['python']}; "
        f"{report.instruments} instruments, {report.trades_per_s:,.0f} trades/s, {report.minutes:g} min "
        f"(warm-up {report.warmup_minutes:g} min)",
        "",
        "| service | anon MB warm | anon MB end | anon MB peak | growth MB | slope MB/10 min | total RSS MB end |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in report.services:
        lines.append(
            f"| {s.service} | {s.warm_mb} | {s.end_mb} | {s.peak_mb} | {s.growth_mb} | {s.slope_mb_per_10min} "
            f"| {s.end_total_mb} |"
        )
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    return asdict(report)


def main(minutes: float, warmup_minutes: float, count: int, rate: float, sample_s: float) -> Report:
    return asyncio.run(run(minutes, warmup_minutes, count, rate, sample_s))
