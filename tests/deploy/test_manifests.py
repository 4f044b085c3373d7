"""Generated files stay in step with their sources: k8s/ with the chart, the chart's dashboards with
grafana/dashboards (scripts/render-k8s regenerates both), and skaffold.yaml with the chart and image."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.conftest import CHART, DASHBOARDS, ROOT, by_name, render
from tests.deploy.schemas import validate


def test_chart_dashboards_are_the_grafana_files() -> None:
    canonical = {p.name: p.read_bytes() for p in DASHBOARDS.glob("*.json")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "dashboards").glob("*.json")}
    assert canonical, "no dashboards in grafana/dashboards"
    assert shipped == canonical, (
        "charts/marketdata/dashboards differs from grafana/dashboards: run scripts/render-k8s"
    )


def test_k8s_manifests_are_the_rendered_chart(helm: str) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "render-k8s"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{Path(helm).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, done.stderr


def test_k8s_manifests_are_valid_and_namespace_free() -> None:
    text = (ROOT / "k8s" / "marketdata.yaml").read_text()
    objects = [d for d in yaml.safe_load_all(text) if d]
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "NetworkPolicy",
        "ServiceMonitor",
    }
    for obj in objects:
        validate(obj, "1.29")
        assert "namespace" not in obj["metadata"]


def skaffold() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text())


def test_skaffold_builds_the_image_and_deploys_the_chart() -> None:
    config = skaffold()
    assert re.fullmatch(r"skaffold/v4beta\d+", config["apiVersion"]) and config["kind"] == "Config"
    (artifact,) = config["build"]["artifacts"]
    assert artifact["image"] == "marketdata"
    assert (ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()
    (release,) = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]) == CHART
    templates = release["setValueTemplates"]
    assert templates["image.repository"] == "{{.IMAGE_REPO_marketdata}}"
    assert templates["image.tag"] == "{{.IMAGE_TAG_marketdata}}"
    assert {p["name"] for p in config["profiles"]} == {"dev", "prod"}


def profile_values(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The values files and --set flags a profile's patches give the release."""
    (profile,) = [p for p in skaffold()["profiles"] if p["name"] == name]
    files: list[str] = []
    sets = ["image.repository=registry.example.com/marketdata", "image.tag=abc1234"]
    for patch in profile["patches"]:
        if patch["path"].endswith("/valuesFiles"):
            files = patch["value"]
        elif "/setValueTemplates/" in patch["path"]:
            key = patch["path"].rsplit("/", 1)[1]
            sets.append(f"{key}=sha256:{'ab' * 32}" if "DIGEST" in patch["value"] else f"{key}=x")
    for f in files:
        assert (ROOT / f).is_file(), f
    return tuple(str((ROOT / f).relative_to(CHART)) for f in files), tuple(sets)


def test_skaffold_profiles_render_valid_releases(helm: str) -> None:
    port_forward = skaffold()["portForward"]
    for name in ("dev", "prod"):
        values, sets = profile_values(name)
        objects = render(helm, values, sets)
        for obj in objects:
            validate(obj, "1.29")
        for forward in port_forward:
            service = by_name(objects, "Service", forward["resourceName"])
            assert forward["port"] in {p["port"] for p in service["spec"]["ports"]}
        image = by_name(objects, "Deployment", "marketdata-collector")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"]
        assert image.startswith("registry.example.com/marketdata")
        if name == "prod":
            assert "@sha256:" in image  # what runs is what was built and pushed
    assert skaffold()["profiles"][0]["activation"] == [{"command": "dev"}]
