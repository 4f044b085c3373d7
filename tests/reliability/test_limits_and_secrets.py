"""Abuse outside MCP: request limits on every gRPC service (range, rows, depth, instruments per call,
message size), and no secret (storage URI password, Redis URL password, exchange API key) in logs or
/metrics. Container hardening in the chart is tests/deploy/test_chart.py::test_pods_are_hardened.

The limits' exact messages per service are asserted in their own suites (tests/storage/test_service.py,
tests/volume_profile/test_service.py, tests/collector/books/test_books_replay.py); here they are
checked together on one running system, with the server still answering afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from marketdata.core.grpc_server import DEFAULT_MAX_MESSAGE_BYTES
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import collector_service_pb2 as collector_pb2
from marketdata.v1 import collector_service_pb2_grpc as collector_grpc
from marketdata.v1 import storage_service_pb2 as storage_pb2
from marketdata.v1 import volume_profile_service_pb2 as profile_pb2
from tests.cli.processes import run_marketdata, up_env
from tests.storage.conftest import free_port

from .stack import replay_config, running_system

pytestmark = pytest.mark.reliability

INSTRUMENTS = "binance-spot:BTCUSDT,bybit-linear:BTCUSDT"
DAY = 86_400_000


async def refused(call: object, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> str:
    """The details of a call that must fail with `code` (unary or server stream)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            async for _ in call:  # type: ignore[attr-defined]
                pass
        else:
            await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value
    return caught.value.details() or ""


