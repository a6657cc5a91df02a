"""Avro records (as decoded dicts) to row values: pure functions, no Kafka, no psycopg.

JSON columns are returned as plain JSON-compatible Python values; the store wraps
them for the driver. Timestamps are timezone-aware UTC datetimes (fastavro already
decodes ``timestamp-millis`` that way; raw epoch milliseconds are accepted too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from qbridge.contracts.convert import branch_type
from qbridge.contracts.records import JobProgress
from qbridge.errors import CodecError, ErrorClass, QBridgeError
from qbridge.status import FINAL_STATUSES

JOB_ENVELOPE = "qbridge.JobEnvelope"
JOB_STATUS_TRANSITION = "qbridge.JobStatusTransition"
SOLVER_OUTCOME = "qbridge.SolverOutcome"
JOB_OUTCOME = "qbridge.JobOutcome"
APPROVAL_DECISION = "qbridge.ApprovalDecision"
JOB_PROGRESS = "qbridge.JobProgress"


ATTEMPT_STATUSES = ("started", "ok", "error")


class InvalidRecordError(QBridgeError):
    """A record is well-formed Avro but cannot be stored (e.g. an unknown attempt status)."""

    error_class = ErrorClass.INVALID_INPUT


@dataclass(frozen=True)
class JobRow:
    """Values of a ``jobs`` row taken from an accepted envelope."""

    job_id: str
    tenant: str
    problem_type: str
    problem_kind: str | None
    schema_version: int
    input_fingerprint: str
    idempotency_key: str
    request_id: str
    problem: dict[str, Any]
    output_shape: dict[str, Any]
    num_variables: int
    num_qubits: int | None
    seed: int
    priority: int
    fallback_policy: str
    timeout_ms: int
    deadline_at: datetime
    shot_budget: int | None
    correlation_id: str
    tags: dict[str, str]
    created_at: datetime
    accepted_at: datetime


@dataclass(frozen=True)
class TransitionRow:
    """Values of a ``status_transitions`` row."""

    job_id: str
    tenant: str
    seq: int
    from_status: str | None
    to_status: str
    reason: str
    attempt: int | None
    route: str | None
    backend: str | None
    correlation_id: str
    at: datetime

    @property
    def is_final(self) -> bool:
        """Whether the transition enters a final state."""
        return self.to_status in FINAL_STATUSES


@dataclass(frozen=True)
class ApprovalRow:
    """Values of an ``approvals`` row (the audit trail of reviewer decisions)."""

    decision_id: str
    job_id: str
    decision: str
    reviewer: str
    reviewer_tenant: str
    comment: str
    correlation_id: str
    decided_at: datetime


ProgressRow = JobProgress
"""A ``job_progress`` row is the typed event itself (the newest one per job is kept)."""


@dataclass(frozen=True)
class AttemptRow:
    """Values of an ``attempts`` row from one solver outcome (started, ok or error)."""

    work_id: str
    job_id: str
    attempt: int
    route: str
    tenant: str
    status: str
    error_class: str | None
    error_type: str | None
    error_message: str | None
    backend: str | None
    solver: str | None
    assignment: list[int] | None
    objective: float | None
    feasible: bool | None
    quality: dict[str, Any] | None
    candidates: list[dict[str, Any]]
    provenance: dict[str, Any] | None
    cost_units: float
    duration_ms: float | None
    correlation_id: str
    produced_at: datetime

    @property
    def is_terminal(self) -> bool:
        """Whether the outcome ends the attempt (ok or error)."""
        return self.status != "started"


@dataclass(frozen=True)
class CandidateRow:
    """Values of a ``candidates`` row (rank 1 is the best)."""

    job_id: str
    rank: int
    assignment: list[int]
    objective: float
    feasible: bool
    frequency: float | None


@dataclass(frozen=True)
class SolutionRow:
    """Values of the ``solutions`` row of a final job outcome."""

    job_id: str
    tenant: str
    status: str
    reason: str
    problem_type: str
    input_fingerprint: str
    route: str | None
    backend: str | None
    solver: str | None
    assignment: list[int] | None
    objective: float | None
    feasible: bool | None
    frequency: float | None
    proven_optimal: bool | None
    bound: float | None
    gap: float | None
    expected_objective: float | None
    confidence: float | None
    quantum_classical_gap: float | None
    attempts: int
    provenance: dict[str, Any] | None
    correlation_id: str
    completed_at: datetime


@dataclass(frozen=True)
class OutcomeRows:
    """Everything a final job outcome writes."""

    solution: SolutionRow
    candidates: list[CandidateRow] = field(default_factory=list)


# --- helpers --------------------------------------------------------------------------


def to_datetime(value: datetime | int | float) -> datetime:
    """A ``timestamp-millis`` value as an aware UTC datetime.

    Raises:
        InvalidRecordError: Neither a datetime nor epoch milliseconds.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, UTC)
    raise InvalidRecordError(f"not a timestamp: {value!r}")


