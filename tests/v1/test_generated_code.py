"""The checked-in protobuf/gRPC code is what the pinned generator makes from proto/ today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "services" / "marketdata" / "v1"


def _generate(out: Path) -> list[Path]:
    spec = importlib.util.spec_from_file_location("genproto", ROOT / "scripts" / "genproto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated: list[Path] = module.generate(out)
    return generated


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generated = _generate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in generated}
    checked_in = {p.name: p.read_bytes() for p in CHECKED_IN.glob("*_pb2*.py*")}
    assert sorted(fresh) == sorted(checked_in), "generated files differ in name: run scripts/genproto.py"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"stale generated code {stale}: run `python scripts/genproto.py` and commit"


def test_every_proto_has_generated_code() -> None:
    protos = {p.stem for p in (ROOT / "proto" / "marketdata" / "v1").glob("*.proto")}
    modules = {p.name.removesuffix("_pb2.py") for p in CHECKED_IN.glob("*_pb2.py")}
    assert protos == modules
