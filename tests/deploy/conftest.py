"""Deploy tests: the Helm chart, k8s/ manifests, alert rules, dashboards and the image recipe.

The real tools run: helm (PATH or .tools/bin, installed by ../shared/tools/get-helm), promtool and
prometheus (Debian's `prometheus` package). CI (.ci/run) installs them; without them locally the tests
that need them skip and say what to install.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "marketdata"
RULES = CHART / "rules" / "marketdata-alerts.yaml"
DASHBOARDS = ROOT / "grafana" / "dashboards"
RELEASE = "marketdata"

# The value sets every chart test renders: name -> (values files relative to the chart, --set flags).
VALUE_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "defaults": ((), ()),
    "in-chart-db": (("ci/dev-values.yaml",), ()),
    "ha": (("ci/prod-values.yaml",), ()),
    "monitoring-off": (("ci/monitoring-off-values.yaml",), ()),
    "all-services": (("ci/all-services-values.yaml",), ()),
}

INSTALL_HINT = {
    "helm": "install it with ../shared/tools/get-helm .tools/bin",
    "promtool": "install Debian's prometheus package (apt-get install prometheus)",
    "prometheus": "install Debian's prometheus package (apt-get install prometheus)",
    "redis-server": "install Debian's redis-server package",
}


def find_tool(name: str) -> str | None:
    local = ROOT / ".tools" / "bin" / name
    return shutil.which(name) or (str(local) if local.exists() else None)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        message = f"{name} not found on PATH or in .tools/bin: {INSTALL_HINT[name]}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it, so CI runs these tests")
        pytest.skip(f"{message} (CI installs it)")
    return path


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


def helm_template(
    helm: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    args = [helm, "template", RELEASE, str(CHART)]
    for f in values:
        args += ["-f", str(CHART / f)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@functools.cache
def _render_cached(helm: str, values: tuple[str, ...], sets: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    done = helm_template(helm, values, sets)
    if done.returncode != 0:
        raise AssertionError(f"helm template {values} {sets} failed:\n{done.stderr}")
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def render(helm: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The chart's objects for these values (cached; callers must not mutate them)."""
    return list(_render_cached(helm, values, sets))


def render_set(helm: str, name: str) -> list[dict[str, Any]]:
    values, sets = VALUE_SETS[name]
    return render(helm, values, sets)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for o in objects:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise AssertionError(f"no {kind} {name}; have {[o['metadata']['name'] for o in of_kind(objects, kind)]}")
