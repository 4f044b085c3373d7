"""The Helm chart: lint, render with several value sets, validate every object, and check what the
schemas cannot: hardening, probes reachable through Services, network exposure, monitoring wiring."""

from __future__ import annotations

import base64
import subprocess
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from marketdata.core.config import load_settings
from tests.deploy.conftest import (
    CHART,
    DASHBOARDS,
    RULES,
    VALUE_SETS,
    by_name,
    helm_template,
    of_kind,
    render,
    render_set,
)
from tests.deploy.schemas import validate

SETS = sorted(VALUE_SETS)
SERVICES = ("collector", "storage", "volume-profile", "order-flow", "mcp")
KUBE_VERSIONS = ("1.29", "1.35")  # the oldest the chart supports and the kubectl that get-helm installs
WORKLOADS = ("Deployment", "StatefulSet")


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(o, o["spec"]["template"]) for o in objects if o["kind"] in WORKLOADS]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- lint and schema validation ----------------------------------------------------------------------


@pytest.mark.parametrize("value_set", SETS)
def test_helm_lint_strict(helm: str, value_set: str) -> None:
    values, sets = VALUE_SETS[value_set]
    args = [helm, "lint", "--strict", str(CHART)]
    for f in values:
        args += ["-f", str(CHART / f)]
    for s in sets:
        args += ["--set", s]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", SETS)
def test_every_object_is_valid(helm: str, value_set: str, kube_version: str) -> None:
    objects = render_set(helm, value_set)
    assert len(objects) >= 10
    for obj in objects:
        validate(obj, kube_version)
        assert "namespace" not in obj["metadata"], f"{obj['kind']}/{obj['metadata']['name']} sets a namespace"


def test_strict_validation_rejects_mistakes(helm: str) -> None:
    """The validators are not vacuous: a bad type, an unknown field and a bad CRD field all fail."""
    objects = render_set(helm, "defaults")
    deployment = yaml.safe_load(yaml.safe_dump(of_kind(objects, "Deployment")[0]))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError, match="replicas"):
        validate(deployment, "1.29")
    deployment["spec"]["replicas"] = 1
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {"port": 1}
    with pytest.raises(AssertionError):
        validate(deployment, "1.29")
    monitor = yaml.safe_load(yaml.safe_dump(of_kind(objects, "ServiceMonitor")[0]))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(AssertionError, match="intervall"):
        validate(monitor, "1.29")
    rule = yaml.safe_load(yaml.safe_dump(of_kind(objects, "PrometheusRule")[0]))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "two minutes"
    with pytest.raises(AssertionError):
        validate(rule, "1.29")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("replicaCount=2", "replicaCount"),
        ("services.collector.replicas=two", "replicas"),
        ("services.feedhandler.enabled=true", "feedhandler"),
        ("containerSecurityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
        ("containerSecurityContext.privileged=true", "privileged"),
        ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
        ("services.collector.ports.grpc=70000", "grpc"),
        ("config.logLevel=LOUD", "logLevel"),
    ],
)
def test_values_schema_rejects(helm: str, flag: str, message: str) -> None:
    done = helm_template(helm, sets=(flag,))
    assert done.returncode != 0, f"--set {flag} was accepted"
    assert message in done.stderr, done.stderr


def test_embedded_store_cannot_be_scaled(helm: str) -> None:
    done = helm_template(helm, sets=("services.storage.replicas=2",))
    assert done.returncode != 0
    assert "persistence" in done.stderr and "MongoDB" in done.stderr


# --- workloads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", SETS)
def test_pods_are_hardened(helm: str, value_set: str) -> None:
    for workload, template in pod_specs(render_set(helm, value_set)):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = template["spec"]
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert (
            pod_sc.get("runAsUser", 1) != 0
            and pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        )
        assert spec.get("automountServiceAccountToken") is False, where
        assert spec.get("enableServiceLinks") is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        mounts_writable = set()
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (0, None), where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not container["image"].endswith(":latest") and ":" in container["image"].split("/")[-1], (
                where
            )
            limits, requests = (
                container["resources"].get("limits", {}),
                container["resources"].get("requests", {}),
            )
            assert "memory" in limits and "cpu" in requests and "memory" in requests, where
            mounts_writable |= {m["mountPath"] for m in container.get("volumeMounts", [])}
        if workload["metadata"]["labels"]["app.kubernetes.io/component"] in SERVICES:
            # the image writes only to /tmp and the data directory (MARKETDATA_DATA_DIR=/data)
            assert mounts_writable == {"/tmp", "/data"}, where


