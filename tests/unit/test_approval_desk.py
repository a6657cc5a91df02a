"""Approver roles on API keys and the gateway's approval use cases (no broker, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.approvals import ApprovalDesk, NotAwaitingApprovalError
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.service.auth import APPROVER, Authenticator, RoleRequiredError
from qbridge.topics import APPROVALS


class FakeTracker:
    def __init__(self, status: int) -> None:
        self.status = status
        self.listed: list[pb.ListJobsRequest] = []

    def get(self, tenant: str, request: pb.GetJobRequest) -> pb.Job:
        return pb.Job(job_id=request.job_id, tenant=tenant, status=self.status, correlation_id="c")

    def list(self, tenant: str, request: pb.ListJobsRequest) -> pb.ListJobsResponse:
        self.listed.append(request)
        return pb.ListJobsResponse(jobs=[pb.JobSummary(job_id="j1")])


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, dict[str, Any], Any]] = []

    def send(self, topic: Any, value: dict[str, Any], key: Any = None, headers: Any = None) -> None:
        self.sent.append((topic, value, key))

    def flush(self, timeout: float | None = None) -> int:
        return 0


AUTH = Authenticator({"boss": "acme", "user": "acme"}, {"boss": [APPROVER]})
BOSS = AUTH.caller([("x-api-key", "boss")])
USER = AUTH.caller([("x-api-key", "user")])


def desk(status: int) -> tuple[ApprovalDesk, FakeProducer]:
    producer = FakeProducer()
    return ApprovalDesk(FakeTracker(status), producer), producer  # type: ignore[arg-type]


def test_identity_is_tenant_and_key_digest_never_the_key() -> None:
    assert BOSS.tenant == "acme" and BOSS.roles == {APPROVER}
    assert BOSS.identity.startswith("acme/key-") and "boss" not in BOSS.identity
    assert USER.roles == frozenset() and USER.identity != BOSS.identity
    with pytest.raises(ValueError, match="not in the API keys"):
        Authenticator({"a": "t"}, {"b": [APPROVER]})


def test_only_approvers_decide_or_list() -> None:
    d, producer = desk(pb.JOB_STATUS_AWAITING_APPROVAL)
    with pytest.raises(RoleRequiredError):
        d.decide(USER, "approve", pb.ApprovalRequest(job_id="j1"))
    with pytest.raises(RoleRequiredError):
        d.pending(USER, pb.ListPendingRequest())
    assert producer.sent == []


def test_decision_is_published_with_the_reviewer() -> None:
    d, producer = desk(pb.JOB_STATUS_AWAITING_APPROVAL)
    resp = d.decide(BOSS, "reject", pb.ApprovalRequest(job_id="j1", comment="no"))
    [(topic, value, key)] = producer.sent
    assert topic == APPROVALS and key == "j1"
    assert value["decision"] == "reject" and value["reviewer"] == BOSS.identity
    assert value["comment"] == "no" and value["decision_id"] == resp.decision_id


def test_a_job_not_waiting_cannot_be_decided() -> None:
    d, producer = desk(pb.JOB_STATUS_RUNNING)
    with pytest.raises(NotAwaitingApprovalError):
        d.decide(BOSS, "approve", pb.ApprovalRequest(job_id="j1"))
    assert producer.sent == []


def test_pending_lists_only_awaiting_jobs() -> None:
    tracker = FakeTracker(pb.JOB_STATUS_AWAITING_APPROVAL)
    d = ApprovalDesk(tracker, FakeProducer())  # type: ignore[arg-type]
    assert [j.job_id for j in d.pending(BOSS, pb.ListPendingRequest()).jobs] == ["j1"]
    assert list(tracker.listed[0].statuses) == [pb.JOB_STATUS_AWAITING_APPROVAL]
