"""The gRPC servicer: authentication, error mapping and metrics around the use cases.

Every call of ``qbridge.gateway.v1.Gateway`` is authenticated from its metadata first.
Typed errors become status codes (:data:`ERRORS`, answered as
:mod:`qbridge.service.grpc_errors` describes: the message of an INVALID_ARGUMENT starts
with the field path, the trailing metadata carries an ``ErrorDetail`` and a retry hint).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from prometheus_client import Counter, Histogram

from gateway.admission import Admission
from gateway.approvals import ApprovalDesk, NotAwaitingApprovalError
from gateway.errors import CallerGoneError, NoAnswerError, NotFoundError, UnavailableError
from gateway.jobs import JobFactory, JobPublisher, PermissionDeniedError
from gateway.solve import SolveCoordinator
from gateway.tracking import JobTracker
from qbridge.bus.follower import EventHub
from qbridge.contracts.gateway_messages import JOB_ID_KEY
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qbridge.errors import BusError, InvalidProblemError, StoreUnavailableError
from qbridge.service import log_context
from qbridge.service.admission import OverloadedError
from qbridge.service.auth import (
    Authenticator,
    Caller,
    RoleRequiredError,
    UnauthenticatedError,
)
from qbridge.service.grpc_errors import ErrorCodes
from qbridge.service.guard import call_arrival

logger = logging.getLogger(__name__)

REQUESTS = Counter(
    "qbridge_gateway_requests_total",
    "gRPC calls by method and status code.",
    ["method", "code"],
)
REQUEST_LATENCY = Histogram(
    "qbridge_gateway_request_duration_seconds",
    "gRPC call duration by method (WatchJob: stream lifetime).",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

ERRORS = ErrorCodes(
    [
        (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
        (InvalidProblemError, grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        (NotFoundError, grpc.StatusCode.NOT_FOUND, "not_found"),
        (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED, "permission_denied"),
        (RoleRequiredError, grpc.StatusCode.PERMISSION_DENIED, "permission_denied"),
        (NotAwaitingApprovalError, grpc.StatusCode.FAILED_PRECONDITION, "not_awaiting_approval"),
        (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded"),
        (NoAnswerError, grpc.StatusCode.DEADLINE_EXCEEDED, "over_budget"),
        (CallerGoneError, grpc.StatusCode.CANCELLED, "cancelled"),
        (UnavailableError, grpc.StatusCode.UNAVAILABLE, "unavailable"),
        (StoreUnavailableError, grpc.StatusCode.UNAVAILABLE, "unavailable"),
        (BusError, grpc.StatusCode.UNAVAILABLE, "unavailable"),
    ]
)


class _Call:
    """A :class:`~gateway.solve.CallContext` over a gRPC servicer context."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context

    def is_active(self) -> bool:
        return bool(self.context.is_active())

    def time_remaining(self) -> float | None:
        remaining = self.context.time_remaining()
        return None if remaining is None else float(remaining)

    def send_job_id(self, job_id: str) -> None:
        self.context.send_initial_metadata(((JOB_ID_KEY, job_id),))


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    code, message, md = ERRORS.answer(exc)
    if code is grpc.StatusCode.INTERNAL:
        logger.error("%s failed", method, exc_info=exc)
    elif code is not grpc.StatusCode.CANCELLED:
        logger.info("%s -> %s: %s", method, code.name, message)
    REQUESTS.labels(method, code.name).inc()
    context.set_trailing_metadata(md)
    context.abort(code, message)


R = TypeVar("R")
Unary = Callable[[Any, str, Any, grpc.ServicerContext], R]


def _unary(method: str) -> Callable[[Unary[R]], Callable[[Any, Any, grpc.ServicerContext], R]]:
    def decorate(fn: Unary[R]) -> Callable[[Any, Any, grpc.ServicerContext], R]:
        @functools.wraps(fn)
        def handler(self: GatewayService, request: Any, context: grpc.ServicerContext) -> R:
            started = time.perf_counter()
            failure: BaseException
            try:
                tenant = self.auth.tenant(context.invocation_metadata())
                with log_context(tenant=tenant, rpc=method):
                    response = fn(self, tenant, request, context)
                REQUESTS.labels(method, "OK").inc()
                return response
            except Exception as exc:  # typed errors map to codes; others are INTERNAL
                failure = exc
            finally:
                REQUEST_LATENCY.labels(method).observe(time.perf_counter() - started)
            _abort(context, failure, method)
            raise AssertionError("unreachable: abort raises")

        return handler

    return decorate


