"""The gateway API's protobuf messages <-> platform records (no I/O here).

Problems arrive as typed messages or as JSON; both become the Avro problem record the
pipeline carries, and are validated by :func:`qbridge.validation.accept.accept` like
intake does, so a request the gateway takes is one intake takes. Field paths in errors
are reported in the caller's terms (``problem.maxcut.edges[3].weight``,
``problem.json.edges[3][2]``).

Results are built from one shape, the ``qbridge.JobOutcome`` record (as decoded by
fastavro), whether they come from Kafka, from the results database or from the
gateway's own classical answer.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from qbridge.contracts.convert import problem_to_avro
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import InvalidProblemError
from qbridge.problems.base import Problem
from qbridge.problems.registry import PROBLEM_TYPES, problem_from_dict
from qbridge.status import ANSWERED_STATUSES, FINAL_STATUSES

STATUS_TO_PB: dict[str, pb.JobStatus] = {
    "submitted": pb.JOB_STATUS_SUBMITTED,
    "accepted": pb.JOB_STATUS_ACCEPTED,
    "routed": pb.JOB_STATUS_ROUTED,
    "running": pb.JOB_STATUS_RUNNING,
    "succeeded": pb.JOB_STATUS_SUCCEEDED,
    "degraded": pb.JOB_STATUS_DEGRADED,
    "failed": pb.JOB_STATUS_FAILED,
    "expired": pb.JOB_STATUS_EXPIRED,
    "rejected": pb.JOB_STATUS_REJECTED,
    "awaiting_approval": pb.JOB_STATUS_AWAITING_APPROVAL,
}
PB_TO_STATUS: dict[int, str] = {v: k for k, v in STATUS_TO_PB.items()}
ROUTE_TO_PB: dict[str, pb.Route] = {"quantum": pb.ROUTE_QUANTUM, "classical": pb.ROUTE_CLASSICAL}

TYPED_BRANCHES = ("maxcut", "qubo", "ising", "knapsack", "portfolio", "jobshop")


# --- problems in ----------------------------------------------------------------------------


class ProblemInput:
    """A problem as given by the caller, before intake's validation.

    Attributes:
        branch: The ``Problem.kind`` oneof branch used (``maxcut``... or ``json``).
        problem_type: The problem type.
        avro: The Avro problem record (for :func:`qbridge.validation.accept.accept`).
    """

    def __init__(self, branch: str, problem_type: str, avro: dict[str, Any]) -> None:
        self.branch = branch
        self.problem_type = problem_type
        self.avro = avro


def _bad(field: str, message: str) -> InvalidProblemError:
    return InvalidProblemError(message, field=field)


def problem_input(msg: pb.Problem) -> ProblemInput:
    """The Avro problem record of a ``Problem`` message.

    Typed branches map field by field (validation happens in ``accept``); the JSON
    branch is parsed and validated by the problem model here, so its errors name JSON paths.

    Raises:
        InvalidProblemError: No branch set, unparsable JSON, or an invalid JSON problem.
    """
    branch = msg.WhichOneof("kind")
    if branch is None:
        raise _bad("problem", f"is required: set one of {', '.join(TYPED_BRANCHES)} or json")
    if branch == "json":
        problem = problem_from_json(msg.json.type, msg.json.json, prefix="problem.json")
        _name, normalized = problem_to_avro(problem)
        return ProblemInput(branch, problem.kind, normalized)
    p = getattr(msg, branch)
    record: dict[str, Any]
    if branch == "maxcut":
        record = {
            "num_nodes": p.num_nodes,
            "edges": [{"u": e.u, "v": e.v, "weight": e.weight} for e in p.edges],
        }
    elif branch == "qubo":
        record = {
            "num_variables": p.num_variables,
            "linear": list(p.linear),
            "quadratic": [{"i": t.i, "j": t.j, "value": t.value} for t in p.quadratic],
            "offset": p.offset,
        }
    elif branch == "ising":
        record = {
            "h": list(p.h),
            "couplings": [{"i": t.i, "j": t.j, "value": t.value} for t in p.couplings],
            "offset": p.offset,
        }
    elif branch == "knapsack":
        record = {"values": list(p.values), "weights": list(p.weights), "capacity": p.capacity}
    elif branch == "portfolio":
        record = {
            "expected_returns": list(p.expected_returns),
            "covariance": [list(row.values) for row in p.covariance],
            "budget": p.budget,
            "risk_aversion": p.risk_aversion if p.HasField("risk_aversion") else 1.0,
        }
    elif branch == "jobshop":
        record = {
            "jobs": [
                [{"machine": op.machine, "duration": op.duration} for op in job.operations]
                for job in p.jobs
            ]
        }
    else:  # pragma: no cover - a branch added to the proto but not here
        raise _bad("problem", f"unsupported problem branch {branch!r}")
    return ProblemInput(branch, branch, record)


def problem_request(
    tenant: str,
    problem: ProblemInput,
    options: pb.JobOptions,
    *,
    timeout_ms: int,
    key: str | None,
    tags: Mapping[str, str],
    created_at: datetime,
) -> dict[str, Any]:
    """The ``qbridge.ProblemRequest`` record of a call (validated later by ``accept``).

    Args:
        tenant: The authenticated tenant.
        problem: The converted problem.
        options: The call's job options (unset optional fields take the contract defaults).
        timeout_ms: The job's time budget.
        key: Idempotency key (None: the fingerprint of the normalized problem).
        tags: Tags of the job.
        created_at: Request time.
    """
    return {
        "request_id": str(uuid.uuid4()),
        "idempotency_key": key,
        "tenant": tenant,
        "problem_type": problem.problem_type,
        "problem": problem.avro,
        "timeout_ms": int(timeout_ms),
        "fallback_policy": options.fallback_policy or "auto",
        "priority": options.priority if options.HasField("priority") else 5,
        "shot_budget": options.shot_budget if options.HasField("shot_budget") else None,
        "seed": options.seed if options.HasField("seed") else None,
        "correlation_id": options.correlation_id or None,
        "tags": dict(tags),
        "created_at": created_at,
    }


def problem_from_json(kind: str, text: str, prefix: str = "problem") -> Problem:
    """Validate a JSON problem object of type ``kind`` (errors carry ``prefix.<json path>``).

    Raises:
        InvalidProblemError: Unknown type, invalid JSON, or an invalid problem.
    """
    if kind not in PROBLEM_TYPES:
        raise _bad(
            f"{prefix}.type",
            f"unknown problem type {kind!r} (known: {', '.join(sorted(PROBLEM_TYPES))})",
        )
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _bad(prefix, f"is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # ``[[[[...]]]]``: json recurses once per level
        raise _bad(prefix, "is nested too deeply") from exc
    try:
        return problem_from_dict(kind, data)
    except InvalidProblemError as exc:
        raise _rebase(exc, prefix) from exc


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _strip_field(exc: InvalidProblemError) -> str:
    message = str(exc)
    if exc.field and message.startswith(f"{exc.field}: "):
        return message[len(exc.field) + 2 :]
    return message


def _rebase(exc: InvalidProblemError, prefix: str) -> InvalidProblemError:
    path = f"{prefix}.{exc.field}" if exc.field else prefix
    return InvalidProblemError(_strip_field(exc), field=path)


# accept() reports ``problem.<avro path>``; the typed messages differ in two places.
_TYPED_PATHS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "jobshop": ((re.compile(r"^jobs\[(\d+)\]\[(\d+)\]"), r"jobs[\1].operations[\2]"),),
    "portfolio": ((re.compile(r"^covariance\[(\d+)\]\[(\d+)\]"), r"covariance[\1].values[\2]"),),
}

_REQUEST_FIELDS = {
    "idempotency_key": "options.idempotency_key",
    "correlation_id": "options.correlation_id",
    "priority": "options.priority",
    "fallback_policy": "options.fallback_policy",
    "shot_budget": "options.shot_budget",
    "seed": "options.seed",
    "tags": "options.tags",
    "timeout_ms": "options.timeout_ms",
}


def caller_path(
    field: str | None, branch: str, *, timeout_field: str = "options.timeout_ms"
) -> str:
    """The request path of a field reported by ``accept`` for a problem given as ``branch``."""
    if not field:
        return "problem"
    if field == "problem_type":
        return "problem"
    if field == "problem" or field.startswith("problem."):
        rest = field[len("problem.") :] if field.startswith("problem.") else ""
        if branch == "json":
            # accept() re-validated an already valid model; only limits can fail here.
            return f"problem.json.{rest}" if rest else "problem.json"
        for pattern, repl in _TYPED_PATHS.get(branch, ()):
            rest = pattern.sub(repl, rest)
        return f"problem.{branch}.{rest}" if rest else f"problem.{branch}"
    if field == "timeout_ms":
        return timeout_field
    head = field.split(".", 1)[0]
    if head in _REQUEST_FIELDS:
        return _REQUEST_FIELDS[head] + field[len(head) :]
    return field


def invalid(exc: InvalidProblemError, branch: str, **kw: str) -> InvalidProblemError:
    """``exc`` with its field rewritten by :func:`caller_path`."""
    return InvalidProblemError(_strip_field(exc), field=caller_path(exc.field, branch, **kw))


# --- results out ----------------------------------------------------------------------------


def timestamp(value: datetime | int | float | None) -> Timestamp | None:
    """A protobuf timestamp of a datetime (naive = UTC) or epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value / 1000.0, UTC)
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def solution_pb(s: Mapping[str, Any]) -> pb.Solution:
    """A ``qbridge.Solution`` record as a message."""
    msg = pb.Solution(
        assignment=[int(v) for v in s.get("assignment") or ()],
        objective=_finite(s.get("objective")) or 0.0,
        feasible=bool(s.get("feasible")),
    )
    freq = _finite(s.get("frequency"))
    if freq is not None:
        msg.frequency = freq
    return msg


