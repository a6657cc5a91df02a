"""Crash safety of batch checkpointing: SIGKILL services in the middle of batches under load.

Every service as a real process, real Kafka and PostgreSQL. A burst of jobs keeps
the orchestrator and the executors busy with large batches; each of them is killed
(SIGKILL: no flush, no commit) while batches are in flight and restarted. Every job
must still end with exactly one final outcome and one stored solution, and re-sent
copies of a final outcome on the topic must be identical.
"""

from __future__ import annotations

import random
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
from qbridge.samples import problem_request, regular_maxcut
from tests.conftest import running_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FINAL = ["succeeded", "degraded", "failed", "expired"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def pipeline(stack: Any, kafka_settings: KafkaSettings) -> Iterator[Pipeline]:
    with running_pipeline(
        stack,
        kafka_settings,
        "pipeline-kill-batches",
        check_exit=False,  # services are SIGKILLed on purpose
        extra_env={"QBRIDGE_LOG_LEVEL": "WARNING"},
    ) as p:
        yield p


def _stored(dsn: str, tenant: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM solutions WHERE tenant = %s", (tenant,)).fetchone()
    return int(row[0]) if row else 0


def _wait_stored(pipeline: Pipeline, dsn: str, tenant: str, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _stored(dsn, tenant) < want:
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name}\n{s.tail(15)}" for s in pipeline.services.values())
            raise AssertionError(f"{_stored(dsn, tenant)}/{want} stored after {timeout}s\n{logs}")
        time.sleep(0.2)


def test_sigkill_mid_batch_under_load_keeps_one_outcome_and_one_solution_per_job(
    pipeline: Pipeline,
    database_url: str,
    kafka_settings: KafkaSettings,
    codec: AvroCodec,
) -> None:
    tenant = f"kill-{uuid.uuid4().hex[:6]}"
    rng = random.Random(9)
    producer = BusProducer(kafka_settings, codec, client_id="kill-batches-upstream")
    n = 400
    for i in range(n):
        corr = f"kb-{uuid.uuid4().hex[:12]}"
        policy = "auto" if i % 40 == 0 else "classical_only"  # the quantum executor too
        rec = problem_request(
            regular_maxcut(8, rng),
            tenant=tenant,
            correlation_id=corr,
            idempotency_key=corr,
            fallback_policy=policy,
            timeout_ms=120_000,
        )
        producer.send(
            topics.PROBLEM_REQUESTS,
            rec,
            key=rec["request_id"],
            headers=[(h.CORRELATION_ID, corr.encode())],
        )
    producer.flush()

    # Kill each stage while the burst flows through it, then restart it.
    stored = 20
    for name in ("orchestrator", "classical-fallback", "quantum-executor", "orchestrator"):
        _wait_stored(pipeline, database_url, tenant, stored, timeout=180)
        pipeline[name].kill()
        time.sleep(0.5)
        pipeline.restart(name)
        stored = min(n, _stored(database_url, tenant) + 40)
    _wait_stored(pipeline, database_url, tenant, n, timeout=300)

    with psycopg.connect(database_url) as conn:
        jobs = conn.execute("SELECT count(*) FROM jobs WHERE tenant = %s", (tenant,)).fetchone()
        per_job = conn.execute(
            "SELECT j.job_id, count(DISTINCT s.job_id),"
            " (SELECT count(*) FROM status_transitions t"
            "   WHERE t.job_id = j.job_id AND t.to_status = ANY(%s))"
            " FROM jobs j LEFT JOIN solutions s USING (job_id) WHERE j.tenant = %s"
            " GROUP BY j.job_id",
            (FINAL, tenant),
        ).fetchall()
        statuses = conn.execute(
            "SELECT status, count(*) FROM solutions WHERE tenant = %s GROUP BY status", (tenant,)
        ).fetchall()
    assert jobs is not None and jobs[0] == n, "one job per request"
    assert len(per_job) == n
    assert all(sol == 1 and finals == 1 for _, sol, finals in per_job), [
        r for r in per_job if r[1:] != (1, 1)
    ]
    assert {s for s, _ in statuses} <= {"succeeded", "degraded"}, statuses

    # Re-sent final outcomes (at-least-once) are identical copies.
    job_ids = {r[0] for r in per_job}
    seen: dict[str, set[str]] = {}
    c = Consumer(
        {
            **kafka_settings.client_config(),
            "group.id": f"kill-batches-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topics.JOB_OUTCOMES.name])
    deadline = time.monotonic() + 60
    try:
        while len(seen) < n and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error() is not None:
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
    assert all(len(variants) == 1 for variants in seen.values())
