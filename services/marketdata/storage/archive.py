"""Archive files: what retention removes, as gzip-compressed JSON lines, one file per instrument and day.

    <archive dir>/<market>/<SYMBOL>/<YYYY-MM-DD>.jsonl.gz

Each retention run that removes part of that day appends one gzip member (gzip readers see one
stream): a header line {"kind": "header", "collection", "instrument", "day", "tick_size", ...} and
then one line per entry: {"kind": "trade", ...} (decimals as strings, exactly as stored; the same keys
as `marketdata tail trades --json`, plus event_time_ms and tick_direction), {"kind": "book_snapshot",
...} or {"kind": "footprint_1m" | "footprint_1h", ...} (the FootprintBar in proto JSON form). The
member is fsynced before the data is removed from the store, so a crash can at worst leave an entry
both archived and stored (restoring it is then a no-op: writes are idempotent).
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import json_format

from marketdata.core.instruments import InstrumentId
from marketdata.core.trade_json import trade_to_record
from marketdata.v1 import common_pb2, order_book_pb2
from marketdata.v1 import storage_service_pb2 as storage_pb2

DAY_MS = 86_400_000
KIND_OF_COLLECTION = {
    "trades": "trade",
    "book_snapshots": "book_snapshot",
    "footprints_1m": "footprint_1m",
    "footprints_1h": "footprint_1h",
}


def day_text(day_ms: int) -> str:
    return datetime.fromtimestamp(day_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def parse_day(text: str) -> int:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not a day like 2024-05-01") from None
    return int(day.timestamp() * 1000)


def archive_path(root: Path, instrument: InstrumentId, day_ms: int) -> Path:
    return root / instrument.market.value / instrument.symbol / f"{day_text(day_ms)}.jsonl.gz"


def trade_record(instrument: str, trade: common_pb2.Trade) -> dict[str, Any]:
    return {"kind": "trade", "instrument": instrument, **trade_to_record(trade)}


def message_record(kind: str, instrument: str, message: Any) -> dict[str, Any]:
    record = json_format.MessageToDict(message, preserving_proto_field_name=True)
    record.pop("instrument", None)
    return {"kind": kind, "instrument": instrument, **record}


def snapshot_from_record(record: dict[str, Any]) -> order_book_pb2.OrderBookSnapshot:
    body = {k: v for k, v in record.items() if k not in ("kind", "instrument")}
    snapshot = json_format.ParseDict(body, order_book_pb2.OrderBookSnapshot())
    snapshot.instrument.CopyFrom(InstrumentId.parse(record["instrument"]).to_proto())
    return snapshot


def bar_from_record(record: dict[str, Any]) -> storage_pb2.FootprintBar:
    body = {k: v for k, v in record.items() if k not in ("kind", "instrument")}
    return json_format.ParseDict(body, storage_pb2.FootprintBar())


def record_of(collection: str, instrument: InstrumentId, payload: bytes) -> dict[str, Any]:
    """The archive line of one stored message (as the backend's export_range yields it)."""
    if collection == "trades":
        return trade_record(instrument.key, common_pb2.Trade.FromString(payload))
    if collection == "book_snapshots":
        message: Any = order_book_pb2.OrderBookSnapshot.FromString(payload)
    else:
        message = storage_pb2.FootprintBar.FromString(payload)
    return message_record(KIND_OF_COLLECTION[collection], instrument.key, message)


def append_member(path: Path, header: dict[str, Any], lines: Iterable[dict[str, Any]]) -> int:
    """Append one gzip member (header + lines) and fsync it; the number of lines written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "ab") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as zipped:
            zipped.write(
                orjson.dumps({"kind": "header", **header, "written_ms": int(time.time() * 1000)}) + b"\n"
            )
            for line in lines:
                zipped.write(orjson.dumps(line) + b"\n")
                count += 1
        raw.flush()
        os.fsync(raw.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return count


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rb") as zipped:
        for n, line in enumerate(zipped, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
            if not isinstance(record, dict) or "kind" not in record:
                raise ValueError(f"{path}:{n}: not an archive record")
            yield record


def archive_files(
    root: Path, instruments: set[InstrumentId] | None, first_day: int | None, last_day: int | None
) -> list[Path]:
    """Archive files under root, filtered by instrument and day (inclusive), in name order."""
    out: list[Path] = []
    for path in sorted(root.glob("*/*/*.jsonl.gz")):
        try:
            instrument = InstrumentId.parse(f"{path.parent.parent.name}:{path.parent.name}")
            day = parse_day(path.name.removesuffix(".jsonl.gz"))
        except ValueError:
            continue
        if instruments and instrument not in instruments:
            continue
        if (first_day is not None and day < first_day) or (last_day is not None and day > last_day):
            continue
        out.append(path)
    return out
