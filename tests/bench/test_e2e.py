"""`marketdata bench e2e` as a user runs it: every service starts as its own process, both streams
deliver, and the table and JSON account for every process. No figure is asserted beyond "non-zero"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketdata.bench.e2e import PROCESSES
from tests.cli.processes import run_marketdata


@pytest.mark.timeout(300)  # six processes start in turn; slow on a busy machine
async def test_bench_e2e_reports_both_streams_and_every_process(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    code, stdout, stderr = await run_marketdata(
        "bench", "e2e", "--rates", "500", "--seconds", "2", "--out", str(out), env={}, timeout=280
    )
    assert code == 0, stderr
    for name in ("StreamTrades", "StreamOrderFlow", *PROCESSES):
        assert name in stdout
    (run,) = json.loads(out.read_text())["runs"]
    assert run["rate"] == 500 and run["offered"] > 0
    streams = {s["stream"]: s for s in run["streams"]}
    assert set(streams) == {"StreamTrades", "StreamOrderFlow"}
    for stream in streams.values():
        assert stream["sent"] > 0 and stream["delivered"] > 0 and stream["p99_ms"] > 0
    assert streams["StreamOrderFlow"]["updates"] > 0
    cpu = {c["process"]: c["seconds"] for c in run["cpu"]}
    assert list(cpu) == list(PROCESSES)
    assert all(seconds > 0 for seconds in cpu.values()), cpu


async def test_bench_e2e_rejects_bad_rates(tmp_path: Path) -> None:
    for rates in ("", "fast", "1000,-5", "nan"):
        code, stdout, _ = await run_marketdata("bench", "e2e", "--rates", rates, env={}, timeout=30)
        assert code == 2
        assert "--rates must be positive trades/s" in stdout