def _finite(value: float | None) -> float | None:
    # JSON has no NaN/Infinity and they compare badly; store them as NULL.
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


# orjson (native, ~10x the standard encoder here): keys that are not strings are written
# as strings, as the standard encoder does; datetimes are passed to the caller (ISO text
# via _converted) instead of orjson's own format.
_CHECK_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def json_text(value: Any) -> str:
    """JSON text of a value :func:`_jsonable` returned (non-finite floats become null)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _jsonable(value: Any) -> Any:
    """Avro-decoded data as JSON-compatible data (bytes as latin-1 text, datetimes ISO).

    Most decoded values already are: a native encoder checks that much faster than a
    walk in Python, which only values with bytes or datetimes take. The value itself is
    returned then, not a copy. Non-finite floats are kept: :func:`json_text` writes
    them as null, as :func:`_converted` does.
    """
    try:
        orjson.dumps(value, option=_CHECK_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError too
        return _converted(value)
    return value


def _converted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _converted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_converted(v) for v in value]
    if isinstance(value, datetime):
        return to_datetime(value).isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def provenance_json(prov: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A ``qbridge.Provenance`` record as a JSON document.

    ``settings_json`` is parsed into ``settings`` (an object, so it can be queried);
    when it is not valid JSON the raw string is kept under ``settings_json``.
    """
    if prov is None:
        return None
    out = dict(_jsonable(prov))  # a copy: the decoded record stays as it is
    raw = out.pop("settings_json", "{}")
    try:
        out["settings"] = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        out["settings"] = {}
        out["settings_json"] = raw
    return out


def _duration_ms(prov: Mapping[str, Any] | None) -> float | None:
    if prov is None:
        return None
    timings = prov.get("timings") or {}
    total = sum(float(timings.get(k, 0.0) or 0.0) for k in timings)
    return _finite(total)


def _solution_json(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "assignment": [int(v) for v in s["assignment"]],
        "objective": _finite(s["objective"]),
        "feasible": bool(s["feasible"]),
        "frequency": _finite(s.get("frequency")),
    }


def _assignment(solution: Mapping[str, Any] | None) -> list[int] | None:
    return None if solution is None else [int(v) for v in solution["assignment"]]


# --- records -> rows ------------------------------------------------------------------


def job_row(env: Mapping[str, Any]) -> JobRow:
    """Row of an accepted ``qbridge.JobEnvelope``."""
    problem = dict(env["problem"])
    return JobRow(
        job_id=env["job_id"],
        tenant=env["tenant"],
        problem_type=env["problem_type"],
        problem_kind=branch_type(problem),
        schema_version=int(env["schema_version"]),
        input_fingerprint=env["input_fingerprint"],
        idempotency_key=env["idempotency_key"],
        request_id=env["request_id"],
        problem=_jsonable(problem),
        output_shape=_jsonable(env["output_shape"]),
        num_variables=int(env["num_variables"]),
        num_qubits=env.get("num_qubits"),
        seed=int(env["seed"]),
        priority=int(env["priority"]),
        fallback_policy=env["fallback_policy"],
        timeout_ms=int(env["timeout_ms"]),
        deadline_at=to_datetime(env["deadline_at"]),
        shot_budget=env.get("shot_budget"),
        correlation_id=env["correlation_id"],
        tags={str(k): str(v) for k, v in (env.get("tags") or {}).items()},
        created_at=to_datetime(env["created_at"]),
        accepted_at=to_datetime(env["accepted_at"]),
    )


def transition_row(t: Mapping[str, Any]) -> TransitionRow:
    """Row of a ``qbridge.JobStatusTransition``."""
    return TransitionRow(
        job_id=t["job_id"],
        tenant=t["tenant"],
        seq=int(t["seq"]),
        from_status=t.get("from_status"),
        to_status=t["to_status"],
        reason=t.get("reason") or "",
        attempt=t.get("attempt"),
        route=t.get("route"),
        backend=t.get("backend"),
        correlation_id=t["correlation_id"],
        at=to_datetime(t["at"]),
    )


