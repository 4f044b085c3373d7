"""`marketdata storage cleanup|restore|stats`: retention on demand, archive restore, what is stored.

cleanup and stats ask the running storage service (`--addr`, default MARKETDATA_STORAGE_ADDR); with no
address they open the configured store directly. restore always opens the store directly (SQLite
allows it while the service runs; the service's cached bars check their version before use).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from marketdata.cli.calls import call, command_settings
from marketdata.core.config import Settings, env_name
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId
from marketdata.core.trade_json import trade_from_record
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import storage_service_pb2_grpc as storage_grpc


def configure_parser(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    cleanup = what.add_parser("cleanup", help="apply the retention tiers now (archiving first if configured)")
    cleanup.add_argument(
        "--dry-run", action="store_true", help="report what would be removed; change nothing"
    )
    cleanup.add_argument(
        "--addr", default=None, help="storage service (default MARKETDATA_STORAGE_ADDR; none: open the store)"
    )
    cleanup.set_defaults(handler=run_cleanup)
    stats = what.add_parser("stats", help="per collection and instrument: count, bytes, oldest, newest")
    stats.add_argument(
        "--addr", default=None, help="storage service (default MARKETDATA_STORAGE_ADDR; none: open the store)"
    )
    stats.set_defaults(handler=run_stats)
    restore = what.add_parser("restore", help="put archived data back into the store (idempotent)")
    restore.add_argument(
        "files", nargs="*", type=Path, help="archive files (default: everything under --archive-dir)"
    )
    restore.add_argument(
        "--archive-dir", type=Path, default=None, help="default MARKETDATA_STORAGE_ARCHIVE_DIR"
    )
    restore.add_argument(
        "--instrument", action="append", default=[], metavar="KEY", help="only this instrument (repeatable)"
    )
    restore.add_argument(
        "--from", dest="first_day", default=None, metavar="YYYY-MM-DD", help="first day (inclusive)"
    )
    restore.add_argument(
        "--to", dest="last_day", default=None, metavar="YYYY-MM-DD", help="last day (inclusive)"
    )
    restore.set_defaults(handler=run_restore)


def _day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000)) if ms else "-"


def _print_retention(response: storage_pb2.ApplyRetentionResponse) -> None:
    verb = "would remove" if response.dry_run else "removed"
    if not response.results:
        print("nothing is older than its retention")
        return
    print(
        f"{'collection':<16} {'instrument':<28} {'before':<11} {verb:>14} {'archived':>10} {'rolled up':>10}"
    )
    for r in response.results:
        key = InstrumentId.from_proto(r.instrument).key
        print(
            f"{r.collection:<16} {key:<28} {_day(r.cutoff_time_ms):<11} {r.removed:>14} {r.archived:>10} {r.rolled_up:>10}"
        )
    for r in response.results:
        for path in r.archive_files:
            print(f"  archived to {path}")


async def _local_store(settings: Settings) -> Any:
    from marketdata.storage.backends import open_backend
    from marketdata.storage.metrics import StorageMetrics, StoreState
    from marketdata.storage.store import Store

    state = StoreState()
    store = Store(open_backend(settings), state, StorageMetrics(CollectorRegistry(), state))
    await store.start()
    return store


async def cleanup(settings: Settings, dry_run: bool, addr: str) -> storage_pb2.ApplyRetentionResponse:
    if addr:
        async with create_channel(addr) as channel:
            stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
            response: storage_pb2.ApplyRetentionResponse = await stub.ApplyRetention(
                storage_pb2.ApplyRetentionRequest(dry_run=dry_run), timeout=3600
            )
            return response
    from marketdata.storage.retention import Retention

    store = await _local_store(settings)
    try:
        return await Retention(store, settings, None).apply(dry_run=dry_run)
    finally:
        await store.stop()


def run_cleanup(args: argparse.Namespace) -> int:
    settings = command_settings("marketdata storage")
    addr = settings.storage_addr if args.addr is None else args.addr
    response = call("marketdata storage cleanup", cleanup(settings, args.dry_run, addr), addr)
    _print_retention(response)
    return 0


async def stats(settings: Settings, addr: str) -> storage_pb2.GetStorageStatsResponse:
    if addr:
        async with create_channel(addr) as channel:
            stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
            response: storage_pb2.GetStorageStatsResponse = await stub.GetStorageStats(
                storage_pb2.GetStorageStatsRequest(), timeout=60
            )
            return response
    store = await _local_store(settings)
    try:
        rows = await store.run_read(store.backend.stats)
        return storage_pb2.GetStorageStatsResponse(
            backend=store.backend.name,
            writable=True,
            store_bytes=await store.run_read(store.backend.store_bytes),
            collections=[s.to_proto() for s in sorted(rows, key=lambda s: (s.instrument.key, s.collection))],
        )
    finally:
        await store.stop()


def run_stats(args: argparse.Namespace) -> int:
    settings = command_settings("marketdata storage")
    addr = settings.storage_addr if args.addr is None else args.addr
    response = call("marketdata storage stats", stats(settings, addr), addr)
    state = "writable" if response.writable else f"NOT WRITABLE ({response.last_error})"
    print(f"{response.backend}: {response.store_bytes / 1e6:.1f} MB, {state}")
    print(f"{'collection':<16} {'instrument':<28} {'count':>12} {'MB':>9} {'oldest':<11} {'newest':<11}")
    for c in response.collections:
        key = InstrumentId.from_proto(c.instrument).key
        print(
            f"{c.collection:<16} {key:<28} {c.count:>12} {c.bytes / 1e6:>9.2f} "
            f"{_day(c.oldest_time_ms):<11} {_day(c.newest_time_ms):<11}"
        )
    return 0


def restore(settings: Settings, files: Sequence[Path], out: Any = sys.stdout) -> dict[str, int]:
    """Put archive files back (directly into the configured store); totals by kind."""
    from marketdata.storage import archive
    from marketdata.storage.backends import open_backend
    from marketdata.storage.backends.base import RestoreSession
    from marketdata.storage.footprints import RES_1H, RES_1M

    backend = open_backend(settings)
    backend.open()
    totals = {"trades": 0, "trades_present": 0, "book_snapshots": 0, "footprints": 0}
    try:
        for path in files:
            session = RestoreSession()
            instrument: InstrumentId | None = None
            tick = ""
            trades: list[Any] = []
            snapshots: list[Any] = []
            bars: dict[int, list[bytes]] = {RES_1M: [], RES_1H: []}

            def flush_trades(
                instrument: InstrumentId | None, tick: str, trades: list[Any], session: RestoreSession
            ) -> None:
                if trades and instrument is not None:
                    outcome = backend.restore_trades(instrument, tick, trades, session)
                    totals["trades"] += outcome.inserted
                    totals["trades_present"] += outcome.duplicates
                trades.clear()

            for record in archive.read_records(path):
                kind = record["kind"]
                if kind == "header":
                    flush_trades(instrument, tick, trades, session)
                    instrument = InstrumentId.parse(record["instrument"])
                    tick = record.get("tick_size", "") or tick
                elif kind == "trade":
                    trades.append(trade_from_record(record))
                    if len(trades) >= 20_000:
                        flush_trades(instrument, tick, trades, session)
                elif kind == "book_snapshot":
                    snapshots.append(archive.snapshot_from_record(record))
                elif kind in ("footprint_1m", "footprint_1h"):
                    bar = archive.bar_from_record(record)
                    bars[RES_1M if kind == "footprint_1m" else RES_1H].append(bar.SerializeToString())
            flush_trades(instrument, tick, trades, session)
            if snapshots:
                for outcome in backend.write_book_snapshots([snapshots]):
                    if isinstance(outcome, Exception):
                        raise outcome
                    totals["book_snapshots"] += outcome.inserted
            if instrument is not None:
                for resolution, payloads in bars.items():
                    totals["footprints"] += backend.put_bars(instrument, resolution, payloads, False)
            print(f"restored {path}", file=out)
    finally:
        backend.close()
    return totals


def run_restore(args: argparse.Namespace) -> int:
    from marketdata.storage import archive

    settings = command_settings("marketdata storage")
    files: list[Path] = list(args.files)
    if not files:
        root = args.archive_dir or (
            Path(settings.storage_archive_dir) if settings.storage_archive_dir else None
        )
        if root is None:
            print(
                f"marketdata storage restore: give files, --archive-dir or {env_name('storage_archive_dir')}",
                file=sys.stderr,
            )
            return 2
        try:
            wanted = {InstrumentId.parse(k) for k in args.instrument} or None
            first = archive.parse_day(args.first_day) if args.first_day else None
            last = archive.parse_day(args.last_day) if args.last_day else None
        except ValueError as exc:
            print(f"marketdata storage restore: {exc}", file=sys.stderr)
            return 2
        files = archive.archive_files(root, wanted, first, last)
        if not files:
            print(f"marketdata storage restore: no archive files under {root} match", file=sys.stderr)
            return 1
    try:
        totals = restore(settings, files)
    except (OSError, ValueError) as exc:
        print(f"marketdata storage restore: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored {totals['trades']} trades ({totals['trades_present']} were present), "
        f"{totals['book_snapshots']} book snapshots, {totals['footprints']} footprint bars"
    )
    return 0