def quality_pb(q: Mapping[str, Any] | None) -> pb.Quality:
    """A ``qbridge.Quality`` record as a message."""
    msg = pb.Quality(proven_optimal=bool((q or {}).get("proven_optimal")))
    for key in ("bound", "gap", "expected_objective", "confidence"):
        v = _finite((q or {}).get(key))
        if v is not None:
            setattr(msg, key, v)
    return msg


def provenance_pb(p: Mapping[str, Any] | None) -> pb.Provenance | None:
    """A ``qbridge.Provenance`` record (or its stored JSON form) as a message."""
    if not p:
        return None
    settings = p.get("settings_json")
    if settings is None:
        settings = json.dumps(p.get("settings") or {}, sort_keys=True, default=str)
    t = p.get("timings") or {}
    msg = pb.Provenance(
        route=route_pb(p.get("route")),
        solver=str(p.get("solver") or ""),
        backend=str(p.get("backend") or ""),
        backend_version=str(p.get("backend_version") or ""),
        sdk_versions={str(k): str(v) for k, v in (p.get("sdk_versions") or {}).items()},
        settings_json=settings,
        timings=pb.Timings(
            queue_ms=_finite(t.get("queue_ms")) or 0.0,
            transpile_ms=_finite(t.get("transpile_ms")) or 0.0,
            execute_ms=_finite(t.get("execute_ms")) or 0.0,
            postprocess_ms=_finite(t.get("postprocess_ms")) or 0.0,
        ),
        cost_units=_finite(p.get("cost_units")) or 0.0,
    )
    for key in ("circuit_depth", "circuit_width", "shots", "seed", "optimizer_iterations"):
        if p.get(key) is not None:
            setattr(msg, key, int(p[key]))
    if p.get("cache_hit") is not None:
        msg.cache_hit = bool(p["cache_hit"])
    return msg


