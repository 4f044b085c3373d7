"""The Store around a backend: its writer thread runs at a lower CPU priority than the rest of the
service, so commit bursts yield to latency-bound processes on shared cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marketdata.core.config import ConfigError

from .conftest import running_storage, storage_settings


def _priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)  # on Linux: the calling thread's nice value


@pytest.mark.parametrize("nice", [7, 0])
async def test_only_the_writer_thread_runs_at_the_configured_lower_priority(
    tmp_path: Path, nice: int
) -> None:
    base = _priority()
    settings = storage_settings(tmp_path, storage_writer_nice=str(nice))
    async with running_storage(settings) as running:
        store = running.service.store
        assert await store.run_write(_priority) == min(19, base + nice)
        assert await store.run_read(_priority) == base  # queries keep theirs
        assert _priority() == base  # and so does the event loop (acknowledgements)


def test_a_nice_value_out_of_range_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"MARKETDATA_STORAGE_WRITER_NICE.*must be 0\.\.19"):
        storage_settings(tmp_path, storage_writer_nice="20")
