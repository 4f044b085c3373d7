"""The compatibility gate of the test command: `buf breaking` against proto/baseline.binpb (the
contracts as released) passes for what is on main, and names the field when a change would break a
deployed client."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "proto" / "baseline.binpb"
BUF = shutil.which("buf") or str(Path(sys.executable).with_name("buf"))


def _breaking(module_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUF, "breaking", "--against", str(BASELINE)],
        cwd=module_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def proto_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


def test_main_is_compatible_with_the_released_contracts() -> None:
    result = _breaking(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_renumbered_field_is_reported(proto_copy: Path) -> None:
    common = proto_copy / "proto" / "marketdata" / "v1" / "common.proto"
    text = common.read_text()
    # Trade.price moves to a number nobody uses: old clients would read it as unknown.
    changed, count = re.subn(r"(\n  string price = )(\d+);", r"\g<1>99;", text, count=1)
    assert count == 1, "common.proto no longer has `string price = N;`: update this test"
    common.write_text(changed)
    result = _breaking(proto_copy)
    assert result.returncode != 0
    assert "price" in result.stdout + result.stderr
