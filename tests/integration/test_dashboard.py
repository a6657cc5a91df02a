"""The web dashboard, served by the real results sink, rendered in a real headless Chromium.

Every service runs as a process against the real Kafka and PostgreSQL; a mixed
workload (every problem type, race jobs, and a tenant pinned to a failing quantum
backend so its jobs degrade) goes through, then Debian's ``chromium`` loads
``/dashboard``: the screenshot is saved to ``tests/artifacts/`` (git-ignored) and the
rendered DOM is checked against the JSON the same endpoint serves.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.pipeline import Pipeline
from ops.tooling import ensure
from qbridge import topics
from qbridge.bus import BusProducer, KafkaSettings, ensure_topics
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec
from qbridge.problems.base import Problem
from qbridge.problems.registry import problem_from_dict
from qbridge.samples import problem_request, regular_maxcut, sample_mix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAKY_TENANT = "flaky"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _workload() -> list[tuple[str, Problem, dict[str, Any]]]:
    """Every type once, the quantum-eligible ones again in race mode, and degrading jobs."""
    mix = sample_mix(seed=21)
    jobs = [(label, p, dict(over)) for label, p, over in mix]
    for label, p, over in mix:
        if p.kind != "jobshop" and over.get("fallback_policy") != "race":
            jobs.append((f"{label}-race", p, {"fallback_policy": "race"}))
    rng = random.Random(5)
    for i in range(4):  # the flaky tenant's backend always fails: degraded to classical
        small = problem_from_dict(
            "ising",
            {"h": [round(rng.uniform(-1, 1), 2) for _ in range(4)], "J": [[0, 1, 0.5]]},
        )
        jobs.append((f"flaky-{i}", small, {"tenant": FLAKY_TENANT}))
    jobs.append(("maxcut-6", regular_maxcut(6, rng), {}))
    return jobs


@pytest.fixture(scope="module")
def run(stack: Any, kafka_settings: KafkaSettings, codec: AvroCodec) -> Iterator[dict[str, Any]]:
    ensure_topics(kafka_settings)
    started = time.monotonic()
    p = Pipeline(
        stack.bootstrap_servers,
        stack.dsn,
        ARTIFACTS / f"dashboard-{time.strftime('%H%M%S')}",
        per_service_env={
            "orchestrator": {
                "QBRIDGE_TENANT_BACKENDS": json.dumps({FLAKY_TENANT: "fake_noisy"}),
                "QBRIDGE_LAG_POLL_MS": "300",
            },
            "quantum-executor": {
                "QBRIDGE_QUANTUM_FAIL_MODE": "unavailable",
                "QBRIDGE_QUANTUM_FAIL_BACKENDS": json.dumps(["fake_noisy"]),
            },
            "results-sink": {"QBRIDGE_DASHBOARD_REFRESH_S": "0"},
        },
    )
    p.start()
    startup_s = time.monotonic() - started
    producer = BusProducer(kafka_settings, codec, client_id="dashboard-test")
    tag = uuid.uuid4().hex[:8]
    corrs = {}
    for label, problem, over in _workload():
        corr = f"dash-{tag}-{label}"
        record = problem_request(
            problem,
            tenant=over.pop("tenant", "dash"),
            correlation_id=corr,
            idempotency_key=corr,
            **over,
        )
        producer.send(
            topics.PROBLEM_REQUESTS,
            record,
            key=record["request_id"],
            headers=[(h.CORRELATION_ID, corr.encode())],
        )
        corrs[corr] = label
    producer.flush()
    deadline = time.monotonic() + 180
    done = 0
    while time.monotonic() < deadline:
        with psycopg.connect(stack.dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM jobs j JOIN solutions s USING (job_id)"
                " WHERE j.correlation_id = ANY(%s)",
                (list(corrs),),
            ).fetchone()
        done = int(row[0]) if row else 0
        if done == len(corrs):
            break
        time.sleep(0.5)
    workload_s = time.monotonic() - started - startup_s
    try:
        assert done == len(corrs), f"{done}/{len(corrs)} final after 180 s"
        yield {
            "pipeline": p,
            "base": f"http://127.0.0.1:{p['results-sink'].port}",
            "jobs": len(corrs),
            "startup_s": startup_s,
            "workload_s": workload_s,
        }
    finally:
        codes = p.stop()
        assert all(c in (0, None) for c in codes.values()), f"unclean shutdown: {codes}"


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


class _Text(HTMLParser):
    """Collects visible text and the ids of elements."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.ids: set[str] = set()
        self.svgs = 0
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k == "id" and v:
                self.ids.add(v)
        self.svgs += tag == "svg"
        self.rows += tag == "tr"

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def test_summary_api_reports_the_run(run: dict[str, Any]) -> None:
    status, ctype, body = _get(run["base"] + "/api/summary?window=60&limit=50")
    assert status == 200 and ctype == "application/json", body[:500]
    s = json.loads(body)
    assert s["totals"]["final"] >= run["jobs"]
    routes = {r["route"] for r in s["routes"]}
    assert {"quantum", "classical"} <= routes, s["routes"]
    # The flaky tenant's jobs were degraded: a non-zero fallback rate with reasons.
    assert s["fallback"]["degraded"] >= 4 and 0 < s["fallback"]["rate"] < 1
    assert s["fallback"]["reasons"], s["fallback"]
    # Lag of every consumer group, read from Kafka, with the orchestrator's thresholds.
    assert {g["group"] for g in s["lag"]["groups"]} == {g.name for g in topics.ALL_GROUPS}
    assert s["lag"]["thresholds"] == {"degrade_quantum_lag": 20, "pause_low_priority_lag": 200}
    # Quality per problem class for both routes, with head-to-head answers from race jobs.
    quality = {(q["problem_type"], q["route"]) for q in s["quality"]}
    for kind in ("maxcut", "qubo", "knapsack"):
        assert (kind, "quantum") in quality and (kind, "classical") in quality, quality
    assert ("jobshop", "classical") in quality
    assert sum(q["head_to_head"] for q in s["quality"]) > 0
    for q in s["quality"]:
        assert q["mean_gap"] is None or q["mean_gap"] >= -1e-9, q
    assert len(s["recent"]) == 50 or len(s["recent"]) >= run["jobs"]
    assert sum(b["total"] for b in s["fallback"]["series"]) == s["totals"]["final"]


