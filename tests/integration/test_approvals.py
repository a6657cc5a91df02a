"""The approval gate on the real stack: every service as a process, real Kafka and PostgreSQL.

Jobs of the tenant under an approval policy wait in ``awaiting_approval`` with no
quantum attempt; only approver keys may decide (others get PERMISSION_DENIED);
approve runs the quantum attempt, reject answers classically, no decision times out
to the configured action (classical); every decision is stored as an audit row.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.pipeline import Pipeline, ServiceProcess, free_port
from qbridge.bus import KafkaSettings
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qbridge.samples import regular_maxcut
from tests.conftest import running_pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
TENANT = "appr-tenant"
KEYS = {"key-user": TENANT, "key-boss": TENANT}
ROLES = {"key-boss": ["approver"]}
USER = (("x-api-key", "key-user"),)
BOSS = (("x-api-key", "key-boss"),)
APPROVAL_TIMEOUT_MS = 6000


@pytest.fixture(scope="module")
def pipeline(stack: Any, kafka_settings: KafkaSettings) -> Iterator[Pipeline]:
    with running_pipeline(
        stack,
        kafka_settings,
        "approvals",
        per_service_env={
            "orchestrator": {
                "QBRIDGE_APPROVAL_TENANTS": json.dumps([TENANT]),
                "QBRIDGE_APPROVAL_TIMEOUT_MS": str(APPROVAL_TIMEOUT_MS),
                "QBRIDGE_APPROVAL_TIMEOUT_ACTION": "classical",
                "QBRIDGE_APPROVAL_REJECT_ACTION": "classical",
            }
        },
    ) as p:
        yield p


@pytest.fixture(scope="module")
def stub(stack: Any, pipeline: Pipeline) -> Iterator[pb_grpc.GatewayStub]:
    port = free_port()
    svc = ServiceProcess(
        "gateway",
        "gateway",
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
            "DATABASE_URL": stack.dsn,
            "QBRIDGE_GRPC_HOST": "127.0.0.1",
            "QBRIDGE_GRPC_PORT": str(port),
            "QBRIDGE_API_KEYS": json.dumps(KEYS),
            "QBRIDGE_API_KEY_ROLES": json.dumps(ROLES),
            "QBRIDGE_SHUTDOWN_GRACE_S": "5",
            "PYTHONUNBUFFERED": "1",
        },
        pipeline["orchestrator"].log_dir,
    )
    svc.start_ready(60)
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(ch).result(timeout=10)
    yield pb_grpc.GatewayStub(ch)
    ch.close()
    assert svc.stop() == 0, svc.tail()


def submit(stub: pb_grpc.GatewayStub, seed: int) -> str:
    p = regular_maxcut(6, random.Random(seed))
    edges = [pb.WeightedEdge(u=u, v=v, weight=w) for u, v, w in p.to_dict()["edges"]]
    problem = pb.Problem(maxcut=pb.MaxCut(num_nodes=6, edges=edges))
    opts = pb.JobOptions(timeout_ms=60_000, seed=seed)
    return str(
        stub.Submit(
            pb.SubmitRequest(problem=problem, options=opts), metadata=USER, timeout=10
        ).job_id
    )


def get(stub: pb_grpc.GatewayStub, job_id: str) -> pb.Job:
    req = pb.GetJobRequest(job_id=job_id, include_attempts=True, include_transitions=True)
    return stub.GetJob(req, metadata=USER, timeout=5)


def wait_for(
    stub: pb_grpc.GatewayStub, job_id: str, ok: Callable[[pb.Job], bool], s: float
) -> pb.Job:
    end = time.monotonic() + s
    while True:
        job = get(stub, job_id)
        if ok(job) or time.monotonic() > end:
            return job
        time.sleep(0.2)


def final(job: pb.Job) -> bool:
    return job.status in (
        pb.JOB_STATUS_SUCCEEDED,
        pb.JOB_STATUS_DEGRADED,
        pb.JOB_STATUS_FAILED,
        pb.JOB_STATUS_EXPIRED,
    )


def awaiting(stub: pb_grpc.GatewayStub, job_id: str) -> pb.Job:
    job = wait_for(stub, job_id, lambda j: j.status == pb.JOB_STATUS_AWAITING_APPROVAL, 30)
    assert job.status == pb.JOB_STATUS_AWAITING_APPROVAL, pb.JobStatus.Name(job.status)
    return job


def audit(dsn: str, job_id: str, timeout_s: float = 20) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout_s
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT * FROM approvals WHERE job_id = %s ORDER BY decided_at", (job_id,)
            ).fetchall()
            if rows or time.monotonic() > end:
                return rows
            time.sleep(0.2)


def test_held_job_waits_then_runs_quantum_once_approved(
    stub: pb_grpc.GatewayStub, stack: Any
) -> None:
    job_id = submit(stub, 1)
    job = awaiting(stub, job_id)
    time.sleep(1.0)  # give a (wrongly) dispatched attempt time to show up
    assert list(get(stub, job_id).attempts) == [], "no attempt may run before approval"
    pending = stub.ListPending(pb.ListPendingRequest(), metadata=BOSS, timeout=5)
    assert job_id in [j.job_id for j in pending.jobs]

    req = pb.ApprovalRequest(job_id=job_id, comment="budget ok")
    for call in (
        stub.Approve,
        stub.Reject,
        lambda r, **kw: stub.ListPending(pb.ListPendingRequest(), **kw),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(req, metadata=USER, timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert get(stub, job_id).status == pb.JOB_STATUS_AWAITING_APPROVAL

    resp = stub.Approve(req, metadata=BOSS, timeout=10)
    assert resp.reviewer.startswith(f"{TENANT}/key-") and resp.decision == "approve"
    job = wait_for(stub, job_id, final, 60)
    assert job.status == pb.JOB_STATUS_SUCCEEDED, job.result.reason
    assert job.result.route == pb.ROUTE_QUANTUM
    assert [a.route for a in job.attempts] == [pb.ROUTE_QUANTUM]
    [row] = audit(stack.dsn, job_id)
    assert row["decision"] == "approve" and row["reviewer"] == resp.reviewer
    assert row["comment"] == "budget ok" and row["decided_at"] is not None


def test_rejected_job_is_answered_classically(stub: pb_grpc.GatewayStub, stack: Any) -> None:
    job_id = submit(stub, 2)
    awaiting(stub, job_id)
    stub.Reject(pb.ApprovalRequest(job_id=job_id, comment="not now"), metadata=BOSS, timeout=10)
    job = wait_for(stub, job_id, final, 60)
    assert job.status == pb.JOB_STATUS_DEGRADED and job.result.route == pb.ROUTE_CLASSICAL
    assert "rejected by" in job.result.reason and "not now" in job.result.reason
    assert all(a.route == pb.ROUTE_CLASSICAL for a in job.attempts)
    [row] = audit(stack.dsn, job_id)
    assert row["decision"] == "reject" and row["comment"] == "not now"
    # A late decision is refused: the job is no longer waiting.
    with pytest.raises(grpc.RpcError) as err:
        stub.Approve(pb.ApprovalRequest(job_id=job_id), metadata=BOSS, timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]


def test_undecided_job_times_out_to_a_classical_answer(
    stub: pb_grpc.GatewayStub, stack: Any
) -> None:
    job_id = submit(stub, 3)
    awaiting(stub, job_id)
    job = wait_for(stub, job_id, final, APPROVAL_TIMEOUT_MS / 1000 + 60)
    assert job.status == pb.JOB_STATUS_DEGRADED and job.result.route == pb.ROUTE_CLASSICAL
    assert "no approval decision" in job.result.reason
    assert all(a.route == pb.ROUTE_CLASSICAL for a in job.attempts)
    assert audit(stack.dsn, job_id, timeout_s=1) == []
