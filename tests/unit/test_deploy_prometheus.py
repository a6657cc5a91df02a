"""Prometheus rules and configs, the Grafana dashboard, and the runbook.

``promtool`` comes from Debian's ``prometheus`` package (installed on first use by
``ops.tooling``). The alert rules must pass ``promtool check rules`` and their unit tests
(``promtool test rules``: each alert fires on its situation, stays silent otherwise);
every metric an expression uses must be one the code defines (so a rename cannot
silently blind an alert or a panel); every alert links an existing runbook section.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from ops.tooling import ensure
from orchestrator.config import OrchestratorSettings

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules" / "qbridge.yml"
GRAFANA = ROOT / "deploy" / "grafana"
RUNBOOK = ROOT / "docs" / "runbook.md"

#: Modules whose import registers every qbridge metric (shared ones and per service).
METRIC_MODULES = (
    "qbridge.metrics",
    "intake.app",
    "results_sink.app",
    "results_sink.store",
    "gateway.service",
    "gateway.solve",
    "gateway.admission",
    "qbridge.service.admission",
    "qbridge.solvers.pool",
    "qbridge.bus.follower",
)

_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "deriv", "by", "without", "and",
    "or", "unless", "on", "ignoring", "group_left", "group_right", "histogram_quantile",
    "offset", "bool", "clamp_min", "clamp_max", "abs", "topk", "bottomk", "le", "inf", "nan",
}  # fmt: skip


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = ensure("promtool")["promtool"]
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@cache
def known_metrics() -> frozenset[str]:
    """Every series name the code can expose (families plus their sample suffixes)."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names = {"up"}
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return frozenset(names)


def rule_groups() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULES.read_text())["groups"])


def recorded() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def metric_names(expr: str) -> set[str]:
    """Identifiers of an expression that name series (not functions, labels or keywords)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\b\d+(\.\d+)?([eE][-+]?\d+)?[smhdwy]*\b", "", expr)  # numbers, durations
    out = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = m.group(0)
        after = expr[m.end() :].lstrip()
        if word.lower() in _PROMQL_WORDS or after.startswith("("):
            continue
        out.add(word)
    return out


def test_alert_rules_pass_promtool_check() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alert_rules_fire_when_they_should() -> None:
    proc = promtool("test", "rules", "tests/qbridge.rules.test.yml", cwd=PROM)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = yaml.safe_load((PROM / "tests" / "qbridge.rules.test.yml").read_text())
    tested = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    assert tested == alerts, f"alerts without a firing test: {sorted(alerts - tested)}"


def test_compose_prometheus_config_passes_promtool_check() -> None:
    proc = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kubernetes_scrape_config_is_well_formed() -> None:
    # Debian's promtool is built without Kubernetes service discovery, so `check config`
    # cannot parse kubernetes_sd_configs; check its structure and regexes here instead.
    cfg = yaml.safe_load((PROM / "kubernetes-scrape.yml").read_text())
    job = cfg["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    for relabel in job["relabel_configs"]:
        re.compile(relabel.get("regex", "(.*)"))
        assert relabel.get("action", "replace") in ("keep", "drop", "replace")
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"__address__", "__metrics_path__", "app"} <= targets
    assert cfg["rule_files"] == ["rules/*.yml"]


def test_rules_use_only_metrics_the_code_defines() -> None:
    known = known_metrics() | recorded()
    for g in rule_groups():
        for rule in g["rules"]:
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: {unknown}"


def test_metric_names_follow_prometheus_conventions() -> None:
    for name in known_metrics() - {"up"}:
        if not name.startswith("qbridge_"):
            continue  # python_* / process_* from the client library
        assert re.fullmatch(r"qbridge_[a-z0-9_]+", name), name
        assert not re.search(r"_(ms|milliseconds|percent|bytes_total_total)$", name), name


def test_alert_thresholds_are_tied_to_the_orchestrator() -> None:
    orch = OrchestratorSettings()
    alerts = {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}
    near = alerts["QbridgeQuantumLagNearDegradation"]["expr"]
    assert re.search(rf"> {int(orch.degrade_quantum_lag * 0.75)}$", near.strip())
    paused = alerts["QbridgeLowPriorityAdmissionPaused"]["expr"]
    assert re.search(rf"> {orch.pause_low_priority_lag}$", paused.strip())
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"]


def _anchors(markdown: str) -> set[str]:
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return out


def test_every_alert_has_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text())
    for g in rule_groups():
        for rule in g["rules"]:
            if "alert" not in rule:
                continue
            url = rule["annotations"]["runbook_url"]
            path, _, anchor = url.partition("#")
            assert (ROOT / path).resolve() == RUNBOOK.resolve()
            assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "qbridge.json").read_text())  # type: ignore[no-any-return]


def test_grafana_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and len(panels) >= 15
    cells: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["targets"], p["title"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("lag", "fallback", "dead letters", "latency", "gap", "cache", "cost"):
        assert topic in titles, topic


def test_grafana_uses_the_provisioned_datasource_and_known_metrics(
    dashboard: dict[str, Any],
) -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    known = known_metrics() | recorded()
    for p in dashboard["panels"]:
        assert p["datasource"]["uid"] == uid
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid
            unknown = metric_names(t["expr"]) - known
            assert not unknown, f"{p['title']}: {unknown}"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "qbridge.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, service) (rate(qbridge_x_bucket{a="b"}[5m])))'
    assert metric_names(expr) == {"qbridge_x_bucket"}
    assert metric_names("qbridge:a:b > 2 * qbridge:c offset 1h") == {"qbridge:a:b", "qbridge:c"}
