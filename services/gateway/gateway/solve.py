"""``Solve``: the best valid answer within the caller's deadline, always.

For every call the gateway, at once and in parallel:

1. publishes the job to the pipeline with the caller's deadline (minus a reserve for
   the answer to travel back) as its timeout, and follows its events;
2. computes an instant greedy answer, then runs the classical portfolio with the time
   left on the local solver pool (see :mod:`qbridge.solvers.pool`), which reports each
   improvement as it happens.

It answers as soon as the pipeline's final outcome arrives with a feasible solution
(quantum or classical, labelled as the pipeline labelled it) — unless that answer is
classical and the local portfolio already holds a strictly better one, which is then
returned instead — otherwise just before the deadline with the best of its own
answers, labelled ``ANSWER_SOURCE_GATEWAY``, route classical, with the reason the
pipeline's answer was not used. A caller who has
gone stops the wait and its queued local work; the pipeline job keeps its own
deadline (it is recorded, and GetJob shows its outcome later).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from gateway.admission import Admission
from gateway.errors import CallerGoneError, NoAnswerError
from gateway.jobs import JobFactory, JobPublisher, PreparedJob
from qbridge.bus.follower import EventHub, JobMemory
from qbridge.contracts.convert import outcome_fields
from qbridge.contracts.gateway_messages import STATUS_TO_PB, result_pb, usable
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import InvalidProblemError
from qbridge.problems.base import Problem
from qbridge.results.read import JobReader
from qbridge.solvers.base import Outcome
from qbridge.solvers.pool import LOCAL_SOLVES, LocalSolverPool, LocalTask
from qbridge.solvers.portfolio import better, instant_outcome

logger = logging.getLogger(__name__)

SOLVE_LATENCY = Histogram(
    "qbridge_gateway_solve_latency_seconds",
    "Solve latency from receipt to answer, by answer source.",
    ["source"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600),
)
SOLVE_DEADLINE_SHARE = Histogram(
    "qbridge_gateway_solve_deadline_share_ratio",
    "Solve latency as a share of the call's deadline (> 1 means late).",
    buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0, 1.05, 1.1, 1.5, 2.0),
)
ANSWER_RESERVE_LEARNED = Gauge(
    "qbridge_gateway_answer_reserve_learned_seconds",
    "Extra answer reserve learned from how late deadline answers left (p99 of recent ones).",
)
SOLVE_ANSWERS = Counter(
    "qbridge_gateway_solve_answers_total",
    "Solve answers by source (pipeline, gateway) and route (quantum, classical).",
    ["source", "route"],
)


class CallContext(Protocol):
    """What Solve needs from the gRPC call."""

    def is_active(self) -> bool:
        """Whether the caller is still waiting."""
        ...

    def time_remaining(self) -> float | None:
        """Seconds until the call's gRPC deadline, None without one."""
        ...

    def send_job_id(self, job_id: str) -> None:
        """Tell the caller the job id before the answer (initial metadata)."""
        ...


@dataclass(frozen=True)
class DeadlinePolicy:
    """How a Solve deadline is split.

    Attributes:
        default_ms: Deadline when the call states none.
        max_ms: Longest accepted deadline.
        answer_reserve_ms: Stop waiting this long before the deadline (at most 20% of it).
        answer_reserve_max_share: The reserve with what :class:`AnswerClock` learned added
            is at most this share of the deadline.
        answer_reserve_start_ms: What :class:`AnswerClock` assumes until it has measured.
        pipeline_reserve_share: Share of the deadline between the job's deadline and the
            caller's (the final outcome travels back in it).
        pipeline_reserve_min_ms: Lower bound of that reserve.
        pipeline_reserve_max_ms: Upper bound of that reserve.
        min_job_timeout_ms: Shortest job timeout intake accepts.
    """

    default_ms: int = 10_000
    max_ms: int = 600_000
    answer_reserve_ms: int = 40
    answer_reserve_max_share: float = 0.35
    answer_reserve_start_ms: float = 30.0
    pipeline_reserve_share: float = 0.1
    pipeline_reserve_min_ms: int = 50
    pipeline_reserve_max_ms: int = 1000
    min_job_timeout_ms: int = 100


@dataclass(frozen=True)
class SolvePlan:
    """The time plan of one Solve call.

    Attributes:
        deadline_ms: Effective deadline (from receipt).
        answer_in_s: When to stop waiting and answer (from receipt).
        job_timeout_ms: The pipeline job's timeout.
    """

    deadline_ms: int
    answer_in_s: float
    job_timeout_ms: int


