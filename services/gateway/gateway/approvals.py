"""Approve / reject jobs held for approval, and list them (approver keys only).

The gateway does not change a job itself: it checks that the job is the caller's
tenant's and is waiting, then publishes an ``ApprovalDecision`` keyed by the job
id. The orchestrator applies the first decision for a job (later ones are ignored);
the results sink stores every decision as the audit trail.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from gateway.tracking import JobTracker
from qbridge.bus import BusProducer
from qbridge.bus import headers as h
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import ErrorClass, QBridgeError
from qbridge.service.auth import APPROVER, Caller
from qbridge.topics import APPROVALS

logger = logging.getLogger(__name__)

DECISIONS = ("approve", "reject")


class NotAwaitingApprovalError(QBridgeError):
    """The job is not (or no longer) waiting for approval."""

    error_class = ErrorClass.INVALID_INPUT


class ApprovalDesk:
    """The approval use cases of the gateway."""

    def __init__(
        self, tracker: JobTracker, producer: BusProducer, *, flush_timeout_s: float = 10.0
    ) -> None:
        """Read jobs through ``tracker``; publish decisions through ``producer``."""
        self.tracker = tracker
        self.producer = producer
        self.flush_timeout_s = flush_timeout_s

    def decide(
        self, caller: Caller, decision: str, request: pb.ApprovalRequest
    ) -> pb.ApprovalResponse:
        """Publish ``decision`` (approve | reject) for a job of the caller's tenant.

        Raises:
            RoleRequiredError: The key is not an approver.
            NotFoundError: No such job for the tenant.
            NotAwaitingApprovalError: The job is not waiting for approval.
            DeliveryError: The broker did not acknowledge the decision in time.
        """
        caller.require(APPROVER)
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}")
        job = self.tracker.get(caller.tenant, pb.GetJobRequest(job_id=request.job_id))
        if job.status != pb.JOB_STATUS_AWAITING_APPROVAL:
            raise NotAwaitingApprovalError(
                f"job {request.job_id} is {pb.JobStatus.Name(job.status)}, not awaiting approval"
            )
        now = datetime.now(UTC)
        decision_id = str(uuid.uuid4())
        correlation_id = job.correlation_id or decision_id
        value = {
            "decision_id": decision_id,
            "job_id": request.job_id,
            "decision": decision,
            "reviewer": caller.identity,
            "reviewer_tenant": caller.tenant,
            "comment": request.comment,
            "correlation_id": correlation_id,
            "decided_at": now,
        }
        headers = h.to_list({h.CORRELATION_ID: correlation_id, h.JOB_ID: request.job_id})
        self.producer.send(APPROVALS, value, key=request.job_id, headers=headers)
        self.producer.flush(self.flush_timeout_s)
        logger.info("job %s: %s by %s", request.job_id, decision, caller.identity)
        response = pb.ApprovalResponse(
            decision_id=decision_id,
            job_id=request.job_id,
            decision=decision,
            reviewer=caller.identity,
        )
        response.decided_at.FromDatetime(now)
        return response

    def pending(self, caller: Caller, request: pb.ListPendingRequest) -> pb.ListJobsResponse:
        """The caller's tenant's jobs awaiting approval.

        Raises:
            RoleRequiredError: The key is not an approver.
        """
        caller.require(APPROVER)
        return self.tracker.list(
            caller.tenant,
            pb.ListJobsRequest(
                page_size=request.page_size,
                page_token=request.page_token,
                statuses=[pb.JOB_STATUS_AWAITING_APPROVAL],
            ),
        )
