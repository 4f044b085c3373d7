"""Retention tiers with archive and restore: what goes, what is archived (one gzip file per instrument
and day), 1m bars rolled up into 1h bars, and `marketdata storage cleanup|restore` putting it back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from marketdata.cli.main import main
from marketdata.storage.archive import DAY_MS
from marketdata.storage.footprints import RES_1H
from marketdata.v1 import storage_service_pb2 as storage_pb2

from .conftest import (
    BTC,
    T0,
    bars_as_oracle,
    oracle,
    running_storage,
    storage_env,
    storage_settings,
    trade,
    walk,
)
from .test_price_fields import HOUR, price_oracle, stored_fields

START = T0 - T0 % DAY_MS  # a UTC midnight
NOW = START + 10 * DAY_MS + 3_600_000


def three_days() -> list:  # type: ignore[type-arg]
    """Trades on days 0, 1 and 2 (20 per hour)."""
    return walk(3 * 24 * 20, start_ms=START, spacing_ms=180_000)


async def test_cleanup_archives_whole_days_rolls_up_and_restore_puts_everything_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive_dir = tmp_path / "archive"
    settings = storage_settings(
        tmp_path,
        storage_retention_trades="9d",  # keeps day 1 onwards (cut at a day boundary)
        storage_retention_footprints_1m="8d",  # keeps day 2 onwards
        storage_retention_book_snapshots="0",
        storage_archive_dir=str(archive_dir),
    )
    trades = three_days()
    async with running_storage(settings) as s:
        await s.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
        retention = s.service.servicer.retention
        dry = await retention.apply(dry_run=True, now_ms=NOW)
        planned = {r.collection: (r.removed, r.cutoff_time_ms) for r in dry.results}
        assert planned == {
            "trades": (480, START + DAY_MS),
            "footprints_1m": (960, START + 2 * DAY_MS),
        }
        assert len(await s.trades(BTC, START, START + 3 * DAY_MS)) == len(trades)  # dry run changed nothing
        done = await retention.apply(dry_run=False, now_ms=NOW)
        results = {r.collection: r for r in done.results}
        assert results["trades"].removed == results["trades"].archived == 480
        # 1h bars were kept on ingest: the roll-up before removing 1m bars has nothing to add
        assert results["footprints_1m"].removed == 960 and results["footprints_1m"].rolled_up == 0
        files = sorted(p.relative_to(archive_dir).as_posix() for p in archive_dir.rglob("*.gz"))
        assert files == [f"binance-futures/BTCUSDT/{day}.jsonl.gz" for day in ("2023-11-14", "2023-11-15")]
        remaining = await s.trades(BTC, START, START + 3 * DAY_MS)
        assert [t.trade_id for t in remaining] == [t.trade_id for t in trades[480:]]
        hourly = await s.footprints(
            BTC, START, START + 3 * DAY_MS, resolution=storage_pb2.FOOTPRINT_RESOLUTION_1H
        )
        assert bars_as_oracle(hourly) == oracle(trades, "0.10", bar_ms=3_600_000)
        again = await retention.apply(dry_run=False, now_ms=NOW)
        assert not [r for r in again.results if r.removed]  # idempotent
    # Archive lines are readable JSON with exact decimals.
    with gzip.open(archive_dir / "binance-futures/BTCUSDT/2023-11-14.jsonl.gz", "rt") as f:
        lines = [json.loads(line) for line in f]
    assert lines[0]["kind"] == "header" and lines[0]["tick_size"] == "0.10"
    first_trade = next(r for r in lines if r["kind"] == "trade")
    assert (first_trade["trade_id"], first_trade["price"], first_trade["size"]) == (
        trades[0].trade_id,
        trades[0].price,
        trades[0].size,
    )
    # restore (store closed): everything back, footprints not counted twice
    env = storage_env(tmp_path, storage_archive_dir=str(archive_dir))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["storage", "restore"]) == 0
    assert main(["storage", "restore", "--from", "2023-11-14", "--to", "2023-11-14"]) == 0  # again: no-op
    async with running_storage(storage_settings(tmp_path)) as s:
        got = await s.trades(BTC, START, START + 3 * DAY_MS)
        assert [t.trade_id for t in got] == [t.trade_id for t in trades]
        bars = await s.footprints(BTC, START, START + 3 * DAY_MS)
        assert bars_as_oracle(bars) == oracle(trades, "0.10")


def test_cleanup_cli_dry_run_without_a_running_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in storage_env(tmp_path, storage_retention_trades="1d").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MARKETDATA_STORAGE_ADDR", raising=False)
    assert main(["storage", "cleanup", "--dry-run"]) == 0
    assert "nothing is older than its retention" in capsys.readouterr().out


async def test_hour_bars_survive_retention_and_late_trades_into_removed_minutes(tmp_path: Path) -> None:
    settings = storage_settings(
        tmp_path,
        storage_retention_trades="9d",  # raw trades of day 0 go, day 1 stays
        storage_retention_footprints_1m="8d",  # 1m bars of days 0 and 1 go
        storage_retention_book_snapshots="0",
    )
    trades = three_days()
    async with running_storage(settings) as s:
        await s.write(BTC, [trades[i : i + 500] for i in range(0, len(trades), 500)])
        before = await s.footprints(BTC, START, START + 3 * DAY_MS, resolution=RES_1H)
        await s.service.servicer.retention.apply(dry_run=False, now_ms=NOW)
        assert await s.footprints(BTC, START, START + 2 * DAY_MS) == []  # 1m bars gone
        assert await s.footprints(BTC, START, START + 3 * DAY_MS, resolution=RES_1H) == before  # untouched
        day0_hour, day1_hour = START + 5 * HOUR, START + DAY_MS + 5 * HOUR
        late = [
            trade("late-0", "65001.00", "2", True, day0_hour + 100),
            trade("late-1", "64999.90", "3", False, day1_hour + 100),
        ]
        await s.write(BTC, [late])
        hourly = await s.footprints(BTC, START, START + 3 * DAY_MS, resolution=RES_1H)
        assert bars_as_oracle(hourly) == oracle([*trades, *late], "0.10", bar_ms=HOUR)
        by_start = {b.start_time_ms: b for b in hourly}
        # day 1 still has its raw trades: the hour's price fields are recomputed from them exactly
        expected = price_oracle([*trades, *late], HOUR)[day1_hour]
        assert stored_fields([by_start[day1_hour]])[day1_hour] == expected
        assert by_start[day1_hour].version > {b.start_time_ms: b for b in before}[day1_hour].version
        # day 0's raw trades are gone: its hour keeps exact rows but cannot know its order any more
        assert (by_start[day0_hour].open, by_start[day0_hour].max_delta) == ("", "")
