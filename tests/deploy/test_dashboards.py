"""Grafana dashboards: well-formed with a pinned datasource, and, against a live local system
(`marketdata up --replay`) scraped by a real Prometheus, every panel query returns data."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marketdata.bench.processes import private_redis_server
from marketdata.core.instruments import InstrumentId
from marketdata.v1 import (
    collector_service_pb2,
    collector_service_pb2_grpc,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests.deploy.conftest import DASHBOARDS, RULES, require_tool

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SERVICES = ("collector", "storage", "volume-profile", "order-flow", "mcp")
# What Grafana substitutes, at the resolution of this test (1 s scrapes); `$namespace` and the other
# multi-value variables are "All" (their allValue, .*): a local system has no namespace label.
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m"}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL as Grafana would send it with every variable at "All")."""
    variables = {f"${v['name']}": v.get("allValue") or ".*" for v in dashboard["templating"]["list"]}
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in sorted({**GRAFANA_VARIABLES, **variables}.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(name, value)
            assert "$" not in expr, f"unresolved variable in {expr}"
            yield f"{dashboard['title']} / {panel['title']} / {target['refId']}", expr


# --- static checks -----------------------------------------------------------------------------------


def test_dashboards_are_well_formed() -> None:
    found = dashboards()
    assert {"fleet-overview.json", "feed-health.json", "storage.json"} <= set(found)
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in found.items():
        assert dashboard["title"].startswith("MarketData / "), name
        assert "marketdata" in dashboard["tags"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"] == DATASOURCE, f"{name}: variable {variable['name']}"
        for panel in panels(dashboard):
            where = f"{name} / {panel['title']}"
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"], f"{where}: no query"
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, where
                assert target["expr"].strip(), where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, where


def test_dashboard_queries_use_known_job_names() -> None:
    """Jobs are named after the component (ServiceMonitor jobLabel), as the live test names them."""
    for dashboard in dashboards().values():
        for where, expr in queries(dashboard):
            for job in re.findall(r'job=~?"([^"]+)"', expr):
                assert set(job.split("|")) <= set(SERVICES), where


# --- live: marketdata up --replay + a real Prometheus ------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class System:
    targets: dict[str, str]  # job -> host:port of its /metrics
    collector: str  # host:port of the collector's gRPC
    storage: str  # host:port of storage's gRPC (when `up` runs it)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away redis-server on a free port: storage's footprint cache, as in the cluster."""
    require_tool("redis-server")
    with private_redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    """`marketdata up --replay` on free ports (every service's port set, unknown ones are ignored)."""
    workdir = tmp_path_factory.mktemp("up")
    ports = iter(free_ports(2 * len(SERVICES) + 1))
    env = {
        **os.environ,
        "MARKETDATA_DATA_DIR": str(workdir / "data"),
        "MARKETDATA_LOG_LEVEL": "WARNING",
        "MARKETDATA_REDIS_URL": redis_url,
    }
    metrics_ports: dict[str, int] = {}
    for service in SERVICES:
        key = service.upper().replace("-", "_")
        env[f"MARKETDATA_{key}_PORT"] = str(next(ports))
        metrics_ports[service] = next(ports)
        env[f"MARKETDATA_{key}_METRICS_PORT"] = str(metrics_ports[service])
    env["MARKETDATA_REPLAY_PORT"] = str(next(ports))
    collector = f"127.0.0.1:{env['MARKETDATA_COLLECTOR_PORT']}"
    env["MARKETDATA_COLLECTOR_ADDR"] = collector
    log = workdir / "up.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "marketdata.cli.main", "up", "--replay"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: "Ctrl-C stops everything" in log.read_text() or process.poll() is not None,
            60,
            "marketdata up",
        )
        text = log.read_text()
        assert process.poll() is None, f"marketdata up exited:\n{text[-3000:]}"
        # `  collector        pid 123  grpc 127.0.0.1:1234, metrics http://127.0.0.1:5678/metrics`
        targets: dict[str, str] = {}
        for name, rest in re.findall(r"^\s+(\S+)\s+pid \d+\s+(.*)$", text, re.MULTILINE):
            if name in SERVICES:
                url = re.search(r"metrics http://([^/\s]+)/metrics", rest)
                targets[name] = url.group(1) if url else f"127.0.0.1:{metrics_ports[name]}"
        assert "collector" in targets, text
        yield System(targets, collector, f"127.0.0.1:{env['MARKETDATA_STORAGE_PORT']}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # `up` stops its children in order
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def clients(system: System) -> Iterator[None]:
    """What a cluster does to the services besides scraping: kubelet gRPC health probes, a status
    poller, a StreamTrades consumer, and footprint queries (what the analytics services ask storage)."""
    stop = threading.Event()
    channel = grpc.insecure_channel(system.collector)
    storage_channel = grpc.insecure_channel(system.storage)
    instrument = InstrumentId.parse("binance-spot:BTCUSDT").to_proto()

    def probe() -> None:
        health = health_pb2_grpc.HealthStub(channel)
        collector = collector_service_pb2_grpc.CollectorServiceStub(channel)
        storage_health = health_pb2_grpc.HealthStub(storage_channel)
        storage = storage_service_pb2_grpc.StorageServiceStub(storage_channel)
        while not stop.wait(0.5):
            try:
                health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                collector.GetFeedStatus(collector_service_pb2.GetFeedStatusRequest(), timeout=2)
                if "storage" in system.targets:
                    storage_health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    now_ms = int(time.time() * 1000)
                    request = storage_service_pb2.QueryFootprintsRequest(
                        instrument=instrument, start_time_ms=now_ms - 600_000, end_time_ms=now_ms
                    )
                    for _ in storage.QueryFootprints(request, timeout=5):
                        pass
            except grpc.RpcError:
                pass

    stream = collector_service_pb2_grpc.CollectorServiceStub(channel).StreamTrades(
        collector_service_pb2.StreamTradesRequest()
    )

    def consume() -> None:
        try:
            for _ in stream:
                if stop.is_set():
                    break
        except grpc.RpcError:
            pass

    threads = [threading.Thread(target=probe, daemon=True), threading.Thread(target=consume, daemon=True)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        stream.cancel()
        for t in threads:
            t.join(timeout=5)
        channel.close()
        storage_channel.close()


@pytest.fixture(scope="module")
def prometheus(system: System, clients: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    (port,) = free_ports(1)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in system.targets.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 30, "Prometheus to be ready")

        def scraped_enough() -> bool:
            # 12 scrapes of every target: rate() over 10 s windows has samples
            counts = query(base, "count_over_time(up[15s])")
            values = {r["metric"]["job"]: float(r["value"][1]) for r in counts}
            ups = {r["metric"]["job"]: r["value"][1] for r in query(base, "up")}
            return (
                set(values) == set(system.targets)
                and min(values.values()) >= 12
                and set(ups.values()) == {"1"}
            )

        wait_for(scraped_enough, 45, "12 successful scrapes of every target", interval=1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = http_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


def has_data(base: str, expr: str) -> tuple[bool, str]:
    """Does a range query over the last 10 s (as a Grafana panel asks) return a real number?"""
    now = time.time()
    params = {"query": expr, "start": f"{now - 10:.3f}", "end": f"{now:.3f}", "step": "1"}
    try:
        answer = http_json(f"{base}/api/v1/query_range?" + urllib.parse.urlencode(params))
    except urllib.error.HTTPError as exc:  # 400: the query does not parse or evaluate
        return False, exc.read().decode()[:300]
    series = answer["data"]["result"]
    numbers = [v for s in series for _, v in s["values"] if v not in ("NaN", "+Inf", "-Inf")]
    if not series:
        return False, "no series"
    return bool(numbers), f"{len(series)} series, only NaN/Inf" if not numbers else "ok"


@pytest.mark.timeout(150)
def test_every_dashboard_panel_has_data(prometheus: str, system: System) -> None:
    pending = [(where, expr) for d in dashboards().values() for where, expr in queries(d)]
    assert len(pending) >= 20
    deadline = time.monotonic() + 20  # counters that move only now and then get a little time
    failures: list[str] = []
    while pending:
        failures, still = [], []
        for where, expr in pending:
            ok, detail = has_data(prometheus, expr)
            if not ok:
                failures.append(f"{where}: {detail}\n    {expr}")
                still.append((where, expr))
        pending = still
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not failures, f"scraping {sorted(system.targets)}, panels without data:\n" + "\n".join(failures)


def test_dashboard_variables_have_values(prometheus: str) -> None:
    for dashboard in dashboards().values():
        for variable in dashboard["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert match, variable["query"]
            selector, label = match.groups()
            if label == "namespace":
                continue  # only Kubernetes targets carry one; "All" (.*) matches the local system
            selector = selector.replace("$namespace", ".*").replace("$feed", ".*")
            values = {r["metric"].get(label) for r in query(prometheus, f"count by ({label}) ({selector})")}
            assert values - {None, ""}, f"{dashboard['title']}: variable {variable['name']} has no values"


def test_alert_rules_evaluate_in_prometheus_and_none_fires_on_a_healthy_system(prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = http_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = wait_for(evaluated, 15, "every rule to be evaluated")
    assert {r["name"] for r in rules} == {
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
    }
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        # pending is allowed: books, for one, are not in sync in the first seconds; `for` covers that
        assert rule["state"] != "firing", f"{rule['name']} fires on a healthy system"
