"""`marketdata bench soak`: the whole system for a long run under faults, checking that nothing is lost
and that memory stays flat.

Every service runs as its own `marketdata ...` process on loopback: the replay exchange (synthetic
trades at `--rate` over `--instruments` instruments on Binance spot, Binance USD-M and Bybit linear),
storage (embedded SQLite), the collector (writing to storage) and the volume-profile service. Every
`--fault-every` seconds the next fault of FAULTS is injected (exchange side through the replay
exchange's control API; our side by killing or restarting processes), and a GetVolumeProfile call
checks that answers continue. Every `--sample-seconds` the resident memory of each process is sampled.

At the end the generator stops and, once storage has caught up, the run is checked:
- per instrument, trades stored (GetStorageStats) = trades the exchange generated; storage enforces
  trade identity, so equal counts mean nothing lost and nothing twice;
- exactly: the ids of the trades the exchange still holds (its last `--history-size` per instrument)
  equal the ids storage returns for that time range;
- the volume profile of that range equals a Decimal recompute from the exchange's trades, row by row;
- memory: growth of each process from the end of the warm-up (5 minutes, at most a third of the run)
  to the end (MB, and MB per hour).
Bybit spot is left out: its REST serves only the last 60 trades, so a reconnect at these rates loses
trades that no client can fetch back (the collector reports such gaps; see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import aiohttp

from marketdata.bench.collector import machine
from marketdata.bench.processes import Service, free_port, start_service
from marketdata.core.grpc_client import create_channel
from marketdata.core.instruments import InstrumentId, MarketKey
from marketdata.replay_exchange.specs import spec_for
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import storage_service_pb2_grpc as storage_grpc
from marketdata.v1 import volume_profile_service_pb2 as profile_pb2
from marketdata.v1 import volume_profile_service_pb2_grpc as profile_grpc

# Markets whose REST lets every reconnect window be backfilled at soak rates (with an API key for
# USD-M historicalTrades); instruments are dealt round-robin over them.
MARKETS = (MarketKey.BINANCE_SPOT, MarketKey.BINANCE_FUTURES, MarketKey.BYBIT_LINEAR)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT")
HISTORY_SIZE = 200_000
SETTLE_TIMEOUT_S = 180.0
PROFILE_ROWS = 2000  # at most about this many rows in the checked profiles
# Memory growth is measured after this (at most a third of the run): the volume-profile service keeps
# the last minutes of live trades, so its memory rises until that window is full.
WARMUP_S = 300.0


def instruments(count: int) -> list[InstrumentId]:
    """`count` instruments, dealt over MARKETS: BTCUSDT on each market, then ETHUSDT, ..."""
    out = [InstrumentId(MARKETS[n % len(MARKETS)], SYMBOLS[n // len(MARKETS)]) for n in range(count)]
    return out


@dataclass
class FaultRecord:
    at_s: float
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    machine: dict[str, Any]
    minutes: float
    rate: float
    instruments: list[str]
    fault_every_s: float
    faults: list[FaultRecord] = field(default_factory=list)
    profile_calls: int = 0
    profile_failures: int = 0
    generated: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    exact_checked: dict[str, int] = field(default_factory=dict)
    exact_mismatches: dict[str, str] = field(default_factory=dict)
    profile_mismatches: dict[str, str] = field(default_factory=dict)
    settle_s: float = 0.0
    rss_mb: dict[str, list[tuple[float, int, float]]] = field(default_factory=dict)  # name -> (t, pid, MB)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return sum(max(0, self.generated[k] - self.stored.get(k, 0)) for k in self.generated)

    @property
    def extra(self) -> int:
        return sum(max(0, self.stored.get(k, 0) - self.generated[k]) for k in self.generated)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Soak:
    """The running system and the means to hurt it."""

    def __init__(self, workdir: Path, ids: list[InstrumentId], rate: float) -> None:
        self.ids = ids
        self.rate = rate
        self.ports = {name: free_port() for name in ("replay", "storage", "collector", "profile")}
        replay = f"127.0.0.1:{self.ports['replay']}"
        self.replay_url = f"http://{replay}"
        self.env = {
            "MARKETDATA_INSTRUMENTS": ",".join(i.key for i in ids),
            "MARKETDATA_BOOK_INSTRUMENTS": "none",
            "MARKETDATA_DATA_DIR": str(workdir),
            "MARKETDATA_STORAGE_URI": f"sqlite:///{workdir / 'soak.db'}",
            "MARKETDATA_STORAGE_RETENTION_INTERVAL": "0",
            "MARKETDATA_STORAGE_PORT": str(self.ports["storage"]),
            "MARKETDATA_STORAGE_ADDR": f"127.0.0.1:{self.ports['storage']}",
            "MARKETDATA_COLLECTOR_PORT": str(self.ports["collector"]),
            "MARKETDATA_COLLECTOR_ADDR": f"127.0.0.1:{self.ports['collector']}",
            "MARKETDATA_VOLUME_PROFILE_PORT": str(self.ports["profile"]),
            "MARKETDATA_BINANCE_API_KEY": "soak",  # USD-M backfill by id (historicalTrades)
            "MARKETDATA_STALE_TIMEOUT_S": "5",
            "MARKETDATA_RECONNECT_INITIAL_S": "0.1",
            "MARKETDATA_RECONNECT_MAX_S": "1",
            "MARKETDATA_LOG_LEVEL": "ERROR",
        }
        for name in ("STORAGE", "COLLECTOR", "VOLUME_PROFILE"):
            self.env[f"MARKETDATA_{name}_METRICS_PORT"] = str(free_port())
        for name in ("BINANCE_SPOT", "BINANCE_FUTURES", "BYBIT"):
            self.env[f"MARKETDATA_{name}_WS_URL"] = f"ws://{replay}"
            self.env[f"MARKETDATA_{name}_REST_URL"] = self.replay_url
        self.services: dict[str, Service] = {}
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        replay_args = [
            "replay-exchange", "--port", str(self.ports["replay"]),
            "--instruments", ",".join(i.key for i in self.ids), "--rate", str(self.rate),
            "--seed", "42", "--history-size", str(HISTORY_SIZE), "--trades-per-frame", "200",
            "--ping-interval", "5",
        ]  # fmt: skip
        self.services["replay-exchange"] = await start_service(
            "replay-exchange", replay_args, self.env, self.ports["replay"]
        )
        await self.start_named("storage")
        await self.start_named("collector")
        await self.start_named("volume-profile")

    async def start_named(self, name: str) -> None:
        port = {"storage": "storage", "collector": "collector", "volume-profile": "profile"}[name]
        self.services[name] = await start_service(name, ["serve", name], self.env, self.ports[port])

    async def stop(self) -> None:
        for name in ("volume-profile", "collector", "storage", "replay-exchange"):
            service = self.services.get(name)
            if service is not None:
                await service.stop()
        if self.session is not None:
            await self.session.close()

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self.session is not None
        url = f"{self.replay_url}/_replay/{path}"
        request = self.session.post(url, json=body) if body is not None else self.session.get(url)
        async with request as response:
            payload = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {payload}")
            return payload

    async def fault(self, **spec: Any) -> str:
        answer = await self.control("faults", spec)
        return str(answer.get("applied", answer))[:200]

    async def kill_and_restart(self, name: str, sig: signal.Signals, down_s: float) -> str:
        service = self.services[name]
        service.process.send_signal(sig)
        await service.process.wait()
        await asyncio.sleep(down_s)
        await self.start_named(name)
        return f"{name} {sig.name} (exit {service.process.returncode}), down {down_s:.1f} s, restarted"


Fault = Callable[[Soak], Awaitable[str]]

FAULTS: list[tuple[str, Fault]] = [
    ("connection drops (TCP reset), every market", lambda s: s.fault(kind="drop", mode="abort")),
    ("connection drops (close 1011), every market", lambda s: s.fault(kind="drop", mode="close", code=1011)),
    ("storage SIGKILL + restart", lambda s: s.kill_and_restart("storage", signal.SIGKILL, 2.0)),
    ("stall 8 s without close (Binance spot)", lambda s: s.fault(kind="stall", market="binance-spot", seconds=8)),
    ("volume-profile SIGTERM + restart", lambda s: s.kill_and_restart("volume-profile", signal.SIGTERM, 0.5)),
    ("garbage frames x20, every market", lambda s: s.fault(kind="malformed", count=20)),
    ("oversized 20 MiB frame (Binance USD-M)", lambda s: s.fault(kind="malformed", variant="oversized", market="binance-futures")),
    ("ping timeout (Binance spot)", lambda s: s.fault(kind="ping_timeout", market="binance-spot", seconds=20)),
    ("storage SIGTERM + restart", lambda s: s.kill_and_restart("storage", signal.SIGTERM, 1.0)),
    ("id gap with REST 429 (Binance spot)", lambda s: _gap_with(s, "binance-spot", 429)),
    ("id gap with REST 418 (Binance USD-M)", lambda s: _gap_with(s, "binance-futures", 418)),
    ("subscription rejected + drop (Bybit linear)", lambda s: _rejected(s)),
]  # fmt: skip


async def _gap_with(soak: Soak, market: str, status: int) -> str:
    await soak.fault(kind="rest", market=market, count=1, status=status, retry_after=1)
    return await soak.fault(kind="skip", market=market, count=50)


async def _rejected(soak: Soak) -> str:
    await soak.fault(kind="reject", market="bybit-linear", count=1)
    return await soak.fault(kind="drop", market="bybit-linear")


async def _profile_call(
    soak: Soak, instrument: InstrumentId, start_ms: int, end_ms: int, row_ticks: int = 0
) -> Any:
    async with create_channel(f"127.0.0.1:{soak.ports['profile']}") as channel:
        stub = profile_grpc.VolumeProfileServiceStub(channel)  # type: ignore[no-untyped-call]
        request = profile_pb2.GetVolumeProfileRequest(
            instruments=[instrument.to_proto()],
            range=profile_pb2.ProfileRange(start_time_ms=start_ms, end_time_ms=end_ms),
            parameters=profile_pb2.ProfileParameters(row_ticks=row_ticks),
        )
        return await stub.GetVolumeProfile(request, timeout=30)


async def _stored_counts(soak: Soak) -> dict[str, int]:
    async with create_channel(soak.env["MARKETDATA_STORAGE_ADDR"]) as channel:
        stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
        stats = await stub.GetStorageStats(storage_pb2.GetStorageStatsRequest(), timeout=30)
    return {
        InstrumentId.from_proto(c.instrument).key: int(c.count)
        for c in stats.collections
        if c.collection == "trades" and c.instrument.symbol
    }


async def _sample(soak: Soak, report: Report, started: float) -> None:
    now = time.monotonic() - started
    for name, service in soak.services.items():
        if service.process.returncode is None:
            with contextlib.suppress(OSError):
                report.rss_mb.setdefault(name, []).append(
                    (round(now, 1), service.pid, round(rss_mb(service.pid), 1))
                )


async def _verify(soak: Soak, report: Report) -> None:
    """Storage caught up with the exchange; exact ids and profile rows over the retained window."""
    await soak.control("generator", {"action": "pause"})
    status = await soak.control("status")
    report.generated = {k: v["trades"] for k, v in status["instruments"].items()}
    settle = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            report.stored = await _stored_counts(soak)
        if all(report.stored.get(k, 0) >= n for k, n in report.generated.items()):
            break
        if time.monotonic() - settle > SETTLE_TIMEOUT_S:
            break
        await asyncio.sleep(1.0)
    report.settle_s = round(time.monotonic() - settle, 1)
    async with create_channel(soak.env["MARKETDATA_STORAGE_ADDR"]) as channel:
        stub = storage_grpc.StorageServiceStub(channel)  # type: ignore[no-untyped-call]
        for instrument in soak.ids:
            sent = (await soak.control(f"trades?instrument={instrument.key}"))["trades"]
            if not sent:
                continue
            first, last = sent[0]["time"], sent[-1]["time"]
            request = storage_pb2.QueryTradesRequest(
                instruments=[instrument.to_proto()], start_time_ms=first, end_time_ms=last + 1
            )
            stored_ids: list[str] = []
            async for response in stub.QueryTrades(request, timeout=120):
                stored_ids.extend(t.trade_id for t in response.batch.trades)
            expected = [str(t["id"]) for t in sent]
            report.exact_checked[instrument.key] = len(expected)
            if sorted(stored_ids) != sorted(expected):
                missing = len(set(expected) - set(stored_ids))
                extra = len(stored_ids) - len(set(stored_ids)) + len(set(stored_ids) - set(expected))
                report.exact_mismatches[instrument.key] = f"{missing} missing, {extra} extra"
            await _check_profile(soak, report, instrument, sent)


async def _check_profile(
    soak: Soak, report: Report, instrument: InstrumentId, sent: list[dict[str, Any]]
) -> None:
    """The profile of the whole minutes inside the retained window against a Decimal recompute."""
    start = sent[0]["time"] - sent[0]["time"] % 60_000 + 60_000
    end = sent[-1]["time"] - sent[-1]["time"] % 60_000
    if end <= start:
        return
    spec = spec_for(instrument)
    tick = Decimal(f"{spec.tick:.{spec.price_decimals}f}")
    inside = [t for t in sent if start <= t["time"] < end]
    prices = [Decimal(t["price"]) for t in inside]
    # Rows of a whole number of ticks, few enough for MARKETDATA_VOLUME_PROFILE_MAX_ROWS.
    row_ticks = int((max(prices) - min(prices)) / tick / PROFILE_ROWS) + 1
    row_size = tick * row_ticks
    rows: dict[Decimal, list[Decimal]] = {}
    for t in inside:
        row = (Decimal(t["price"]) / row_size).to_integral_value(rounding=ROUND_FLOOR) * row_size
        cell = rows.setdefault(row, [Decimal(0), Decimal(0)])
        cell[0 if t["side"] == "buy" else 1] += Decimal(t["size"])
    try:
        response = await _profile_call(soak, instrument, start, end, row_ticks)
    except Exception as exc:
        report.profile_mismatches[instrument.key] = f"GetVolumeProfile failed: {exc!r}"[:300]
        return
    got = {
        Decimal(r.price): [Decimal(r.buy_volume), Decimal(r.sell_volume)]
        for r in response.profile.rows
        if Decimal(r.total_volume)
    }
    if got != rows:
        differing = sorted(set(got.items()) ^ set((k, tuple(v)) for k, v in rows.items()), key=str)[:3]
        report.profile_mismatches[instrument.key] = f"{len(rows)} rows expected, e.g. {differing}"


def _memory(report: Report, warmup_s: float) -> None:
    for name, samples in report.rss_mb.items():
        pid = samples[-1][1]
        mine = [s for s in samples if s[1] == pid]  # the latest incarnation of a restarted service
        begin = mine[0][0]
        settled = [s for s in mine if s[0] >= begin + warmup_s] or mine[-1:]
        first, last = settled[0], settled[-1]
        hours = max((last[0] - first[0]) / 3600, 1e-9)
        report.memory[name] = {
            "start_mb": first[2],
            "end_mb": last[2],
            "max_mb": max(s[2] for s in settled),
            "growth_mb": round(last[2] - first[2], 1),
            "growth_mb_per_h": round((last[2] - first[2]) / hours, 1) if last[0] > first[0] else 0.0,
            "measured_s": round(last[0] - first[0], 1),
            "restarts": len({s[1] for s in samples}) - 1,
        }


async def run(minutes: float, rate: float, count: int, fault_every_s: float, sample_s: float) -> Report:
    ids = instruments(count)
    report = Report(machine(), minutes, rate, [i.key for i in ids], fault_every_s)
    with tempfile.TemporaryDirectory(prefix="marketdata-soak-") as workdir:
        soak = Soak(Path(workdir), ids, rate)
        try:
            await soak.start()
            started = time.monotonic()
            deadline = started + minutes * 60
            next_fault = started + fault_every_s
            next_sample = started
            index = 0
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_sample:
                    await _sample(soak, report, started)
                    next_sample += sample_s
                if now >= next_fault and now + 10 < deadline:
                    name, action = FAULTS[index % len(FAULTS)]
                    index += 1
                    try:
                        detail = await action(soak)
                        report.faults.append(FaultRecord(round(now - started, 1), name, True, detail))
                    except Exception as exc:  # a fault that could not be injected is reported, not fatal
                        report.faults.append(FaultRecord(round(now - started, 1), name, False, repr(exc)))
                    next_fault += fault_every_s
                    await _answers_continue(soak, report)
                await asyncio.sleep(0.5)
            await asyncio.sleep(5)  # let the last fault's repair finish
            await _verify(soak, report)
            await _sample(soak, report, started)
        finally:
            await soak.stop()
    _memory(report, min(WARMUP_S, minutes * 60 / 3))
    return report


async def _answers_continue(soak: Soak, report: Report) -> None:
    """A profile of the last minutes, asked right after each fault (retrying while a service restarts)."""
    instrument = soak.ids[0]
    now_ms = int(time.time() * 1000)
    report.profile_calls += 1
    for _ in range(20):
        try:
            await _profile_call(soak, instrument, now_ms - now_ms % 60_000 - 300_000, now_ms, 100)
            return
        except Exception:
            await asyncio.sleep(0.5)
    report.profile_failures += 1


def passed(report: Report) -> bool:
    """Zero loss, nothing twice, exact ids and profiles, answers after every fault."""
    return (
        report.lost == 0
        and report.extra == 0
        and not report.exact_mismatches
        and not report.profile_mismatches
        and report.profile_failures == 0
        and all(f.ok for f in report.faults)
    )


def main(minutes: float, rate: float, count: int, fault_every_s: float, sample_s: float) -> Report:
    return asyncio.run(run(minutes, rate, count, fault_every_s, sample_s))


def table(report: Report) -> str:
    generated, stored = sum(report.generated.values()), sum(report.stored.values())
    lines = [
        f"soak: {report.minutes:g} min, {report.rate:g} trades/s over {len(report.instruments)} instruments, "
        f"a fault every {report.fault_every_s:g} s ({len(report.faults)} injected, "
        f"{sum(not f.ok for f in report.faults)} failed to inject)",
        "",
        f"trades generated {generated}, stored {stored}: lost {report.lost}, unknown/extra {report.extra} "
        f"(storage caught up {report.settle_s} s after the generator stopped)",
        f"exact id check over the retained window: {sum(report.exact_checked.values())} trades, "
        f"mismatches: {report.exact_mismatches or 'none'}",
        f"volume profile vs Decimal recompute: mismatches: {report.profile_mismatches or 'none'}",
        f"profile calls after faults: {report.profile_calls}, failed: {report.profile_failures}",
        "",
        "| process | RSS start MB | end MB | max MB | growth MB | MB/h | measured s | restarts |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in report.memory.items():
        lines.append(
            f"| {name} | {m['start_mb']:.1f} | {m['end_mb']:.1f} | {m['max_mb']:.1f} | {m['growth_mb']:+.1f} "
            f"| {m['growth_mb_per_h']:+.1f} | {m['measured_s']:.0f} | {m['restarts']:.0f} |"
        )
    lines += ["", "faults:"]
    lines += [f"  {f.at_s:7.1f} s  {'ok ' if f.ok else 'ERR'} {f.name}" for f in report.faults]
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    out = asdict(report)
    out["lost"] = report.lost
    out["extra"] = report.extra
    return out
