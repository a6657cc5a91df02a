"""Typed forms of the work topics' messages: ``WorkItem``, ``SolverOutcome``, ``JobProgress``.

Frozen dataclasses with ``to_avro`` (the dict the codec encodes) and
``from_avro`` (from a decoded record), so producers build a record in one place
with every field named and typed, and consumers read attributes instead of
string keys. Nested Avro records (problem branch, solution, quality,
provenance) stay in their Avro dict form: they are built by
:mod:`qbridge.contracts.convert`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from qbridge.errors import CodecError

logger = logging.getLogger(__name__)

R = TypeVar("R")


def to_utc(value: datetime | int) -> datetime:
    """An Avro ``timestamp-millis`` (decoded datetime, or epoch ms) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def to_millis(value: datetime) -> datetime:
    """Truncate to milliseconds (what ``timestamp-millis`` keeps)."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _build(cls: type[R], record: Mapping[str, Any], **converted: Any) -> R:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    data = {k: v for k, v in record.items() if k in names}
    data.update(converted)
    try:
        return cls(**data)
    except TypeError as exc:  # a required field is missing
        raise CodecError(f"not a {cls.__name__} record: {exc}") from exc


@dataclass(frozen=True)
class WorkItem:
    """One attempt of a job routed to a solver (the ``qbridge.WorkItem`` record).

    Attributes:
        work_id: ``job_id:attempt:route``, unique per attempt.
        job_id: The job.
        attempt: 1, 2, ... per job.
        route: ``quantum`` or ``classical``.
        backend: Solver backend the orchestrator chose (e.g. ``aer_statevector``, ``ortools``).
        tenant: Owner of the job.
        problem_type: ``maxcut``, ``qubo``, ...
        problem: The Avro union branch: a decoded record (dict), or fastavro's
            ``(record name, record)`` form when producing.
        time_limit_ms: Time the solver may use.
        shots: Shots (0 = the executor's default).
        seed: Seed of every random choice.
        priority: Job priority.
        deadline_at: The job's deadline (UTC).
        correlation_id: Request correlation id.
        enqueued_at: When the orchestrator issued the item (UTC).
        top_n: Candidates to report.
    """

    work_id: str
    job_id: str
    attempt: int
    route: str
    backend: str
    tenant: str
    problem_type: str
    problem: Any
    time_limit_ms: int
    shots: int
    seed: int
    priority: int
    deadline_at: datetime
    correlation_id: str
    enqueued_at: datetime
    top_n: int = 5

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> WorkItem:
        """From a decoded record (timestamps as datetimes or epoch ms).

        Raises:
            CodecError: A required field is missing.
        """
        times = {k: to_utc(record[k]) for k in ("deadline_at", "enqueued_at") if k in record}
        return _build(cls, record, **times)

    def to_avro(self) -> dict[str, Any]:
        """The record to encode as ``qbridge.WorkItem``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ErrorInfo:
    """A classified error (the ``qbridge.ErrorInfo`` record).

    Attributes:
        error_class: A :class:`qbridge.errors.ErrorClass` value.
        error_type: The exception's type name.
        message: What went wrong.
    """

    error_class: str
    error_type: str
    message: str

    def to_avro(self) -> dict[str, str]:
        """The record to encode as ``qbridge.ErrorInfo``."""
        return {
            "error_class": self.error_class,
            "error_type": self.error_type,
            "message": self.message,
        }


class OutcomeStatus(enum.StrEnum):
    """Status of a solver outcome."""

    STARTED = "started"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class SolverOutcome:
    """What an executor reports for one work item (the ``qbridge.SolverOutcome`` record).

    Attributes:
        work_id: The work item.
        job_id: Its job.
        attempt: Its attempt number.
        route: Its route.
        tenant: Its tenant.
        correlation_id: Its correlation id.
        status: Started, ok or error.
        produced_at: When this record was made (UTC, millisecond precision).
        error: The classified error (``error`` status).
        solution: Best solution as a ``qbridge.Solution`` dict (``ok`` status).
        candidates: Further solutions, best first.
        quality: ``qbridge.Quality`` dict.
        provenance: ``qbridge.Provenance`` dict.
    """

    work_id: str
    job_id: str
    attempt: int
    route: str
    tenant: str
    correlation_id: str
    status: OutcomeStatus
    produced_at: datetime
    error: ErrorInfo | None = None
    solution: Mapping[str, Any] | None = None
    candidates: tuple[Mapping[str, Any], ...] = ()
    quality: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] | None = None

    @classmethod
    def for_item(
        cls, item: WorkItem, status: OutcomeStatus, produced_at: datetime, **rest: Any
    ) -> SolverOutcome:
        """An outcome of ``item``, its identifying fields copied."""
        return cls(
            work_id=item.work_id,
            job_id=item.job_id,
            attempt=item.attempt,
            route=item.route,
            tenant=item.tenant,
            correlation_id=item.correlation_id,
            status=status,
            produced_at=to_millis(produced_at),
            **rest,
        )

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> SolverOutcome:
        """From a decoded record.

        Raises:
            CodecError: A required field is missing or the status is unknown.
        """
        try:
            status = OutcomeStatus(str(record.get("status")))
        except ValueError as exc:
            raise CodecError(f"unknown solver outcome status {record.get('status')!r}") from exc
        error = record.get("error")
        converted: dict[str, Any] = {
            "status": status,
            "error": None if error is None else _build(ErrorInfo, error),
            "candidates": tuple(record.get("candidates") or ()),
        }
        if "produced_at" in record:
            converted["produced_at"] = to_utc(record["produced_at"])
        return _build(cls, record, **converted)

    def to_avro(self) -> dict[str, Any]:
        """The record to encode as ``qbridge.SolverOutcome``."""
        return {
            "work_id": self.work_id,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "route": self.route,
            "tenant": self.tenant,
            "correlation_id": self.correlation_id,
            "status": self.status.value,
            "error": None if self.error is None else self.error.to_avro(),
            "solution": None if self.solution is None else dict(self.solution),
            "candidates": [dict(c) for c in self.candidates],
            "quality": None if self.quality is None else dict(self.quality),
            "provenance": None if self.provenance is None else dict(self.provenance),
            "produced_at": self.produced_at,
        }


