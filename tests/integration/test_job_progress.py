"""GetJob shows the progress of a long QAOA run, across a SIGKILL of the executor.

The real local stack (Kafka + PostgreSQL) with every service as a process. The quantum
executor checkpoints each QAOA iteration in PostgreSQL and publishes throttled progress
events; its backend is slowed down (failure injection ``slow``) so the run takes long
enough to be watched and killed. The test

1. polls GetJob while the run optimizes and sees the iteration increase;
2. SIGKILLs the executor mid-run, restarts it: the redelivered work item resumes from
   its checkpoint, and GetJob reports ``resumed_from_iteration`` >= the last iteration
   seen before the kill, then further iterations;
3. sees the final job (quantum, one attempt) still showing the last progress: phase
   ``finished``, the iteration count of the answer's provenance, and the resume point;
4. the dashboard's recent jobs and ``qbridge get`` show it.

A second test checks the store's ordering rule on the real database: the newest event
of a job wins (attempt, then run start, then sequence), duplicates and stale events of a
killed run do not move it back.
"""

from __future__ import annotations

import io
import json
import random
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from devstack.pipeline import Pipeline
from qbridge.bus import KafkaSettings
from qbridge.cli.app import main as cli
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qbridge.contracts.records import ProgressPhase
from qbridge.db.pool import make_pool
from qbridge.results.read import JobReader
from qbridge.samples import regular_maxcut
from results_sink import mapping as m
from results_sink.migrate import migrate
from results_sink.store import ResultsStore
from tests.conftest import running_pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
TENANT = "progress-tenant"
KEY = "key-progress"
MD = (("x-api-key", KEY),)
MAXITER = 40
SLOW_S = 0.3  # per backend call: about 12 s of optimizing at most


@pytest.fixture(scope="module")
def pipeline(stack: Any, kafka_settings: KafkaSettings) -> Iterator[Pipeline]:
    with running_pipeline(
        stack,
        kafka_settings,
        "progress",
        per_service_env={
            "quantum-executor": {
                "QBRIDGE_CHECKPOINT_DSN": stack.dsn,
                "QBRIDGE_PROGRESS_INTERVAL_MS": "0",  # every iteration: the test counts them
                "QBRIDGE_CONCURRENCY": "1",
                "QBRIDGE_BACKENDS": json.dumps(["aer_statevector"]),
                "QBRIDGE_QAOA_P": "3",
                "QBRIDGE_QAOA_MAXITER": str(MAXITER),
                "QBRIDGE_QUANTUM_FAIL_MODE": "slow",
                "QBRIDGE_QUANTUM_FAIL_SLOW_S": str(SLOW_S),
            },
            "gateway": {"QBRIDGE_API_KEYS": json.dumps({KEY: TENANT})},
        },
    ) as p:
        yield p


@pytest.fixture(scope="module")
def stub(pipeline: Pipeline) -> Iterator[pb_grpc.GatewayStub]:
    ch = grpc.insecure_channel(f"127.0.0.1:{pipeline['gateway'].env['QBRIDGE_GRPC_PORT']}")
    grpc.channel_ready_future(ch).result(timeout=10)
    yield pb_grpc.GatewayStub(ch)
    ch.close()


def get(stub: pb_grpc.GatewayStub, job_id: str) -> pb.Job:
    req = pb.GetJobRequest(job_id=job_id, include_attempts=True)
    return stub.GetJob(req, metadata=MD, timeout=5)


def wait_for(
    stub: pb_grpc.GatewayStub, job_id: str, ok: Callable[[pb.Job], bool], s: float
) -> tuple[pb.Job, list[pb.Progress]]:
    """Poll GetJob until ``ok``; also returns every distinct progress seen on the way."""
    end = time.monotonic() + s
    seen: list[pb.Progress] = []
    while True:
        job = get(stub, job_id)
        if job.HasField("progress") and (not seen or seen[-1] != job.progress):
            seen.append(job.progress)
        if ok(job) or time.monotonic() > end:
            return job, seen
        time.sleep(0.1)


FINAL = (pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_DEGRADED, pb.JOB_STATUS_FAILED)


