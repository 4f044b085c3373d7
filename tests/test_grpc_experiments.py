"""The services turn grpc's EventEngine I/O off unless the environment already says what to do."""

from __future__ import annotations

import os
import subprocess
import sys


def _experiments(env: dict[str, str]) -> str:
    code = "import os, marketdata; print(os.environ['GRPC_EXPERIMENTS'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_event_engine_io_is_off_by_default() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    assert set(_experiments(env).split(",")) == {
        "-event_engine_client",
        "-event_engine_listener",
        "-event_engine_for_all_other_endpoints",
    }


def test_an_operator_setting_wins() -> None:
    assert _experiments({**os.environ, "GRPC_EXPERIMENTS": "event_engine_client"}) == "event_engine_client"
