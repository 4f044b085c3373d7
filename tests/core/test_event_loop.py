"""Which event loop the marketdata processes run on, chosen by MARKETDATA_EVENT_LOOP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
import uvloop

from marketdata.core.config import ConfigError
from marketdata.core.event_loop import use_event_loop


@pytest.fixture(autouse=True)
def restore_policy() -> Iterator[None]:
    yield
    asyncio.set_event_loop_policy(None)


def loop_type() -> type:
    loop = asyncio.new_event_loop()
    try:
        return type(loop)
    finally:
        loop.close()


def test_uvloop_by_default_and_asyncio_on_request() -> None:
    assert use_event_loop({}) == "uvloop"
    assert loop_type() is uvloop.Loop
    assert use_event_loop({"MARKETDATA_EVENT_LOOP": " Asyncio "}) == "asyncio"
    assert not issubclass(loop_type(), uvloop.Loop)


def test_an_unknown_loop_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="MARKETDATA_EVENT_LOOP: must be uvloop or asyncio, got 'tokio'"):
        use_event_loop({"MARKETDATA_EVENT_LOOP": "tokio"})


def test_the_command_line_refuses_it_before_doing_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "marketdata.cli.main", "config"],
        env={"MARKETDATA_EVENT_LOOP": "tokio", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error: MARKETDATA_EVENT_LOOP: must be uvloop or asyncio" in done.stderr
