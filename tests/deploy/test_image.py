"""The Dockerfile, checked without a container engine (this machine has none): its structure and
runtime contract against the chart, and that the build context it admits builds the distribution."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        op, _, args = full.partition(" ")
        out.append((op.upper(), args.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for op, args in instructions():
        if op == "FROM":
            out.append([])
        if out:
            out[-1].append((op, args))
    return out


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in stage:
        if op == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def chart_values() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_multi_stage_slim_pinned_base() -> None:
    args = dict(a.split("=", 1) for op, a in instructions() if op == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    froms = [a for op, a in instructions() if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert froms[0].endswith(" AS build") and froms[-1] == "${PYTHON_IMAGE}"
    runtime = stages()[-1]
    copies = [a for op, a in runtime if op == "COPY"]
    assert copies == ["--from=build /opt/marketdata /opt/marketdata"], "the runtime stage takes only the venv"
    assert not [op for op, _ in instructions() if op == "ADD"]
    assert not re.search(r"\b(curl|wget)\b", DOCKERFILE.read_text()), "no downloads outside the package index"


def test_runtime_contract_matches_the_chart() -> None:
    runtime = stages()[-1]
    (user,) = [a for op, a in runtime if op == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) > 0 and int(gid) > 0, "numeric non-root USER"
    security = chart_values()["podSecurityContext"]
    assert (int(uid), int(gid)) == (security["runAsUser"], security["runAsGroup"])
    env = env_of(runtime)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "read-only root: no .pyc written at run time"
    assert env["MARKETDATA_DATA_DIR"] == "/data" and env["HOME"] == "/tmp"  # the chart's two volumes
    assert env["PATH"].startswith("/opt/marketdata/bin:")
    (entrypoint,) = [a for op, a in runtime if op == "ENTRYPOINT"]
    (cmd,) = [a for op, a in runtime if op == "CMD"]
    assert yaml.safe_load(entrypoint) == ["marketdata"]  # exec form (JSON), so signals reach Python
    command = yaml.safe_load(cmd)
    assert command[:1] == ["serve"]
    from marketdata.cli.main import SERVICES

    assert command[1] in SERVICES
    exposed = {int(p) for op, a in runtime if op == "EXPOSE" for p in a.split()}
    for svc in chart_values()["services"].values():
        assert set(svc["ports"].values()) <= exposed


def _glob_regex(pattern: str) -> str:
    """Go filepath.Match syntax plus Docker's `**` (any number of directories)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            c = pattern[i]
            out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
            i += 1
    return out


def dockerignore_admits(relative: str) -> bool:
    """Docker's rules: patterns in order, the last match wins, `!` re-admits; a pattern matching a
    directory covers everything below it."""
    admitted = True
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _glob_regex(line.removeprefix("!").strip("/"))
        if any(re.fullmatch(regex, p) for p in prefixes):
            admitted = negate
    return admitted


def test_dockerignore_admits_sources_only() -> None:
    assert dockerignore_admits("pyproject.toml") and dockerignore_admits("README.md")
    assert dockerignore_admits("services/marketdata/cli/main.py")
    for excluded in (
        ".venv/bin/python",
        ".git/HEAD",
        ".tools/bin/helm",
        "tests/conftest.py",
        "data/marketdata.db",
        "services/marketdata/__pycache__/x.pyc",
        "services/marketdata.egg-info/PKG-INFO",
        "charts/marketdata/values.yaml",
    ):
        assert not dockerignore_admits(excluded), excluded


@pytest.mark.timeout(120)
def test_build_context_builds_the_distribution(tmp_path: Path) -> None:
    """Stage the files the Dockerfile COPYs (through .dockerignore) and build the wheel from them alone,
    as the image's build stage does (offline: the venv's setuptools instead of build isolation)."""
    context = tmp_path / "context"
    for op, args in stages()[0]:
        if op != "COPY":
            continue
        *sources, _dest = args.split()
        for source in sources:
            path = ROOT / source
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                if dockerignore_admits(rel):
                    (context / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, context / rel)
    out = tmp_path / "wheel"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("marketdata-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "marketdata/cli/main.py",
        "marketdata/collector/server.py",
        "marketdata/v1/collector_service_pb2.py",
        "marketdata/py.typed",
    ):
        assert needed in names, needed
    # the collector's C fast path is compiled into the wheel, not shipped as source (setup.py is in
    # the context: without it the optional extension is skipped and the image would run the slow path)
    assert any(n.startswith("marketdata/collector/_fastframes.") and n.endswith(".so") for n in names)
    assert "marketdata/collector/_fastframes.pyi" in names
    assert not any(n.endswith(".c") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "marketdata = marketdata.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