async def test_request_limits_are_enforced_on_every_service(tmp_path: Path) -> None:
    replay = replay_config(INSTRUMENTS, rate=200, max_trades=200)
    limits = {
        "storage_query_max_range": "1h",
        "storage_footprint_max_range": "2h",
        "volume_profile_max_range": "1d",
        "volume_profile_max_rows": "2",
        "book_instruments": "all",
    }
    async with running_system(tmp_path, replay, INSTRUMENTS, **limits) as system:
        await system.wait_all_stored()
        btc = InstrumentId.parse("binance-spot:BTCUSDT").to_proto()
        now = int(time.time() * 1000)
        storage = system.storage.stub
        collector = collector_grpc.CollectorServiceStub(grpc.aio.insecure_channel(system.collector_addr))  # type: ignore[no-untyped-call]

        # range
        message = await refused(
            storage.QueryTrades(
                storage_pb2.QueryTradesRequest(instruments=[btc], start_time_ms=now - DAY, end_time_ms=now)
            )
        )
        assert "MARKETDATA_STORAGE_QUERY_MAX_RANGE" in message
        message = await refused(
            storage.QueryFootprints(
                storage_pb2.QueryFootprintsRequest(instrument=btc, start_time_ms=now - DAY, end_time_ms=now)
            )
        )
        assert "MARKETDATA_STORAGE_FOOTPRINT_MAX_RANGE" in message
        profile_range = profile_pb2.ProfileRange(start_time_ms=now - 3 * DAY, end_time_ms=now)
        message = await refused(
            system.profile_stub.GetVolumeProfile(
                profile_pb2.GetVolumeProfileRequest(instruments=[btc], range=profile_range)
            )
        )
        assert message.startswith("range.end_time_ms:") and "MARKETDATA_VOLUME_PROFILE_MAX_RANGE" in message
        # rows: a row of one tick over the stored prices needs more than 2 rows
        hour = profile_pb2.ProfileRange(start_time_ms=now - now % 60_000 - 3_600_000, end_time_ms=now)
        wide = profile_pb2.GetVolumeProfileRequest(
            instruments=[btc], range=hour, parameters=profile_pb2.ProfileParameters(row_ticks=1)
        )
        message = await refused(system.profile_stub.GetVolumeProfile(wide))
        assert message.startswith("parameters.row_ticks:") and "MARKETDATA_VOLUME_PROFILE_MAX_ROWS" in message
        # depth
        message = await refused(
            collector.GetOrderBook(collector_pb2.GetOrderBookRequest(instrument=btc, depth=100_000))
        )
        assert message.startswith("depth:")
        # instruments per call: each instrument once (a repeated one would be read and sent again, a
        # cheap amplification), and at most 16 per profile: thousands of copies are refused at once
        many = [btc] * 5000
        started = time.monotonic()
        request = storage_pb2.QueryTradesRequest(
            instruments=many, start_time_ms=now - 3_600_000, end_time_ms=now
        )
        message = await refused(storage.QueryTrades(request))
        assert message == "instruments[1]: binance-spot:BTCUSDT is given twice"
        message = await refused(
            system.profile_stub.GetVolumeProfile(
                profile_pb2.GetVolumeProfileRequest(instruments=many, range=hour)
            )
        )
        assert message.startswith("instruments") and "limit of 16" in message
        assert time.monotonic() - started < 10
        # message size: a request past the server's limit is refused by gRPC itself
        huge = storage_pb2.QueryTradesRequest(
            instruments=[btc], page_token="x" * (DEFAULT_MAX_MESSAGE_BYTES + 1)
        )
        await refused(storage.QueryTrades(huge, timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # ... and every service still answers
        await storage.GetStorageStats(storage_pb2.GetStorageStatsRequest(), timeout=5)
        await collector.GetFeedStatus(collector_pb2.GetFeedStatusRequest(), timeout=5)


# --- secrets ------------------------------------------------------------------------------------------

API_KEY = "apikey-S3CRET-binance"
REDIS_PASSWORD = "redispw-S3CRET-cache"
MONGO_PASSWORD = "mongopw-S3CRET-store"


@contextlib.contextmanager
def redis_with_password(directory: Path, password: str) -> Iterator[str]:
    """A private redis-server that requires `password`; yields its URL with the password in it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *args, "--dir", str(directory), "--requirepass", password],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


async def scrape(port: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()


def assert_no_secret(text: str, where: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, (
            f"{where} shows a secret: ...{text[max(0, text.find(secret) - 200) :][:400]}"
        )


async def test_secrets_stay_out_of_logs_and_metrics(tmp_path: Path) -> None:
    """`marketdata up --replay` at DEBUG with an exchange API key and a password-protected Redis (and,
    separately, storage on a MongoDB URI with a password that cannot be reached, and a wrong Redis
    password): the logs, every /metrics page and `marketdata config` never show the secrets."""
    with redis_with_password(tmp_path, REDIS_PASSWORD) as redis_url:
        env = up_env(
            tmp_path,
            binance_api_key=API_KEY,
            redis_url=redis_url,
            log_level="DEBUG",
            instruments="binance-futures:BTCUSDT,bybit-linear:BTCUSDT",
        )
        up = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketdata.cli.main", "up", "--replay",
            env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await asyncio.sleep(1)
            pages = {}
            for name in ("COLLECTOR", "STORAGE", "VOLUME_PROFILE"):
                port = env[f"MARKETDATA_{name}_METRICS_PORT"]
                for _ in range(200):
                    with contextlib.suppress(aiohttp.ClientError):
                        pages[name] = await scrape(port)
                        break
                    await asyncio.sleep(0.1)
            await asyncio.sleep(2)  # trades flowing, the cache in use
            for name in pages:
                pages[name] = await scrape(env[f"MARKETDATA_{name}_METRICS_PORT"])
        finally:
            up.terminate()
            out, err = await asyncio.wait_for(up.communicate(), 30)
        assert set(pages) == {"COLLECTOR", "STORAGE", "VOLUME_PROFILE"}, "a service did not come up"
        assert b'"level":"DEBUG"' in err or b"DEBUG" in err, "nothing was logged at DEBUG"
        assert_no_secret((out + err).decode(), "`marketdata up` logs", API_KEY, REDIS_PASSWORD)
        for name, page in pages.items():
            assert "marketdata_" in page
            assert_no_secret(page, f"{name} /metrics", API_KEY, REDIS_PASSWORD)
        code, out_text, err_text = await run_marketdata("config", env=env)
        assert code == 0
        assert_no_secret(out_text + err_text, "`marketdata config`", API_KEY, REDIS_PASSWORD)

        wrong = redis_url.replace(REDIS_PASSWORD, "wrongpw-S3CRET-typo")
        bad_env = {
            **env,
            "MARKETDATA_REDIS_URL": wrong,
            "MARKETDATA_STORAGE_URI": f"mongodb://marketdata:{MONGO_PASSWORD}@127.0.0.1:{free_port()}/md"
            "?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
        }
        storage = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketdata.cli.main", "serve", "storage",
            env={**os.environ, **bad_env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        logged = b""
        try:
            assert storage.stderr is not None
            # until the failing connection attempts have been logged (pymongo at DEBUG names the server)
            with contextlib.suppress(TimeoutError):
                while logged.count(b"\n") < 10:
                    line = await asyncio.wait_for(storage.stderr.readline(), 60)
                    if not line:
                        break
                    logged += line
            with contextlib.suppress(aiohttp.ClientError):
                page = await scrape(bad_env["MARKETDATA_STORAGE_METRICS_PORT"])
                assert_no_secret(page, "storage /metrics", MONGO_PASSWORD, "wrongpw-S3CRET-typo")
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have given up and exited by itself
                storage.terminate()
            out, err = await asyncio.wait_for(storage.communicate(), 30)
        logs = (logged + out + err).decode()
        assert "127.0.0.1" in logs, f"storage logged nothing about the unreachable store: {logs[:500]}"
        assert_no_secret(logs, "storage logs", MONGO_PASSWORD, "wrongpw-S3CRET-typo")
