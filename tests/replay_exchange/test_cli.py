"""`marketdata replay-exchange`: flags become the config; the process says where it listens, serves,
and stops cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from marketdata.core.instruments import MarketKey
from marketdata.replay_exchange import cli
from marketdata.replay_exchange.config import DEFAULT_INSTRUMENTS
from tests.replay_exchange.conftest import instruments, recv_json, wait_closed

# Runs the command the way the `marketdata` entry point does: configure_parser, then run.
LAUNCH = (
    "import argparse, sys\n"
    "from marketdata.replay_exchange import cli\n"
    "parser = argparse.ArgumentParser(prog='marketdata replay-exchange')\n"
    "cli.configure_parser(parser)\n"
    "sys.exit(cli.run(parser.parse_args(sys.argv[1:])))\n"
)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    return parser.parse_args(argv)


def test_flags_become_the_config(recorded_dir: Path) -> None:
    config = cli.config_from_args(
        _args(
            "--instruments",
            "binance-spot:BTCUSDT,bybit-linear:ETHUSDT",
            "--rate",
            "5000",
            "--seed",
            "9",
            "--max-trades",
            "100",
            "--trades-per-frame",
            "20",
            "--fault",
            "drop:market=binance-spot,every=5",
            "--fault",
            "rest:status=418,count=2",
            "--max-connection-age",
            "30",
            "--ping-interval",
            "2",
            "--file",
            f"bybit-linear={recorded_dir / 'bybit-v5-linear-2025-09-25.jsonl'}",
            "--speed",
            "0",
            "--loop",
        )
    )
    assert config.instruments == instruments("binance-spot:BTCUSDT,bybit-linear:ETHUSDT")
    assert (config.rate, config.seed, config.max_trades, config.trades_per_frame) == (5000, 9, 100, 20)
    assert [f.kind for f in config.faults] == ["drop", "rest"] and config.faults[0].every == 5
    assert config.max_connection_age_s == 30
    assert (config.binance_spot_ping_interval_s, config.binance_spot_pong_timeout_s) == (2, 6)
    assert config.recordings[0].market == MarketKey.BYBIT_LINEAR
    assert (config.speed, config.loop) == (0, True)
    assert cli.config_from_args(_args()).instruments == DEFAULT_INSTRUMENTS
    assert (
        cli.config_from_args(_args("--file", str(recorded_dir / "cryptofeed-BINANCE.ws.1.0"))).instruments
        == ()
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--instruments", "binance-spot:BTCUSDT,nope"], "--instruments: entry 2"),
        (["--fault", "drop:mode=gentle"], "--fault 'drop:mode=gentle': drop fault: mode must be"),
        (["--file", "/no/such/file"], "--file '/no/such/file': no such file"),
        (["--trades-per-frame", "5000"], "trades_per_frame must be within 1..1024"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(_args(*argv)) == 2
    assert message in capsys.readouterr().err


async def test_the_process_serves_until_sigterm(session: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAUNCH,
        "--port",
        "0",
        "--instruments",
        "binance-spot:BTCUSDT",
        "--rate",
        "50",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith("replay exchange listening on http://127.0.0.1:")
        http_url = line.split()[4]
        ws = await session.ws_connect(http_url.replace("http://", "ws://") + "/ws/btcusdt@trade")
        assert (await recv_json(ws))["e"] == "trade"
        process.send_signal(signal.SIGTERM)
        assert (await recv_json(ws))["e"] in ("trade", "serverShutdown")
        closed = await wait_closed(ws, within=5)
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1001
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