class GatewayService(pb_grpc.GatewayServicer):
    """The ``qbridge.gateway.v1.Gateway`` servicer."""

    def __init__(
        self,
        auth: Authenticator,
        jobs: JobFactory,
        publisher: JobPublisher,
        hub: EventHub,
        solver: SolveCoordinator,
        tracker: JobTracker,
        admission: Admission,
        *,
        default_timeout_ms: int = 30_000,
        submit_flush_s: float = 10.0,
        approvals: ApprovalDesk | None = None,
    ) -> None:
        """Wire the use cases."""
        self.auth = auth
        self.jobs = jobs
        self.publisher = publisher
        self.hub = hub
        self.solver = solver
        self.tracker = tracker
        self.admission = admission
        self.default_timeout_ms = default_timeout_ms
        self.submit_flush_s = submit_flush_s
        self.approvals = approvals

    @_unary("Solve")
    def Solve(  # noqa: N802 - gRPC method name
        self, tenant: str, request: pb.SolveRequest, context: grpc.ServicerContext
    ) -> pb.SolveResponse:
        """See :class:`gateway.solve.SolveCoordinator`."""
        # The deadline counts from the call's arrival (the guard's polling thread), not
        # from this pool thread's start: under load the hop alone can take milliseconds.
        return self.solver.solve(tenant, request, _Call(context), received=call_arrival())

    @_unary("Submit")
    def Submit(  # noqa: N802
        self, tenant: str, request: pb.SubmitRequest, context: grpc.ServicerContext
    ) -> pb.SubmitResponse:
        """Publish the job durably and return its id."""
        opts = request.options
        timeout_ms = opts.timeout_ms if opts.HasField("timeout_ms") else self.default_timeout_ms
        job = self.jobs.prepare(tenant, request.problem, opts, timeout_ms=timeout_ms, call="submit")
        self.admission.check_submit(job.priority)
        self.hub.remember_submitted(job.job_id, tenant)
        remaining = context.time_remaining()
        flush = (
            self.submit_flush_s
            if remaining is None
            else max(0.1, min(self.submit_flush_s, remaining))
        )
        self.publisher.publish(job, flush_timeout_s=flush)
        return pb.SubmitResponse(
            job_id=job.job_id,
            idempotency_key=job.idempotency_key,
            input_fingerprint=job.fingerprint,
            status=pb.JOB_STATUS_SUBMITTED,
            problem_type=job.problem_type,
            timeout_ms=job.timeout_ms,
        )

    @_unary("GetJob")
    def GetJob(  # noqa: N802
        self, tenant: str, request: pb.GetJobRequest, context: grpc.ServicerContext
    ) -> pb.Job:
        """The job as known now."""
        return self.tracker.get(tenant, request)

    @_unary("ListJobs")
    def ListJobs(  # noqa: N802
        self, tenant: str, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        """A page of the tenant's jobs."""
        return self.tracker.list(tenant, request)

    @_unary("Approve")
    def Approve(  # noqa: N802
        self, tenant: str, request: pb.ApprovalRequest, context: grpc.ServicerContext
    ) -> pb.ApprovalResponse:
        """Approve a job's quantum attempt (approver keys only)."""
        desk, caller = self._approvals(context)
        return desk.decide(caller, "approve", request)

    @_unary("Reject")
    def Reject(  # noqa: N802
        self, tenant: str, request: pb.ApprovalRequest, context: grpc.ServicerContext
    ) -> pb.ApprovalResponse:
        """Reject a job's quantum attempt (approver keys only)."""
        desk, caller = self._approvals(context)
        return desk.decide(caller, "reject", request)

    @_unary("ListPending")
    def ListPending(  # noqa: N802
        self, tenant: str, request: pb.ListPendingRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        """The tenant's jobs awaiting approval (approver keys only)."""
        desk, caller = self._approvals(context)
        return desk.pending(caller, request)

    def _approvals(self, context: grpc.ServicerContext) -> tuple[ApprovalDesk, Caller]:
        """The approval desk and the caller (with its roles) of an approval call."""
        if self.approvals is None:
            raise UnavailableError("approvals are not enabled on this gateway")
        return self.approvals, self.auth.caller(context.invocation_metadata())

    def WatchJob(  # noqa: N802
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.JobUpdate]:
        """Stream the job's transitions until final."""
        method = "WatchJob"
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            tenant = self.auth.tenant(context.invocation_metadata())
            with log_context(tenant=tenant, rpc=method, job_id=request.job_id):
                yield from self.tracker.watch(tenant, request, context.is_active)
            REQUESTS.labels(method, "OK").inc()
        except Exception as exc:  # typed errors map to codes; others are INTERNAL
            failure = exc
        finally:
            REQUEST_LATENCY.labels(method).observe(time.perf_counter() - started)
        if failure is not None:
            _abort(context, failure, method)
