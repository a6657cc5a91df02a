"""End to end: every service as a real process, real Kafka, real PostgreSQL.

A problem event goes in at the top (as an upstream system publishes it) and a
stored final result comes out at the bottom.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer

from devstack.pipeline import Pipeline
from qbridge import topics
from qbridge.bus import BusProducer, KafkaSettings
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec
from qbridge.problems.base import Problem
from qbridge.samples import problem_request, regular_maxcut, sample_mix
from qbridge.status import OUTCOME_STATUSES
from tests.conftest import running_pipeline

pytestmark = pytest.mark.integration

FINAL = tuple(sorted(OUTCOME_STATUSES))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def pipeline(stack: Any, kafka_settings: KafkaSettings) -> Iterator[Pipeline]:
    with running_pipeline(
        stack,
        kafka_settings,
        "pipeline",
        per_service_env={
            "orchestrator": {
                "QBRIDGE_DEGRADE_QUANTUM_LAG": "4",
                "QBRIDGE_LAG_POLL_MS": "300",
                "QBRIDGE_TENANT_SHOT_QUOTA": '{"capped": 1000}',
            }
        },
    ) as p:
        yield p


@pytest.fixture(scope="module")
def producer(kafka_settings: KafkaSettings, codec: AvroCodec) -> BusProducer:
    return BusProducer(kafka_settings, codec, client_id="e2e-upstream")


def submit(producer: BusProducer, problem: Problem, **over: Any) -> str:
    corr = over.pop("correlation_id", None) or f"e2e-{uuid.uuid4().hex[:10]}"
    record = problem_request(problem, tenant=over.pop("tenant", "e2e"), correlation_id=corr, **over)
    producer.send(
        topics.PROBLEM_REQUESTS,
        record,
        key=record["request_id"],
        headers=[(h.CORRELATION_ID, corr.encode())],
    )
    producer.flush()
    return corr


def final_rows(dsn: str, corrs: list[str]) -> dict[str, dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            "SELECT j.correlation_id, j.job_id, j.problem_type, s.status, s.route, s.reason,"
            " s.objective, s.assignment, s.feasible FROM jobs j JOIN solutions s USING (job_id)"
            " WHERE j.correlation_id = ANY(%s)",
            (corrs,),
        )
        cols = [d.name for d in cur.description or []]
        return {r[0]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}


def wait_final(
    pipeline: Pipeline, dsn: str, corrs: list[str], timeout: float = 120
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        rows = final_rows(dsn, corrs)
        if len(rows) == len(corrs):
            return rows
        time.sleep(0.5)
    logs = "\n".join(f"--- {s.name}\n{s.tail(15)}" for s in pipeline.services.values())
    missing = sorted(set(corrs) - set(rows))
    raise AssertionError(f"not final after {timeout}s: {missing}\n{logs}")


def count(dsn: str, sql: str, *args: Any) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_mixed_batch_of_every_type_reaches_one_verified_result(
    pipeline: Pipeline, producer: BusProducer, database_url: str
) -> None:
    problems = {}
    for label, problem, over in sample_mix(seed=11):
        problems[submit(producer, problem, **over)] = (label, problem)
    rows = wait_final(pipeline, database_url, list(problems))
    kinds = set()
    for corr, row in rows.items():
        label, problem = problems[corr]
        kinds.add(problem.kind)
        assert row["status"] in ("succeeded", "degraded"), (label, row)
        assert row["feasible"], (label, row)
        recomputed = problem.evaluate(list(row["assignment"]))
        assert math.isclose(row["objective"], recomputed.objective, abs_tol=1e-9), (label, row)
        job = row["job_id"]
        assert count(database_url, "SELECT count(*) FROM solutions WHERE job_id = %s", job) == 1
        finals = count(
            database_url,
            "SELECT count(*) FROM status_transitions WHERE job_id = %s AND to_status = ANY(%s)",
            job,
            list(FINAL),
        )
        assert finals == 1, (label, finals)
        seqs = count(database_url, "SELECT max(seq) FROM status_transitions WHERE job_id = %s", job)
        assert seqs == count(
            database_url, "SELECT count(*) FROM status_transitions WHERE job_id = %s", job
        ), "transitions are numbered 1..n without gaps"
    assert kinds == {"maxcut", "qubo", "ising", "knapsack", "portfolio", "jobshop"}
    routes = {r["route"] for r in rows.values()}
    assert "classical" in routes and "quantum" in routes, routes


def _dlq_records(
    kafka_settings: KafkaSettings, codec: AvroCodec, want: int, since_ms: int
) -> list[dict[str, Any]]:
    c = Consumer(
        {
            **kafka_settings.client_config(),
            "group.id": f"e2e-dlq-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topics.DEAD_LETTERS.name])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < want and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error() is not None or m.timestamp()[1] < since_ms:
                continue
            rec = codec.decode(m.value(), topics.DEAD_LETTERS.record).value
            if rec["service"] == "intake":
                out.append(rec)
    finally:
        c.close()
    return out


def test_malformed_events_go_to_dlq_with_reasons_and_good_ones_flow(
    pipeline: Pipeline,
    producer: BusProducer,
    database_url: str,
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
) -> None:
    since = int(time.time() * 1000) - 1000
    garbage = b"\x00\x00\x00\x00\x01garbage"
    producer.send_raw(topics.PROBLEM_REQUESTS.name, garbage, key=b"bad-1")
    nan_request = problem_request(regular_maxcut(6, __import__("random").Random(1)), tenant="e2e")
    nan_request["problem"][1]["edges"][0]["weight"] = float("nan")
    producer.send(topics.PROBLEM_REQUESTS, nan_request, key=b"bad-2")
    good = submit(producer, regular_maxcut(6, __import__("random").Random(2)))
    rows = wait_final(pipeline, database_url, [good])
    assert rows[good]["status"] in ("succeeded", "degraded")

    dead = _dlq_records(kafka_settings, codec, 2, since)
    by_key = {d["original_key"]: d for d in dead}
    assert by_key[b"bad-1"]["original_value"] == garbage
    assert by_key[b"bad-1"]["error_class"] == "invalid_input"
    assert by_key[b"bad-2"]["error_type"] == "InvalidProblemError"
    assert "finite" in by_key[b"bad-2"]["reason"]
    assert "edges[0]" in by_key[b"bad-2"]["reason"]


def test_duplicate_events_make_one_job(
    pipeline: Pipeline, producer: BusProducer, database_url: str
) -> None:
    key = f"dup-{uuid.uuid4().hex[:8]}"
    problem = regular_maxcut(8, __import__("random").Random(3))
    corrs = [submit(producer, problem, idempotency_key=key) for _ in range(3)]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        n = count(
            database_url,
            "SELECT count(*) FROM jobs j JOIN solutions s USING (job_id)"
            " WHERE j.idempotency_key = %s",
            key,
        )
        if n:
            break
        time.sleep(0.5)
    time.sleep(2)  # let the duplicates flow all the way through
    assert count(database_url, "SELECT count(*) FROM jobs WHERE idempotency_key = %s", key) == 1
    assert (
        count(
            database_url,
            "SELECT count(*) FROM solutions s JOIN jobs j USING (job_id)"
            " WHERE j.idempotency_key = %s",
            key,
        )
        == 1
    )
    # the first request's correlation id is the job's; later duplicates map onto it
    assert len(final_rows(database_url, corrs)) == 1


def _restart_with(pipeline: Pipeline, name: str, **env: str | None) -> None:
    svc = pipeline[name]
    assert svc.stop() == 0, f"{name} did not stop cleanly"
    for k, v in env.items():
        if v is None:
            svc.env.pop(k, None)
        else:
            svc.env[k] = v
    pipeline.restart(name)


def test_failing_quantum_backend_gives_labelled_classical_answers(
    pipeline: Pipeline, producer: BusProducer, database_url: str
) -> None:
    _restart_with(pipeline, "quantum-executor", QBRIDGE_QUANTUM_FAIL_MODE="unavailable")
    try:
        rng = __import__("random").Random(4)
        corrs = [submit(producer, regular_maxcut(8, rng)) for _ in range(2)]
        rows = wait_final(pipeline, database_url, corrs)
    finally:
        _restart_with(pipeline, "quantum-executor", QBRIDGE_QUANTUM_FAIL_MODE=None)
    for row in rows.values():
        assert (row["status"], row["route"]) == ("degraded", "classical"), row
        assert "backend_unavailable" in row["reason"], row
        assert row["feasible"]


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(p in line for p in want.split(",")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_executor_lag_above_threshold_degrades_new_jobs(
    pipeline: Pipeline, producer: BusProducer, database_url: str
) -> None:
    rng = __import__("random").Random(5)
    assert pipeline["quantum-executor"].stop() == 0
    try:
        flood = [submit(producer, regular_maxcut(8, rng), timeout_ms=6000) for _ in range(8)]
        deadline = time.monotonic() + 30
        lag = 0.0
        while time.monotonic() < deadline:
            lag = _metric(
                pipeline["orchestrator"].metrics(),
                "qbridge_consumer_lag_messages",
                group=topics.QUANTUM_EXECUTOR_GROUP.name,
            )
            if lag > 4:
                break
            time.sleep(0.3)
        assert lag > 4, f"quantum lag never exceeded the threshold (last {lag})"
        late = submit(producer, regular_maxcut(8, rng))
        rows = wait_final(pipeline, database_url, [late])
        assert (rows[late]["status"], rows[late]["route"]) == ("degraded", "classical")
        assert "lag" in rows[late]["reason"], rows[late]
    finally:
        pipeline.restart("quantum-executor")
    # the flooded jobs still end, each exactly once (quantum timed out -> classical fallback)
    rows = wait_final(pipeline, database_url, flood)
    assert all(r["status"] in FINAL for r in rows.values())


def test_kill_9_orchestrator_and_executor_mid_stream(
    pipeline: Pipeline,
    producer: BusProducer,
    database_url: str,
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
) -> None:
    rng = __import__("random").Random(6)
    corrs = [
        submit(producer, regular_maxcut(8, rng), timeout_ms=30_000, fallback_policy=policy)
        for policy in ("auto", "race", "classical_only") * 4
    ]
    time.sleep(1.0)  # some jobs in flight, some not yet routed
    pipeline["orchestrator"].kill()
    pipeline["quantum-executor"].kill()
    pipeline["classical-fallback"].kill()
    time.sleep(1.0)
    for name in ("orchestrator", "quantum-executor", "classical-fallback"):
        pipeline.restart(name)
    rows = wait_final(pipeline, database_url, corrs, timeout=150)
    for corr, row in rows.items():
        finals = count(
            database_url,
            "SELECT count(*) FROM status_transitions WHERE job_id = %s AND to_status = ANY(%s)",
            row["job_id"],
            list(FINAL),
        )
        assert finals == 1, (corr, finals)
        assert row["status"] in ("succeeded", "degraded"), row
    # On the topic, re-sent final outcomes (at-least-once) must be identical copies.
    job_ids = {r["job_id"] for r in rows.values()}
    seen: dict[str, set[tuple[Any, ...]]] = {}
    c = Consumer(
        {
            **kafka_settings.client_config(),
            "group.id": f"e2e-final-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topics.JOB_OUTCOMES.name])
    deadline = time.monotonic() + 30
    try:
        while len(seen) < len(job_ids) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error() is not None:
                continue
            v = codec.decode(m.value(), topics.JOB_OUTCOMES.record).value
            if v["job_id"] in job_ids:
                sol = v["solution"] or {}
                seen.setdefault(v["job_id"], set()).add(
                    (
                        v["status"],
                        v["route"],
                        sol.get("objective"),
                        tuple(sol.get("assignment", ())),
                    )
                )
    finally:
        c.close()
    assert set(seen) == job_ids
    assert all(len(variants) == 1 for variants in seen.values()), seen


def test_tenant_over_its_shot_quota_is_answered_classically(
    pipeline: Pipeline, producer: BusProducer, database_url: str
) -> None:
    rng = __import__("random").Random(7)
    corr = submit(producer, regular_maxcut(8, rng), tenant="capped", shot_budget=2048)
    rows = wait_final(pipeline, database_url, [corr])
    assert (rows[corr]["status"], rows[corr]["route"]) == ("degraded", "classical")
    assert "shot quota" in rows[corr]["reason"]