@pytest.mark.parametrize("value_set", SETS)
def test_probes_reachable_through_their_service(helm: str, value_set: str) -> None:
    objects = render_set(helm, value_set)
    services = of_kind(objects, "Service")
    for workload, template in pod_specs(objects):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        labels = template["metadata"]["labels"]
        assert selects(workload["spec"]["selector"]["matchLabels"], labels), where
        mine = [s for s in services if selects(s["spec"]["selector"], labels)]
        assert len(mine) == 1, f"{where}: selected by {len(mine)} Services"
        service = mine[0]
        for container in template["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            probes = [container.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")]
            assert probes[1] and probes[2], f"{where}: readiness and liveness probes are required"
            for probe in filter(None, probes):
                handler = probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket")
                assert handler, f"{where}: probe without a port handler: {probe}"
                port = handler["port"]
                number = ports[port] if isinstance(port, str) else port
                assert number in ports.values(), f"{where}: probe port {port} is not a container port"
                reachable = [
                    p
                    for p in service["spec"]["ports"]
                    if p["targetPort"] == number or ports.get(str(p["targetPort"])) == number
                ]
                assert reachable, (
                    f"{where}: probe port {port} is not exposed by Service {service['metadata']['name']}"
                )


@pytest.mark.parametrize("value_set", SETS)
def test_services_run_their_own_command_with_native_grpc_probes(helm: str, value_set: str) -> None:
    for deployment in of_kind(render_set(helm, value_set), "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", component]
        assert "command" not in container  # the image's ENTRYPOINT (marketdata) runs
        probe_kinds = {
            next(iter(set(container[k]) & {"grpc", "httpGet", "tcpSocket"}))
            for k in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert probe_kinds == ({"httpGet"} if component == "mcp" else {"grpc"}), component


def test_enabled_by_default_are_collector_and_storage(helm: str) -> None:
    deployments = of_kind(render_set(helm, "defaults"), "Deployment")
    assert sorted(d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments) == [
        "collector",
        "storage",
    ]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert sorted(values["services"]) == sorted(SERVICES)


def test_default_services_exist_in_the_cli() -> None:
    """`marketdata serve <service>` accepts every service the chart runs by default."""
    from marketdata.cli import main as cli

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    enabled = [name for name, svc in values["services"].items() if svc["enabled"]]
    missing = [name for name in enabled if name not in cli.SERVICES]
    assert "collector" in cli.SERVICES
    if missing:
        pytest.skip(f"`marketdata serve` does not offer {missing} yet (enabled by default in the chart)")


@pytest.mark.parametrize("value_set", SETS)
def test_every_deployment_has_a_pdb_and_an_account(helm: str, value_set: str) -> None:
    objects = render_set(helm, value_set)
    pdbs = of_kind(objects, "PodDisruptionBudget")
    accounts = {a["metadata"]["name"] for a in of_kind(objects, "ServiceAccount")}
    for workload, template in pod_specs(objects):
        labels = template["metadata"]["labels"]
        assert template["spec"]["serviceAccountName"] in accounts, workload["metadata"]["name"]
        if workload["kind"] == "Deployment":
            assert [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], labels)]


def test_hpa_for_analytics_and_mcp(helm: str) -> None:
    objects = render_set(helm, "all-services")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")}
    assert sorted(hpas) == ["marketdata-mcp", "marketdata-order-flow", "marketdata-volume-profile"]
    for name, hpa in hpas.items():
        deployment = by_name(objects, "Deployment", name)
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
    assert by_name(objects, "Deployment", "marketdata-collector")["spec"]["replicas"] == 2