def test_dashboard_renders_in_headless_chromium(run: dict[str, Any]) -> None:
    chromium = ensure("chromium")["chromium"]
    url = run["base"] + "/dashboard?window=60&limit=20&refresh=0"
    status, ctype, html = _get(url)
    assert status == 200 and ctype.startswith("text/html")
    assert "<script" not in html and "http://" not in html.replace(run["base"], "")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="qbridge-chromium-"))
    try:
        base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        started = time.monotonic()
        subprocess.run(
            [*base, "--window-size=1280,2000", f"--screenshot={shot}", url],
            check=True,
            capture_output=True,
            timeout=120,
        )
        shot_s = time.monotonic() - started
        dom = subprocess.run(
            [*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
        ).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(
        f"\nstartup {run['startup_s']:.1f}s, workload {run['workload_s']:.1f}s, "
        f"screenshot {shot_s:.1f}s -> {shot}"
    )

    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(png) > 60_000, "a blank page compresses to a few KB; the charts do not"

    parsed = _Text()
    parsed.feed(dom)
    text = " ".join(parsed.text)
    assert {"kpis", "timeline", "routes", "fallback", "lag", "quality", "recent"} <= parsed.ids
    assert parsed.svgs >= 8, parsed.svgs
    for needle in (
        "Routes taken",
        "quantum · aer_statevector",
        "classical · ortools",
        "Consumer lag",
        "quantum-executor",
        "degrade quantum > 20",
        "Quantum vs classical quality per problem class",
        "maxcut",
        "jobshop",
        "Recent jobs",
        "degraded",
    ):
        assert needle in text, needle
    assert parsed.rows >= 1 + min(20, run["jobs"]), "header + the recent jobs"

    # The page shows what the API says.
    s = json.loads(_get(run["base"] + "/api/summary?window=60&limit=20")[2])
    rate = s["fallback"]["rate"]
    assert f"Fallback: {rate * 100:.1f}% of {s['fallback']['final']}" in text
    assert s["recent"][0]["job_id"][:12] in text