class AnswerClock:
    """Learns how long after its planned moment a deadline answer actually leaves.

    On a busy machine a thread woken at its answer time may wait tens of milliseconds
    for a core (the solver pool, the pipeline and Kafka share it). The p99 of that
    overshoot over recent deadline answers is added to the answer reserve (up to
    ``DeadlinePolicy.answer_reserve_max_share`` of the deadline), so answers leave that
    much earlier and still arrive by the deadline; on a quiet machine it stays near 0.

    A fresh gateway has seen no answer yet, and its first answers under load are the
    late ones it would learn from: until ``settle`` answers have been seen the reserve
    is at least ``start_ms``.

    Args:
        window: Recent deadline answers kept.
        quantile: Which quantile of their overshoot is learned.
        start_ms: The reserve until ``settle`` answers have been seen.
        settle: Answers seen before only the measured quantile counts.
    """

    def __init__(
        self, window: int = 256, quantile: float = 0.99, start_ms: float = 0.0, settle: int = 64
    ) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._quantile = quantile
        self._start_ms = max(0.0, start_ms)
        self._settle = settle
        self._seen = 0
        self._learned = self._start_ms
        self._lock = threading.Lock()
        ANSWER_RESERVE_LEARNED.set_function(lambda: self._learned / 1000.0)

    def observe(self, overshoot_ms: float) -> None:
        """Record how late (ms, >= 0) a deadline answer left after its planned moment."""
        with self._lock:
            self._samples.append(max(0.0, overshoot_ms))
            self._seen += 1
            ordered = sorted(self._samples)  # a few hundred floats: microseconds
            learned = ordered[min(len(ordered) - 1, int(self._quantile * len(ordered)))]
            self._learned = learned if self._seen >= self._settle else max(self._start_ms, learned)

    @property
    def learned_ms(self) -> float:
        """The extra reserve (ms): the quantile of recent overshoots."""
        return self._learned


def plan(
    requested_ms: int,
    grpc_remaining_s: float | None,
    policy: DeadlinePolicy,
    learned_reserve_ms: float = 0.0,
) -> SolvePlan:
    """Split the effective deadline (the smaller of the request's and the call's).

    The answer reserve is ``answer_reserve_ms`` (at most 20% of the deadline) plus
    ``learned_reserve_ms`` (see :class:`AnswerClock`), in all at most
    ``answer_reserve_max_share`` of the deadline.

    Raises:
        InvalidProblemError: A negative or too long requested deadline (``deadline_ms``).
        NoAnswerError: The call's deadline has already passed.
    """
    if requested_ms < 0:
        raise InvalidProblemError(f"must be >= 0, got {requested_ms}", field="deadline_ms")
    if requested_ms > policy.max_ms:
        raise InvalidProblemError(
            f"must be at most {policy.max_ms} ms, got {requested_ms}", field="deadline_ms"
        )
    candidates: list[float] = []
    if requested_ms > 0:
        candidates.append(float(requested_ms))
    if grpc_remaining_s is not None:
        candidates.append(grpc_remaining_s * 1000.0)
    deadline = min(candidates) if candidates else float(policy.default_ms)
    deadline = min(deadline, float(policy.max_ms))
    if deadline < 1:
        raise NoAnswerError("the call's deadline has passed")
    reserve = min(float(policy.answer_reserve_ms), 0.2 * deadline)
    room = max(0.0, policy.answer_reserve_max_share * deadline - reserve)
    reserve += min(max(0.0, learned_reserve_ms), room)
    pipe_reserve = min(
        max(deadline * policy.pipeline_reserve_share, policy.pipeline_reserve_min_ms),
        policy.pipeline_reserve_max_ms,
    )
    return SolvePlan(
        deadline_ms=int(deadline),
        answer_in_s=(deadline - reserve) / 1000.0,
        job_timeout_ms=max(policy.min_job_timeout_ms, int(deadline - pipe_reserve)),
    )


def local_outcome_record(
    job: PreparedJob, outcome: Outcome, reason: str, now: datetime
) -> dict[str, Any]:
    """The gateway's own answer in ``qbridge.JobOutcome`` shape."""
    return {
        "job_id": job.job_id,
        "tenant": job.tenant,
        "status": "degraded" if job.quantum_wanted else "succeeded",
        "reason": reason,
        "problem_type": job.problem_type,
        "input_fingerprint": job.fingerprint,
        "route": "classical",
        **outcome_fields(outcome),
        "attempts": 0,
        "quantum_classical_gap": None,
        "correlation_id": job.correlation_id,
        "completed_at": now,
    }


def beats_pipeline(problem: Problem, local: Outcome, outcome: Mapping[str, Any]) -> bool:
    """Whether a feasible local answer is strictly better than a classical pipeline answer.

    A quantum answer is never replaced: it is what the caller asked the pipeline for.
    """
    sol = outcome.get("solution") or {}
    if outcome.get("route") == "quantum" or not local.best.feasible:
        return False
    if not sol.get("feasible"):
        return True
    return problem.is_better(local.best.objective, float(sol["objective"]))


