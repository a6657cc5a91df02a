"""Turning a gRPC request into the pipeline's ``ProblemRequest``, validated as intake will.

The job id is intake's own (:func:`qbridge.validation.accept.accept` derives it from tenant and
idempotency key, the key defaulting to the fingerprint of the normalized problem), so
the id returned to the caller is the id the pipeline uses, and repeated submissions of
the same key map to the same job.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from qbridge.bus import BusProducer
from qbridge.bus import headers as h
from qbridge.contracts.codec import AvroCodec
from qbridge.contracts.gateway_messages import invalid, problem_input, problem_request
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import CodecError, DeliveryError, InvalidProblemError, QBridgeError
from qbridge.problems.base import Problem
from qbridge.problems.limits import Limits
from qbridge.topics import PROBLEM_REQUESTS
from qbridge.validation.accept import RequestBounds, accept_request

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

BACKEND_TAG = "backend"
"""Tag carrying a requested quantum backend to the orchestrator."""
SOURCE_TAG = "qbridge.source"
CALL_TAG = "qbridge.gateway-call"


class PermissionDeniedError(QBridgeError):
    """The tenant may not use what it asked for (e.g. a premium backend)."""


@dataclass(frozen=True)
class PreparedJob:
    """A validated request, ready to publish.

    Attributes:
        job_id: The pipeline's job id.
        tenant: Owner.
        request: The ``qbridge.ProblemRequest`` record (normalized problem).
        problem: The normalized problem (for the gateway's own answer).
        problem_type: Its type.
        idempotency_key: Key of the job (given, or the fingerprint, or per-call).
        fingerprint: Input fingerprint.
        seed: Seed the pipeline will use.
        priority: 0..9.
        timeout_ms: The job's time budget.
        fallback_policy: Routing policy.
        correlation_id: Correlation id (logs, headers).
        quantum_wanted: Whether a classical answer counts as degraded.
    """

    job_id: str
    tenant: str
    request: dict[str, Any]
    problem: Problem
    problem_type: str
    idempotency_key: str
    fingerprint: str
    seed: int
    priority: int
    timeout_ms: int
    fallback_policy: str
    correlation_id: str
    quantum_wanted: bool


F = TypeVar("F", bound=Callable[..., Any])


def _typed_hostile_errors(fn: F) -> F:
    """Hostile but well-formed input is the caller's error (INVALID_ARGUMENT), never INTERNAL.

    Nesting beyond the parser's stack, finite numbers whose sums overflow...
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RecursionError, OverflowError, ArithmeticError) as exc:
            raise InvalidProblemError(
                f"cannot be processed: {type(exc).__name__}: {exc}", field="problem"
            ) from exc

    return wrapper  # type: ignore[return-value]