def test_ha_collectors_are_spread_and_roll_without_downtime(helm: str) -> None:
    collector = by_name(render_set(helm, "ha"), "Deployment", "marketdata-collector")
    assert collector["spec"]["replicas"] == 2
    assert collector["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    (spread,) = collector["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"


# --- configuration and secrets -----------------------------------------------------------------------


@pytest.mark.parametrize("value_set", SETS)
def test_configmap_is_a_valid_configuration(helm: str, value_set: str) -> None:
    """The ConfigMap (+ per-service env) loads with the real settings loader, ports agree with the pods."""
    objects = render_set(helm, value_set)
    env = by_name(objects, "ConfigMap", "marketdata-config")["data"]
    assert env["MARKETDATA_BIND_HOST"] == "0.0.0.0" and env["MARKETDATA_DATA_DIR"] == "/data"
    for deployment in of_kind(objects, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        settings = load_settings(environ={**env, **plain})
        key = component.upper().replace("-", "_")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert env[f"MARKETDATA_{key}_METRICS_PORT"] == str(ports["metrics"])
        assert env[f"MARKETDATA_{key}_PORT"] == str(ports.get("grpc", ports.get("http")))
        if component == "collector":
            assert settings.collector_port == ports["grpc"]
            assert settings.collector_metrics_port == ports["metrics"]
            assert settings.bind_host == "0.0.0.0"
    assert env["MARKETDATA_COLLECTOR_ADDR"] == "marketdata-collector:50051"
    assert env["MARKETDATA_STORAGE_ADDR"] == "marketdata-storage:50052"


def test_secrets_reach_only_the_services_that_need_them(helm: str) -> None:
    objects = render_set(helm, "all-services")
    secret = by_name(objects, "Secret", "marketdata-secrets")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["storage-uri"].startswith("mongodb://root:")
    assert unquote(data["storage-uri"].split(":")[2].split("@")[0]) == "p@ss/word"  # escaped in the URI
    assert data["storage-uri"].endswith("@marketdata-mongodb:27017/marketdata?authSource=admin")
    assert data["redis-url"] == "redis://:r3d1s@marketdata-redis:6379/0"
    assert data["mcp-tokens"] == "t0k3n:pro"
    wanted = {
        "collector": {"MARKETDATA_BINANCE_API_KEY"},
        "storage": {"MARKETDATA_STORAGE_URI", "MARKETDATA_REDIS_URL"},
        "volume-profile": {"MARKETDATA_REDIS_URL"},
        "order-flow": {"MARKETDATA_REDIS_URL"},
        "mcp": {"MARKETDATA_MCP_TOKENS", "MARKETDATA_REDIS_URL"},  # rate limits shared by replicas
    }
    for component, names in wanted.items():
        (container,) = by_name(objects, "Deployment", f"marketdata-{component}")["spec"]["template"]["spec"][
            "containers"
        ]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert set(refs) == names, component
        for ref in refs.values():
            assert ref["name"] == "marketdata-secrets" and ref["key"] in data
    mongo = by_name(objects, "StatefulSet", "marketdata-mongodb")
    assert mongo["spec"]["template"]["spec"]["containers"][0]["image"] == "mongo:7.0"


def test_defaults_leave_unset_credentials_unset(helm: str) -> None:
    """No empty keys: storage then uses its embedded store in /data (its volume claim)."""
    objects = render_set(helm, "defaults")
    assert by_name(objects, "Secret", "marketdata-secrets")["data"] == {}
    storage = by_name(objects, "Deployment", "marketdata-storage")
    volumes = {v["name"]: v for v in storage["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert by_name(objects, "PersistentVolumeClaim", claim)["metadata"]["annotations"][
        "helm.sh/resource-policy"
    ]
    assert storage["spec"]["strategy"] == {"type": "Recreate"}


def test_existing_secret_replaces_the_chart_secret(helm: str) -> None:
    objects = render_set(helm, "ha")
    assert not of_kind(objects, "Secret")
    for deployment in of_kind(objects, "Deployment"):
        for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if "valueFrom" in env:
                assert env["valueFrom"]["secretKeyRef"]["name"] == "marketdata-credentials"


def test_config_changes_roll_the_pods(helm: str) -> None:
    before = by_name(render(helm), "Deployment", "marketdata-collector")
    after = by_name(render(helm, sets=("config.logLevel=DEBUG",)), "Deployment", "marketdata-collector")
    key = "checksum/config"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != after["spec"]["template"]["metadata"]["annotations"][key]
    )


# --- network exposure --------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", [s for s in SETS if s != "monitoring-off"])
def test_only_mcp_is_reachable_from_outside_the_release(helm: str, value_set: str) -> None:
    objects = render_set(helm, value_set)
    policies = of_kind(objects, "NetworkPolicy")
    release_selector = {"app.kubernetes.io/name": "marketdata", "app.kubernetes.io/instance": "marketdata"}
    for workload, template in pod_specs(objects):
        labels = template["metadata"]["labels"]
        mine = [p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert mine, f"{workload['metadata']['name']} has no NetworkPolicy"
        component = labels["app.kubernetes.io/component"]
        for policy in mine:
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            for rule in policy["spec"]["ingress"]:
                ports = {p["port"] for p in rule["ports"]}
                peers = rule.get("from")
                if not peers:  # open to every source
                    assert component == "mcp" and ports == {"http"}, f"{component} is open to {ports}"
                elif peers == [{"podSelector": {"matchLabels": release_selector}}]:
                    continue  # the release's own pods
                else:  # the monitoring namespace: metrics only
                    assert ports == {"metrics"}, f"{component}: {peers} may reach {ports}"


def test_mcp_can_be_published(helm: str) -> None:
    objects = render_set(helm, "all-services")
    assert by_name(objects, "Service", "marketdata-mcp")["spec"]["type"] == "LoadBalancer"
    assert by_name(objects, "Service", "marketdata-collector")["spec"]["type"] == "ClusterIP"


# --- monitoring --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "expected"),
    [((), "kube-prometheus-stack"), (("monitoring.release=prom",), "prom"), (("monitoring.release=",), None)],
)
def test_release_label_on_monitors_and_rules(helm: str, sets: tuple[str, ...], expected: str | None) -> None:
    objects = render(helm, sets=sets)
    monitors = of_kind(objects, "ServiceMonitor") + of_kind(objects, "PrometheusRule")
    assert len(monitors) == 3
    for obj in monitors:
        assert obj["metadata"]["labels"].get("release") == expected


@pytest.mark.parametrize("value_set", SETS)
def test_service_monitors_scrape_every_service(helm: str, value_set: str) -> None:
    objects = render_set(helm, value_set)
    monitors = of_kind(objects, "ServiceMonitor")
    deployments = of_kind(objects, "Deployment")
    if value_set == "monitoring-off":
        assert not monitors and not of_kind(objects, "PrometheusRule")
        return
    assert len(monitors) == len(deployments)
    for monitor in monitors:
        (service,) = [
            s
            for s in of_kind(objects, "Service")
            if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        # job = the component: "collector", "storage", ... as the alerts and dashboards expect
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/component"
        assert service["metadata"]["labels"]["app.kubernetes.io/component"] in SERVICES


def test_prometheus_rule_is_the_rule_file(helm: str) -> None:
    (rule,) = of_kind(render_set(helm, "defaults"), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


@pytest.mark.parametrize("value_set", SETS)
def test_dashboards_ship_as_sidecar_configmaps(helm: str, value_set: str) -> None:
    maps = [
        c
        for c in of_kind(render_set(helm, value_set), "ConfigMap")
        if "grafana_dashboard" in c["metadata"]["labels"]
    ]
    if value_set == "monitoring-off":
        assert not maps
        return
    files = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert len(files) >= 2
    shipped = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "Cloud MarketData"
        shipped.update(cm["data"])
    assert {k: v.rstrip("\n") for k, v in shipped.items()} == {k: v.rstrip("\n") for k, v in files.items()}


def test_embedded_store_needs_its_volume(helm: str) -> None:
    done = helm_template(helm, sets=("services.storage.persistence.enabled=false",))
    assert done.returncode != 0 and "persistence.enabled=true" in done.stderr
    assert (
        helm_template(
            helm,
            sets=("services.storage.persistence.enabled=false", "secrets.storageUri=mongodb://m:27017/md"),
        ).returncode
        == 0
    )


@pytest.mark.parametrize("value_set", ["defaults", "all-services"])
def test_notes_say_how_to_reach_mcp_and_grafana(helm: str, value_set: str) -> None:
    values, _ = VALUE_SETS[value_set]
    args = [helm, "install", "marketdata", str(CHART), "-n", "md", "--dry-run=client"]
    for f in values:
        args += ["-f", str(CHART / f)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80" in notes
    assert "MCP bridge" in notes
    if value_set == "all-services":
        assert "kubectl -n md port-forward svc/marketdata-mcp 8080:8080" in notes
        assert "http://127.0.0.1:8080/mcp" in notes and "LoadBalancer" in notes
    else:
        assert "services.mcp.enabled=true" in notes


def test_names_follow_the_release(helm: str) -> None:
    done = subprocess.run(
        [helm, "template", "md-prod", str(CHART), "-f", str(CHART / "ci/all-services-values.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    objects = [d for d in yaml.safe_load_all(done.stdout) if d]
    env = by_name(objects, "ConfigMap", "md-prod-marketdata-config")["data"]
    for component in SERVICES:
        service = by_name(objects, "Service", f"md-prod-marketdata-{component}")
        port = service["spec"]["ports"][0]["port"]
        if component == "mcp":
            assert env["MARKETDATA_MCP_URL"] == f"http://md-prod-marketdata-mcp:{port}"
        else:
            key = component.upper().replace("-", "_")
            assert env[f"MARKETDATA_{key}_ADDR"] == f"md-prod-marketdata-{component}:{port}"
    secret = by_name(objects, "Secret", "md-prod-marketdata-secrets")
    assert "@md-prod-marketdata-mongodb:27017/" in base64.b64decode(secret["data"]["storage-uri"]).decode()
    for obj in objects:
        validate(obj, "1.29")
