"""Every service's real ``/metrics`` output passes ``promtool check metrics``.

All services (and the gateway) run as processes against the real Kafka and PostgreSQL;
a small workload touches every metric family (every problem type, a race job, a
malformed event for the DLQ, a tenant whose quantum backend fails). Then each
endpoint's exposition is linted by Debian's ``promtool`` and checked for the families
the alert rules and the Grafana dashboard use.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from devstack.pipeline import Pipeline, ServiceProcess, free_port
from ops.tooling import ensure
from qbridge import topics
from qbridge.bus import BusProducer, KafkaSettings, ensure_topics
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec
from qbridge.problems.registry import problem_from_dict
from qbridge.samples import problem_request, sample_mix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

#: Families each service must have samples of after the workload (others may be declared
#: only: e.g. qbridge_fallbacks_total counts routing-time degradations, none here).
EXPECTED: dict[str, set[str]] = {
    "intake": {"qbridge_messages_consumed_total", "qbridge_stage_duration_seconds",
               "qbridge_dlq_messages_total"},
    "orchestrator": {"qbridge_jobs_final_total", "qbridge_consumer_lag_messages",
                     "qbridge_quantum_classical_gap_ratio", "qbridge_stage_duration_seconds"},
    "quantum-executor": {"qbridge_solver_solves_total", "qbridge_transpile_cache_requests_total",
                         "qbridge_cost_units_total", "qbridge_stage_duration_seconds"},
    "classical-fallback": {"qbridge_solver_solves_total", "qbridge_cost_units_total",
                           "qbridge_stage_duration_seconds"},
    "results-sink": {"qbridge_results_sink_rows_total", "qbridge_results_sink_database_up",
                     "qbridge_consumer_lag_messages", "qbridge_stage_duration_seconds"},
    "gateway": set(),
}  # fmt: skip


@pytest.fixture(scope="module")
def services(
    stack: Any, kafka_settings: KafkaSettings, codec: AvroCodec
) -> Iterator[dict[str, ServiceProcess]]:
    ensure_topics(kafka_settings)
    log_dir = ARTIFACTS / f"metrics-{time.strftime('%H%M%S')}"
    p = Pipeline(
        stack.bootstrap_servers,
        stack.dsn,
        log_dir,
        per_service_env={
            "orchestrator": {
                "QBRIDGE_TENANT_BACKENDS": json.dumps({"flaky": "fake_noisy"}),
                "QBRIDGE_LAG_POLL_MS": "300",
            },
            "quantum-executor": {
                "QBRIDGE_QUANTUM_FAIL_MODE": "unavailable",
                "QBRIDGE_QUANTUM_FAIL_BACKENDS": json.dumps(["fake_noisy"]),
            },
        },
    )
    gateway = ServiceProcess(
        "gateway",
        "gateway",
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
            "DATABASE_URL": stack.dsn,
            "QBRIDGE_GRPC_PORT": str(free_port()),
            "QBRIDGE_API_KEYS": json.dumps({"metrics-key": "metrics"}),
            "QBRIDGE_LOG_FORMAT": "json",
        },
        log_dir,
    )
    p.start()
    gateway.start()
    try:
        gateway.wait_ready(120)
        _run_workload(stack.dsn, kafka_settings, codec)
        yield {**p.services, "gateway": gateway}
    finally:
        gateway.stop()
        codes = p.stop()
        assert all(c in (0, None) for c in codes.values()), f"unclean shutdown: {codes}"


def _run_workload(dsn: str, kafka_settings: KafkaSettings, codec: AvroCodec) -> None:
    producer = BusProducer(kafka_settings, codec, client_id="metrics-test")
    tag = uuid.uuid4().hex[:8]
    corrs = []
    jobs = [(label, p, dict(o)) for label, p, o in sample_mix(seed=3)]
    flaky = problem_from_dict("ising", {"h": [0.5, -0.2, 0.1], "J": [[0, 1, 0.4]]})
    jobs.append(("flaky", flaky, {"tenant": "flaky"}))
    for label, problem, over in jobs:
        corr = f"metrics-{tag}-{label}"
        rec = problem_request(
            problem, tenant=over.pop("tenant", "metrics"), correlation_id=corr, **over
        )
        producer.send(
            topics.PROBLEM_REQUESTS,
            rec,
            key=rec["request_id"],
            headers=[(h.CORRELATION_ID, corr.encode())],
        )
        corrs.append(corr)
    producer.send_raw(topics.PROBLEM_REQUESTS.name, b"\x00\x00\x00\x00\x01junk", key=b"junk")
    producer.flush()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM jobs j JOIN solutions s USING (job_id)"
                " WHERE j.correlation_id = ANY(%s)",
                (corrs,),
            ).fetchone()
        if row and row[0] == len(corrs):
            time.sleep(2)  # one more lag refresh and metrics update
            return
        time.sleep(0.5)
    raise AssertionError("workload did not finish in 180 s")


def _families(text: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)
    }


def _sampled(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] not in "#"}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_metrics_pass_promtool_check(services: dict[str, ServiceProcess], name: str) -> None:
    promtool = ensure("promtool")["promtool"]
    text = services[name].metrics()
    (ARTIFACTS / "metrics").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "metrics" / f"{name}.prom").write_text(text)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        f"{name}: promtool check metrics:\n{proc.stdout}{proc.stderr}"
    )
    families = _families(text)
    sampled = _sampled(text)
    for family in EXPECTED[name]:
        kind = families.get(family)
        assert kind is not None, f"{name} does not declare {family}"
        series = family if kind != "histogram" else f"{family}_count"
        if kind == "counter" and not family.endswith("_total"):
            series = f"{family}_total"
        assert series in sampled, f"{name}: {family} has no samples after the workload"
    for family in families:
        if not family.startswith(("python_", "process_")):
            assert family.startswith("qbridge_"), f"{name}: {family} lacks the qbridge_ prefix"


def test_lag_of_every_group_is_exported(services: dict[str, ServiceProcess]) -> None:
    text = services["results-sink"].metrics()
    groups = set(re.findall(r'^qbridge_consumer_lag_messages\{group="([^"]+)"', text, re.M))
    assert groups == {g.name for g in topics.ALL_GROUPS}


def test_rules_and_dashboards_use_series_the_services_expose(
    services: dict[str, ServiceProcess],
) -> None:
    from tests.unit.test_deploy_prometheus import metric_names, recorded

    exposed = {"up"} | recorded()
    for svc in services.values():
        for family, kind in _families(svc.metrics()).items():
            exposed.add(family)
            if kind == "histogram":
                exposed |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/qbridge.yml").read_text())
    used = {n for g in rules["groups"] for r in g["rules"] for n in metric_names(r["expr"])}
    dash = json.loads((ROOT / "deploy/grafana/dashboards/qbridge.json").read_text())
    used |= {n for p in dash["panels"] for t in p["targets"] for n in metric_names(t["expr"])}
    missing = used - exposed
    assert not missing, f"used by alerts/panels but never exposed: {sorted(missing)}"


def test_topic_init_entry_point_verifies_the_layout(stack: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ops.topics", "--wait", "30"],
        env={"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
    assert set(lines) == {t.name for t in topics.ALL_TOPICS}
    for spec in topics.ALL_TOPICS:
        assert f"partitions={spec.partitions}" in lines[spec.name]