def approval_row(d: Mapping[str, Any]) -> ApprovalRow:
    """Row of a ``qbridge.ApprovalDecision``."""
    return ApprovalRow(
        decision_id=d["decision_id"],
        job_id=d["job_id"],
        decision=d["decision"],
        reviewer=d["reviewer"],
        reviewer_tenant=d.get("reviewer_tenant") or "",
        comment=d.get("comment") or "",
        correlation_id=d.get("correlation_id") or "",
        decided_at=to_datetime(d["decided_at"]),
    )


def progress_row(p: Mapping[str, Any]) -> ProgressRow:
    """Row of a ``qbridge.JobProgress`` (a best energy that is not finite is stored as NULL).

    Raises:
        InvalidRecordError: The phase is not optimizing, finished or failed.
    """
    try:
        event = JobProgress.from_avro(p)
    except CodecError as exc:
        raise InvalidRecordError(str(exc)) from exc
    return replace(event, best_energy=_finite(event.best_energy))


def attempt_row(o: Mapping[str, Any]) -> AttemptRow:
    """Row of a ``qbridge.SolverOutcome``.

    Raises:
        InvalidRecordError: The status is not started, ok or error.
    """
    status = o["status"]
    if status not in ATTEMPT_STATUSES:
        raise InvalidRecordError(
            f"unknown solver outcome status {status!r} (expected one of "
            f"{', '.join(ATTEMPT_STATUSES)})"
        )
    prov = o.get("provenance")
    solution = o.get("solution")
    error = o.get("error")
    return AttemptRow(
        work_id=o["work_id"],
        job_id=o["job_id"],
        attempt=int(o["attempt"]),
        route=o["route"],
        tenant=o["tenant"],
        status=status,
        error_class=error["error_class"] if error else None,
        error_type=error["error_type"] if error else None,
        error_message=error["message"] if error else None,
        backend=prov["backend"] if prov else None,
        solver=prov["solver"] if prov else None,
        assignment=_assignment(solution),
        objective=_finite(solution["objective"]) if solution else None,
        feasible=bool(solution["feasible"]) if solution else None,
        quality=_jsonable(o["quality"]) if o.get("quality") else None,
        candidates=[_solution_json(c) for c in o.get("candidates") or []],
        provenance=provenance_json(prov),
        cost_units=(_finite(prov.get("cost_units", 0.0)) or 0.0) if prov else 0.0,
        duration_ms=_duration_ms(prov),
        correlation_id=o["correlation_id"],
        produced_at=to_datetime(o["produced_at"]),
    )


def outcome_rows(o: Mapping[str, Any]) -> OutcomeRows:
    """Rows of a final ``qbridge.JobOutcome``: the solution and its ranked candidates."""
    prov = o.get("provenance")
    solution = o.get("solution")
    quality = o.get("quality") or {}
    job_id = o["job_id"]
    row = SolutionRow(
        job_id=job_id,
        tenant=o["tenant"],
        status=o["status"],
        reason=o.get("reason") or "",
        problem_type=o["problem_type"],
        input_fingerprint=o["input_fingerprint"],
        route=o.get("route"),
        backend=prov["backend"] if prov else None,
        solver=prov["solver"] if prov else None,
        assignment=_assignment(solution),
        objective=_finite(solution["objective"]) if solution else None,
        feasible=bool(solution["feasible"]) if solution else None,
        frequency=_finite(solution.get("frequency")) if solution else None,
        proven_optimal=quality.get("proven_optimal") if quality else None,
        bound=_finite(quality.get("bound")),
        gap=_finite(quality.get("gap")),
        expected_objective=_finite(quality.get("expected_objective")),
        confidence=_finite(quality.get("confidence")),
        quantum_classical_gap=_finite(o.get("quantum_classical_gap")),
        attempts=int(o["attempts"]),
        provenance=provenance_json(prov),
        correlation_id=o["correlation_id"],
        completed_at=to_datetime(o["completed_at"]),
    )
    candidates = [
        CandidateRow(
            job_id=job_id,
            rank=rank,
            assignment=[int(v) for v in c["assignment"]],
            objective=float(c["objective"]),
            feasible=bool(c["feasible"]),
            frequency=_finite(c.get("frequency")),
        )
        for rank, c in enumerate(_dedupe(o.get("candidates") or []), start=1)
    ]
    return OutcomeRows(row, candidates)


def _dedupe(candidates: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # Candidates are distinct by contract; keep the first of any repeated assignment
    # so that the (job_id, rank) rows are a stable function of the record.
    seen: set[tuple[int, ...]] = set()
    out: list[Mapping[str, Any]] = []
    for c in candidates:
        key = tuple(int(v) for v in c["assignment"])
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