def result_pb(o: Mapping[str, Any]) -> pb.Result:
    """A ``qbridge.JobOutcome``-shaped record as a ``Result``."""
    msg = pb.Result(
        status=status_pb(o.get("status")),
        reason=str(o.get("reason") or ""),
        route=route_pb(o.get("route")),
        candidates=[solution_pb(c) for c in o.get("candidates") or ()],
        quality=quality_pb(o.get("quality")),
        attempts=int(o.get("attempts") or 0),
    )
    if o.get("solution"):
        msg.solution.CopyFrom(solution_pb(o["solution"]))
    prov = provenance_pb(o.get("provenance"))
    if prov is not None:
        msg.provenance.CopyFrom(prov)
    gap = _finite(o.get("quantum_classical_gap"))
    if gap is not None:
        msg.quantum_classical_gap = gap
    ts = timestamp(o.get("completed_at"))
    if ts is not None:
        msg.completed_at.CopyFrom(ts)
    return msg


def transition_pb(t: Mapping[str, Any]) -> pb.StatusTransition:
    """A ``qbridge.JobStatusTransition`` record (or its stored row) as a message."""
    msg = pb.StatusTransition(
        job_id=str(t["job_id"]),
        seq=int(t["seq"]),
        from_status=status_pb(t.get("from_status")),
        to_status=status_pb(t.get("to_status")),
        reason=str(t.get("reason") or ""),
        route=route_pb(t.get("route")),
        backend=str(t.get("backend") or ""),
    )
    if t.get("attempt") is not None:
        msg.attempt = int(t["attempt"])
    ts = timestamp(t.get("at"))
    if ts is not None:
        msg.at.CopyFrom(ts)
    return msg