class ProgressPhase(enum.StrEnum):
    """Where a variational run is (``qbridge.JobProgress.phase``)."""

    OPTIMIZING = "optimizing"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class JobProgress:
    """Progress of a long variational run (the ``qbridge.JobProgress`` record).

    Attributes:
        job_id: The job.
        work_id: The work item being run.
        attempt: Its attempt number.
        tenant: Owner of the job.
        correlation_id: Request correlation id.
        backend: Quantum backend running it.
        phase: Optimizing, finished or failed.
        iteration: Optimizer iterations done (the starting batch is iteration 0).
        max_iterations: The optimizer's iteration cap.
        best_energy: Lowest expected QUBO energy so far (None before the first evaluation).
        resumed_from_iteration: The checkpoint iteration this run resumed from, if it did.
        backend_calls: Backend calls of the optimizer loop so far (before a resume too).
        shots_used: Shots spent so far.
        run_started_at: When this run of the work item began (a later run supersedes).
        seq: Increasing per run.
        emitted_at: When the event was made.
    """

    job_id: str
    work_id: str
    attempt: int
    tenant: str
    correlation_id: str
    backend: str
    phase: ProgressPhase
    iteration: int
    max_iterations: int
    best_energy: float | None
    resumed_from_iteration: int | None
    backend_calls: int
    shots_used: int
    run_started_at: datetime
    seq: int
    emitted_at: datetime

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> JobProgress:
        """From a decoded record.

        Raises:
            CodecError: A required field is missing or the phase is unknown.
        """
        try:
            phase = ProgressPhase(str(record.get("phase")))
        except ValueError as exc:
            raise CodecError(f"unknown progress phase {record.get('phase')!r}") from exc
        times = {k: to_utc(record[k]) for k in ("run_started_at", "emitted_at") if k in record}
        return _build(cls, record, phase=phase, **times)

    def to_avro(self) -> dict[str, Any]:
        """The record to encode as ``qbridge.JobProgress``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["phase"] = self.phase.value
        out["run_started_at"] = to_millis(self.run_started_at)
        out["emitted_at"] = to_millis(self.emitted_at)
        return out