def test_get_job_shows_progress_across_an_executor_sigkill(
    stub: pb_grpc.GatewayStub, pipeline: Pipeline
) -> None:
    problem = regular_maxcut(8, random.Random(13))
    edges = [pb.WeightedEdge(u=u, v=v, weight=w) for u, v, w in problem.to_dict()["edges"]]
    opts = pb.JobOptions(
        timeout_ms=300_000, seed=13, fallback_policy="quantum_only", backend="aer_statevector"
    )
    req = pb.SubmitRequest(problem=pb.Problem(maxcut=pb.MaxCut(num_nodes=8, edges=edges)))
    req.options.CopyFrom(opts)
    job_id = stub.Submit(req, metadata=MD, timeout=10).job_id

    # 1. While it optimizes, the iteration GetJob reports goes up.
    job, before = wait_for(
        stub, job_id, lambda j: j.HasField("progress") and j.progress.iteration >= 4, 120
    )
    assert job.progress.iteration >= 4, f"no progress: {job}"
    assert job.status == pb.JOB_STATUS_RUNNING and job.progress.phase == "optimizing"
    iterations = [p.iteration for p in before]
    assert len(set(iterations)) >= 2 and iterations == sorted(iterations), iterations
    assert job.progress.max_iterations == MAXITER and job.progress.attempt == 1
    assert job.progress.backend == "aer_statevector" and job.progress.HasField("best_energy")
    assert not job.progress.HasField("resumed_from_iteration")
    assert job.progress.backend_calls == job.progress.iteration + 1  # starting batch + 1 each

    # 2. SIGKILL mid-run; the restarted executor resumes the redelivered item.
    killed_at = get(stub, job_id).progress.iteration
    pipeline["quantum-executor"].kill()
    assert get(stub, job_id).status not in FINAL
    pipeline.restart("quantum-executor")
    job, after = wait_for(
        stub,
        job_id,
        lambda j: (
            j.progress.HasField("resumed_from_iteration")
            and j.progress.iteration > j.progress.resumed_from_iteration
        ),
        120,
    )
    resumed_from = job.progress.resumed_from_iteration
    assert job.progress.HasField("resumed_from_iteration"), f"no resume: {job.progress}"
    assert resumed_from >= killed_at, (resumed_from, killed_at)
    assert job.progress.iteration > resumed_from and job.progress.attempt == 1

    # 3. The final job keeps the last progress of the (resumed) run.
    job, tail = wait_for(
        stub, job_id, lambda j: j.status in FINAL and j.progress.phase == "finished", 180
    )
    assert job.status == pb.JOB_STATUS_SUCCEEDED, job.result.reason
    assert job.result.route == pb.ROUTE_QUANTUM
    assert [a.attempt for a in job.attempts] == [1], "one attempt, resumed, not retried"
    last = job.progress
    assert last.phase == "finished" and last.resumed_from_iteration == resumed_from
    assert last.iteration == job.result.provenance.optimizer_iterations
    assert last.iteration >= max(p.iteration for p in after + tail)
    assert job.result.provenance.settings_json  # the answer itself is there too
    settings = json.loads(job.result.provenance.settings_json)
    assert settings["resumed_from_iteration"] == resumed_from

    # 4. The dashboard's recent jobs and the CLI show it.
    url = f"http://127.0.0.1:{pipeline['results-sink'].port}/api/summary"
    with urllib.request.urlopen(url, timeout=10) as resp:
        recent = {j["job_id"]: j for j in json.load(resp)["recent"]}
    assert f"resumed from {resumed_from}" in recent[job_id]["progress"]

    out, err = io.StringIO(), io.StringIO()
    target = ["--target", f"127.0.0.1:{pipeline['gateway'].env['QBRIDGE_GRPC_PORT']}"]
    assert cli([*target, "--api-key", KEY, "get", job_id], out=out, err=err) == 0, err.getvalue()
    line = next(li for li in out.getvalue().splitlines() if li.startswith("progress"))
    assert f"iteration {last.iteration}/{MAXITER}" in line
    assert f"resumed from {resumed_from}" in line and "(finished)" in line


# --- the store's ordering rule on the real database ----------------------------------


def row(**overrides: Any) -> m.ProgressRow:
    t0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    base = m.ProgressRow(
        job_id="job-order",
        tenant="t",
        work_id="job-order:1:quantum",
        attempt=1,
        backend="aer_statevector",
        phase=ProgressPhase.OPTIMIZING,
        iteration=0,
        max_iterations=40,
        best_energy=-1.0,
        resumed_from_iteration=None,
        backend_calls=1,
        shots_used=0,
        run_started_at=t0,
        seq=1,
        emitted_at=t0,
        correlation_id="c",
    )
    return replace(base, **overrides)


def test_store_keeps_the_newest_progress_of_each_job(fresh_database: str) -> None:
    migrate(fresh_database)
    pool = make_pool(fresh_database, min_size=1, max_size=2, timeout_s=5.0)
    store, reader = ResultsStore(pool), JobReader(pool)
    try:
        t0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
        first = [row(iteration=i, seq=i + 1, backend_calls=i + 1) for i in range(4)]
        assert store.record_batch(first) == ["inserted", "updated", "updated", "updated"]
        assert store.record_progress(first[1]) == "duplicate"  # stale / replayed
        assert store.progress("job-order")["iteration"] == 3  # type: ignore[index]

        # The run resumed after a kill: a later run start wins even with a lower seq, and a
        # late event of the killed run (a zombie) no longer moves it back.
        resumed = row(
            iteration=4,
            seq=1,
            resumed_from_iteration=3,
            backend_calls=5,
            run_started_at=t0 + timedelta(seconds=30),
        )
        zombie = row(iteration=9, seq=10, backend_calls=10)
        assert store.record_batch([resumed, zombie]) == ["updated", "duplicate"]
        got = store.progress("job-order")
        assert got is not None and (got["iteration"], got["resumed_from_iteration"]) == (4, 3)

        # A later attempt (e.g. on another backend) replaces every event of the earlier one.
        retry = row(attempt=2, work_id="job-order:2:quantum", iteration=0, seq=1)
        assert store.record_progress(retry) == "updated"
        done = replace(retry, phase=ProgressPhase.FINISHED, iteration=12, seq=2)
        assert store.record_progress(done) == "updated"

        # GetJob's read model carries it (the job row is a placeholder until the envelope).
        stored = reader.job("job-order")
        assert stored is not None and stored.tenant == "t"
        assert (stored.row["p_attempt"], stored.row["p_phase"], stored.row["p_iteration"]) == (
            2,
            "finished",
            12,
        )
        assert reader.job("no-such-job") is None
    finally:
        pool.close()