def route_pb(value: str | None) -> pb.Route:
    """A route string as the enum (unknown or none: ``ROUTE_UNSPECIFIED``)."""
    return ROUTE_TO_PB.get(str(value or ""), pb.ROUTE_UNSPECIFIED)


def status_pb(value: str | None) -> pb.JobStatus:
    """A status string as the enum (unknown: ``JOB_STATUS_UNSPECIFIED``)."""
    return STATUS_TO_PB.get(str(value), pb.JOB_STATUS_UNSPECIFIED)


def is_final(status: str | None) -> bool:
    """Whether a status string is final."""
    return status in FINAL_STATUSES


def usable(outcome: Mapping[str, Any] | None) -> bool:
    """Whether a final outcome carries a feasible answer a caller can use."""
    if not outcome or outcome.get("status") not in ANSWERED_STATUSES:
        return False
    sol = outcome.get("solution")
    return bool(sol and sol.get("feasible"))


def statuses_from_pb(values: Sequence[int]) -> list[str]:
    """Status filter values as strings (unknown values ignored)."""
    return [PB_TO_STATUS[v] for v in values if v in PB_TO_STATUS]


def job_update_pb(t: Mapping[str, Any], outcome: Mapping[str, Any] | None) -> pb.JobUpdate:
    """A transition (and the final outcome, attached to the final one) as a ``JobUpdate``."""
    update = pb.JobUpdate(transition=transition_pb(t), final=t["to_status"] in FINAL_STATUSES)
    if outcome is not None:
        update.result.CopyFrom(result_pb(outcome))
    return update


def fill_job_pb(job: pb.Job, row: Mapping[str, Any]) -> None:
    """Copy a stored ``jobs`` row's fields into ``job``."""
    for name in ("problem_type", "idempotency_key", "correlation_id", "input_fingerprint"):
        if row.get(name) is not None:
            setattr(job, name, str(row[name]))
    if row.get("fallback_policy") is not None:
        job.fallback_policy = str(row["fallback_policy"])
    for name in ("priority", "timeout_ms", "num_variables"):
        if row.get(name) is not None:
            setattr(job, name, int(row[name]))
    if row.get("num_qubits") is not None:
        job.num_qubits = int(row["num_qubits"])
    job.route = route_pb(row.get("route"))
    job.tags.update({str(k): str(v) for k, v in (row.get("tags") or {}).items()})
    for name in ("created_at", "accepted_at", "deadline_at", "final_at"):
        ts = timestamp(row.get(name))
        if ts is not None:
            getattr(job, name).CopyFrom(ts)


def attempt_pb(a: Mapping[str, Any]) -> pb.Attempt:
    """A stored ``attempts`` row as a message."""
    msg = pb.Attempt(
        work_id=str(a["work_id"]),
        attempt=int(a["attempt"]),
        route=route_pb(a.get("route")),
        backend=str(a.get("backend") or ""),
        solver=str(a.get("solver") or ""),
        status=str(a.get("status") or ""),
        error_class=str(a.get("error_class") or ""),
        error_message=str(a.get("error_message") or ""),
        duration_ms=float(a.get("duration_ms") or 0.0),
        cost_units=float(a.get("cost_units") or 0.0),
    )
    if a.get("objective") is not None:
        msg.objective = float(a["objective"])
    if a.get("feasible") is not None:
        msg.feasible = bool(a["feasible"])
    for name in ("started_at", "finished_at"):
        ts = timestamp(a.get(name))
        if ts is not None:
            getattr(msg, name).CopyFrom(ts)
    return msg


def job_summary_pb(r: Mapping[str, Any]) -> pb.JobSummary:
    """A row of :meth:`qbridge.results.read.JobReader.list_jobs` as a ``JobSummary``."""
    s = pb.JobSummary(
        job_id=r["job_id"],
        problem_type=r["problem_type"] or "",
        status=status_pb(r["status"]),
        route=route_pb(r["route"]),
        reason=r["reason"] or "",
        correlation_id=r["correlation_id"] or "",
    )
    if r["objective"] is not None:
        s.objective = float(r["objective"])
    if r["feasible"] is not None:
        s.feasible = bool(r["feasible"])
    for name, value in (("created_at", r["sort_at"]), ("final_at", r["final_at"])):
        ts = timestamp(value)
        if ts is not None:
            getattr(s, name).CopyFrom(ts)
    return s