class JobFactory:
    """Builds :class:`PreparedJob` values from request messages."""

    def __init__(
        self,
        limits: Limits,
        bounds: RequestBounds,
        *,
        known_backends: Collection[str] = (),
        premium_backends: Collection[str] = (),
        premium_tenants: Collection[str] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        codec: AvroCodec | None = None,
        max_request_bytes: int | None = None,
    ) -> None:
        """Create a factory.

        Args:
            limits: Problem size limits (intake's).
            bounds: Bounds on request fields (intake's).
            known_backends: Backends a request may name.
            premium_backends: Backends reserved to premium tenants.
            premium_tenants: Tenants allowed on premium backends.
            clock: Acceptance-time source for validation.
            codec: Encodes the request to measure it against ``max_request_bytes``.
            max_request_bytes: Byte budget of the encoded request (intake's): larger
                requests are refused "too large" before they are validated.
        """
        if max_request_bytes is not None and codec is None:
            raise ValueError("max_request_bytes needs a codec to measure requests")
        self.codec = codec
        self.max_request_bytes = max_request_bytes
        self.limits = limits
        self.bounds = bounds
        self.known_backends = frozenset(known_backends)
        self.premium_backends = frozenset(premium_backends)
        self.premium_tenants = frozenset(premium_tenants)
        self.clock = clock

    @_typed_hostile_errors
    def prepare(
        self,
        tenant: str,
        problem_msg: pb.Problem,
        options: pb.JobOptions,
        *,
        timeout_ms: int,
        call: str,
        per_call_key: bool = False,
        timeout_field: str = "options.timeout_ms",
    ) -> PreparedJob:
        """Validate a request exactly as intake will and derive its job id.

        Args:
            tenant: The authenticated tenant.
            problem_msg: The problem message.
            options: Job options.
            timeout_ms: The job's time budget.
            call: ``solve`` or ``submit`` (recorded as a tag).
            per_call_key: Without an idempotency key, use a fresh one (Solve) instead
                of the input fingerprint (Submit).
            timeout_field: How to name the timeout in errors.

        Raises:
            InvalidProblemError: Invalid problem or option (field is the request path).
            PermissionDeniedError: A premium backend for a tenant not allowed on it.
        """
        given = problem_msg.WhichOneof("kind") or "problem"
        try:
            pin = problem_input(problem_msg)
        except InvalidProblemError as exc:
            if exc.field and exc.field.startswith("problem"):
                raise
            raise invalid(exc, given) from exc
        tags = dict(options.tags)
        backend = options.backend.strip()
        if backend:
            if self.known_backends and backend not in self.known_backends:
                raise InvalidProblemError(
                    f"unknown backend {backend!r} "
                    f"(known: {', '.join(sorted(self.known_backends))})",
                    field="options.backend",
                )
            if backend in self.premium_backends and tenant not in self.premium_tenants:
                raise PermissionDeniedError(
                    f"tenant {tenant!r} is not allowed on premium backend {backend!r}"
                )
            tags[BACKEND_TAG] = backend
        tags[SOURCE_TAG] = "gateway"
        tags[CALL_TAG] = call
        key = options.idempotency_key or None
        if key is None and per_call_key:
            key = f"{call}-{uuid.uuid4()}"
        now = self.clock()
        request = problem_request(
            tenant, pin, options, timeout_ms=timeout_ms, key=key, tags=tags, created_at=now
        )
        self._check_size(request, pin.branch)
        try:
            accepted = accept_request(request, now, self.limits, bounds=self.bounds)
        except InvalidProblemError as exc:
            raise invalid(exc, pin.branch, timeout_field=timeout_field) from exc
        env, problem = accepted.envelope, accepted.problem
        request.update(
            idempotency_key=env["idempotency_key"],
            problem=env["problem"],
            correlation_id=env["correlation_id"],
        )
        return PreparedJob(
            job_id=env["job_id"],
            tenant=tenant,
            request=request,
            problem=problem,
            problem_type=env["problem_type"],
            idempotency_key=env["idempotency_key"],
            fingerprint=env["input_fingerprint"],
            seed=int(env["seed"]),
            priority=int(env["priority"]),
            timeout_ms=int(env["timeout_ms"]),
            fallback_policy=str(env["fallback_policy"]),
            correlation_id=str(env["correlation_id"]),
            quantum_wanted=problem.quantum_encodable and env["fallback_policy"] != "classical_only",
        )

    def _check_size(self, request: dict[str, Any], branch: str) -> None:
        """Refuse a request larger than the pipeline's byte budget (before validating it).

        Raises:
            InvalidProblemError: Too large.
        """
        if self.codec is None or self.max_request_bytes is None:
            return
        try:
            size = len(self.codec.encode(PROBLEM_REQUESTS.record, request))
        except CodecError:
            return  # not encodable as given: accept() names the field (the size is bounded
            # by the gRPC receive limit)
        if size > self.max_request_bytes:
            raise InvalidProblemError(
                f"too large: {size} bytes as the pipeline carries it, at most "
                f"{self.max_request_bytes} (QBRIDGE_MAX_REQUEST_BYTES)",
                field=f"problem.{branch}",
            )


class JobPublisher:
    """Publishes prepared jobs on the problem-request topic."""

    def __init__(self, producer: BusProducer) -> None:
        """Publish through ``producer`` (idempotent, acks=all)."""
        self.producer = producer

    def publish(self, job: PreparedJob, *, flush_timeout_s: float | None = None) -> None:
        """Produce the request, keyed by tenant and idempotency key.

        Args:
            job: The prepared job.
            flush_timeout_s: Wait until the broker acknowledged it (Submit: the id
                returned must be durable); ``None`` returns at once (Solve).

        Raises:
            DeliveryError: This very message was not acknowledged (its own delivery
                report, never another call's) within ``flush_timeout_s``.
        """
        headers = h.to_list(
            {
                h.CORRELATION_ID: job.correlation_id,
                h.TRACEPARENT: h.new_traceparent(),
                h.JOB_ID: job.job_id,
            }
        )
        delivered = threading.Event()
        failure: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failure.append(err.str())
            delivered.set()

        self.producer.send(
            PROBLEM_REQUESTS,
            job.request,
            key=f"{job.tenant}:{job.idempotency_key}",
            headers=headers,
            on_delivery=on_delivery if flush_timeout_s is not None else None,
        )
        if flush_timeout_s is None:
            return
        deadline = time.monotonic() + flush_timeout_s
        while not delivered.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeliveryError(
                    f"job {job.job_id} not acknowledged by Kafka within {flush_timeout_s:.1f}s"
                )
            self.producer.poll(min(left, 0.05))
        if failure:
            raise DeliveryError(f"job {job.job_id} not delivered: {failure[0]}")