def why_not_pipeline(
    outcome: Mapping[str, Any] | None,
    rejection: Mapping[str, Any] | None,
    last: Mapping[str, Any] | None,
    deadline_ms: int,
) -> str:
    """Why the pipeline's answer was not used, in words a caller can act on."""
    if rejection is not None:
        return f"intake rejected the job: {rejection.get('reason') or 'no reason given'}"
    if outcome is not None:
        sol = outcome.get("solution")
        detail = "an infeasible answer" if sol else "no answer"
        return f"pipeline job {outcome.get('status')} with {detail}: {outcome.get('reason') or ''}"
    if last is None:
        return f"pipeline had not accepted the job within the {deadline_ms} ms deadline"
    where = ""
    if last.get("route"):
        where = f" on {last['route']}" + (f" ({last['backend']})" if last.get("backend") else "")
    return (
        f"pipeline had no answer within the {deadline_ms} ms deadline "
        f"(job {last.get('to_status')}{where})"
    )


class SolveCoordinator:
    """Runs Solve calls."""

    def __init__(
        self,
        jobs: JobFactory,
        publisher: JobPublisher,
        hub: EventHub,
        pool: LocalSolverPool,
        admission: Admission,
        policy: DeadlinePolicy,
        reader: JobReader | None = None,
    ) -> None:
        """Wire the parts a Solve call uses."""
        self.jobs = jobs
        self.publisher = publisher
        self.hub = hub
        self.pool = pool
        self.admission = admission
        self.policy = policy
        self.reader = reader
        self._lookups = futures.ThreadPoolExecutor(2, thread_name_prefix="solve-lookup")
        self.clock = AnswerClock(start_ms=policy.answer_reserve_start_ms)

    def solve(
        self,
        tenant: str,
        request: pb.SolveRequest,
        call: CallContext,
        *,
        received: float | None = None,
    ) -> pb.SolveResponse:
        """Answer one Solve call (see the module docstring).

        ``received`` is when the call arrived (``time.monotonic()``; now if None): the
        deadline counts from then.

        Raises:
            InvalidProblemError: Invalid request (INVALID_ARGUMENT).
            PermissionDeniedError: Premium backend not allowed (PERMISSION_DENIED).
            OverloadedError: Not taken now (RESOURCE_EXHAUSTED).
            CallerGoneError: The caller went away (CANCELLED).
            NoAnswerError: Not even an infeasible answer in time (DEADLINE_EXCEEDED).
        """
        now = time.monotonic()
        received = now if received is None else min(received, now)
        # The gRPC deadline left is read now: the time since arrival is already spent.
        remaining = call.time_remaining()
        if remaining is not None:
            remaining += now - received
        p = plan(request.deadline_ms, remaining, self.policy, self.clock.learned_ms)
        answer_at = received + p.answer_in_s
        job = self.jobs.prepare(
            tenant,
            request.problem,
            request.options,
            timeout_ms=p.job_timeout_ms,
            call="solve",
            per_call_key=True,
            timeout_field="deadline_ms",
        )
        marks = {"prepared": time.monotonic()}
        with self.admission.solve_slot(tenant, job.priority):
            call.send_job_id(job.job_id)
            sub, past = self.hub.subscribe(job.job_id)
            task: LocalTask | None = None
            try:
                outcome = past.outcome
                if outcome is None and request.options.idempotency_key:
                    lookup_s = min(0.5, 0.25 * p.deadline_ms / 1000)
                    outcome = self._stored_outcome(job.job_id, lookup_s)
                if usable(outcome):
                    assert outcome is not None
                    return self._answer(
                        job, p, received, marks, "pipeline", outcome, outcome["status"]
                    )
                # The local run starts first: it works while the job is published and the
                # instant answer is computed (both take a while on large problems).
                task = self.pool.submit(job.problem, job.seed, answer_at)
                if outcome is None:
                    self.hub.remember_submitted(job.job_id, tenant)
                    self.publisher.publish(job)
                marks["published"] = time.monotonic()
                instant = instant_outcome(job.problem, job.seed)
                LOCAL_SOLVES.labels("greedy", "ok" if instant is not None else "none").inc()
                marks["instant"] = time.monotonic()
                last = _last_transition(past)
                rejection = past.rejection
                marks["waiting"] = time.monotonic()
                while outcome is None and rejection is None:
                    left = answer_at - time.monotonic()
                    if left <= 0:
                        break
                    if not call.is_active():
                        raise CallerGoneError("the caller went away")
                    if (
                        task is not None
                        and not job.quantum_wanted
                        and task.outcome is not None
                        and task.outcome.quality.proven_optimal
                    ):
                        break  # classical wanted and already proven optimal: no need to wait
                    event = sub.get(min(left, 0.05))
                    if event is None:
                        continue
                    if event.kind == "transition":
                        if last is None or int(event.value["seq"]) > int(last["seq"]):
                            last = event.value
                    elif event.kind == "outcome":
                        outcome = event.value
                    elif event.kind == "rejected":
                        rejection = event.value
                marks["waited"] = time.monotonic()
                if not call.is_active():
                    raise CallerGoneError("the caller went away")
                local = better(job.problem, instant, task.best() if task is not None else None)
                if usable(outcome):
                    assert outcome is not None
                    if local is not None and beats_pipeline(job.problem, local, outcome):
                        reason = (
                            f"gateway classical answer ({local.provenance.solver}): better than "
                            f"the pipeline's classical answer "
                            f"({outcome['solution']['objective']:g})"
                        )
                        record = local_outcome_record(job, local, reason, datetime.now(UTC))
                        return self._answer(
                            job, p, received, marks, "gateway", record, outcome["status"]
                        )
                    return self._answer(
                        job, p, received, marks, "pipeline", outcome, outcome["status"]
                    )
                job_status = (
                    "rejected"
                    if rejection is not None
                    else (outcome or {}).get("status")
                    or (last or {}).get("to_status")
                    or "submitted"
                )
                if local is not None and (local.best.feasible or outcome is None):
                    reason = (
                        f"gateway classical answer ({local.provenance.solver}): "
                        + why_not_pipeline(outcome, rejection, last, p.deadline_ms)
                    )
                    record = local_outcome_record(job, local, reason, datetime.now(UTC))
                    return self._answer(
                        job, p, received, marks, "gateway", record, job_status or "submitted"
                    )
                if outcome is not None:
                    return self._answer(
                        job, p, received, marks, "pipeline", outcome, job_status or "submitted"
                    )
                raise NoAnswerError(
                    f"no answer found within the {p.deadline_ms} ms deadline: "
                    + why_not_pipeline(outcome, rejection, last, p.deadline_ms)
                )
            finally:
                self.hub.unsubscribe(sub)
                if task is not None:
                    task.cancel()

    def _stored_outcome(self, job_id: str, timeout_s: float) -> dict[str, Any] | None:
        """A final outcome already stored for a repeated idempotency key.

        The store is an optimization here: a slow or unreachable database costs at most
        ``timeout_s`` of the caller's deadline and never fails the call.
        """
        if self.reader is None:
            return None
        reader = self.reader
        lookup = self._lookups.submit(reader.job, job_id)
        try:
            stored = lookup.result(timeout=timeout_s)
        except Exception as exc:
            logger.warning("stored outcome of a repeated key not available: %r", exc)
            return None
        return stored.outcome if stored is not None else None

    def _answer(
        self,
        job: PreparedJob,
        p: SolvePlan,
        received: float,
        marks: dict[str, float],
        source: str,
        outcome: Mapping[str, Any],
        job_status: str,
    ) -> pb.SolveResponse:
        elapsed = time.monotonic() - received
        overshoot_ms = (elapsed - p.answer_in_s) * 1000.0
        if overshoot_ms > -1.0:  # answered at its planned moment, not earlier: learn from it
            self.clock.observe(overshoot_ms)
        result = result_pb(outcome)
        route = str(outcome.get("route") or "none")
        SOLVE_ANSWERS.labels(source, route).inc()
        SOLVE_LATENCY.labels(source).observe(elapsed)
        SOLVE_DEADLINE_SHARE.observe(elapsed * 1000.0 / max(1, p.deadline_ms))
        phases = " ".join(f"{k}={(v - received) * 1000:.0f}" for k, v in marks.items())
        logger.info(
            "solve %s answered by %s via %s in %.0f ms (deadline %d ms; ms since receipt: %s): %s",
            job.job_id,
            source,
            route,
            elapsed * 1000,
            p.deadline_ms,
            phases,
            outcome.get("reason") or "",
        )
        return pb.SolveResponse(
            job_id=job.job_id,
            source=pb.ANSWER_SOURCE_PIPELINE if source == "pipeline" else pb.ANSWER_SOURCE_GATEWAY,
            result=result,
            job_status=STATUS_TO_PB.get(job_status, pb.JOB_STATUS_UNSPECIFIED),
            elapsed_ms=elapsed * 1000.0,
            deadline_ms=p.deadline_ms,
            problem_type=job.problem_type,
        )


def _last_transition(mem: JobMemory) -> dict[str, Any] | None:
    if not mem.transitions:
        return None
    return mem.transitions[max(mem.transitions)]
