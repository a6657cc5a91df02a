"""The job-status vocabulary and the degrade-reason codes, one definition for every service.

Both are :class:`enum.StrEnum`, so a member *is* its string: it goes unchanged
onto the wire (Avro ``string`` fields, JSON), into PostgreSQL and into metric
labels, and compares equal to the plain strings read back from them.

Bottom layer: imports only :mod:`qbridge.errors`.
"""

from __future__ import annotations

import enum

from qbridge.errors import ErrorClass


class JobStatus(enum.StrEnum):
    """Where a job is in its life.

    The pipeline (orchestrator) moves a job
    ``accepted -> routed -> running -> succeeded | degraded | failed | expired``
    (``running`` only once a solve has run for the executor's started delay: a quicker one
    goes ``routed -> succeeded``),
    with ``awaiting_approval`` between ``accepted`` and ``routed`` when an approval
    policy holds the job's quantum attempt for a reviewer's sign-off;
    ``submitted`` and ``rejected`` exist only at the gateway, for a request not yet
    accepted by intake and for one that intake refused.
    """

    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    AWAITING_APPROVAL = "awaiting_approval"
    ROUTED = "routed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEGRADED = "degraded"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        """The job will not change any more."""
        return self in FINAL_STATUSES

    @property
    def answered(self) -> bool:
        """A final status that comes with an answer (possibly a classical one)."""
        return self in ANSWERED_STATUSES


OUTCOME_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.DEGRADED, JobStatus.FAILED, JobStatus.EXPIRED}
)
"""The final statuses the orchestrator decides (those of a ``qbridge.JobOutcome``)."""

FINAL_STATUSES: frozenset[JobStatus] = OUTCOME_STATUSES | {JobStatus.REJECTED}
"""Every final status, including the gateway's ``rejected``."""

ANSWERED_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.SUCCEEDED, JobStatus.DEGRADED})
"""Final statuses that carry a solution."""


def is_final(status: str | None) -> bool:
    """Whether a status string (as read from a record or a row) is final."""
    return status in FINAL_STATUSES


class DegradeReason(enum.StrEnum):
    """Why a job that wanted quantum was answered classically (the ``degraded`` status).

    Decided where the decision is taken (the orchestrator's routing policy and
    state machine) and carried next to the human-readable reason text: in memory,
    as ``reason_code`` on ``qbridge.JobStatusTransition`` and ``qbridge.JobOutcome``,
    and as the ``reason`` label of ``qbridge_fallbacks_total``. Consumers branch on
    the code, never on the text. The values are the metric label values the alert
    rules and the runbook use (``lag``, ``circuit``, ``quota``, ...).
    """

    ADMISSION = "admission"
    """Admission was paused for low priority (executor backlog) until the deadline was near."""
    QUBITS = "qubits"
    """The problem needs more qubits than the quantum backend has."""
    CIRCUIT_OPEN = "circuit"
    """The quantum backend's circuit breaker is open after repeated failures."""
    QUOTA = "quota"
    """The tenant's shot or cost quota is exhausted."""
    QUANTUM_LAG = "lag"
    """The quantum executors' backlog is above the degradation threshold."""
    QUANTUM_TIMEOUT = "timeout"
    """The quantum attempt did not answer within its share of the budget."""
    QUANTUM_INFEASIBLE = "infeasible"
    """The quantum answer violates the problem's constraints."""
    QUANTUM_TRANSIENT = "transient"
    """The quantum attempt kept failing transiently (retries spent)."""
    QUANTUM_UNAVAILABLE = "unavailable"
    """The quantum backend was unavailable."""
    QUANTUM_OVER_BUDGET = "over_budget"
    """The quantum attempt would not fit its time or cost budget."""
    QUANTUM_FAILED = "quantum_error"
    """The quantum attempt failed otherwise (race mode: bad input or a defect)."""
    APPROVAL_REJECTED = "approval_rejected"
    """A reviewer rejected the quantum attempt; the job was answered classically."""
    APPROVAL_TIMEOUT = "approval_timeout"
    """No reviewer decided in time; the job was answered classically."""
    RESCUE = "rescue"
    """No executor answered before the deadline; the orchestrator's built-in heuristic did."""
    OTHER = "other"
    """Unknown (e.g. a job degraded before reason codes existed)."""

    @classmethod
    def for_error_class(cls, error_class: str) -> DegradeReason:
        """The reason for a quantum attempt that failed with ``error_class``."""
        return _BY_ERROR_CLASS.get(error_class, cls.QUANTUM_FAILED)


# ErrorClass is a StrEnum: the plain strings read off the wire find these keys.
_BY_ERROR_CLASS: dict[str, DegradeReason] = {
    ErrorClass.TRANSIENT: DegradeReason.QUANTUM_TRANSIENT,
    ErrorClass.BACKEND_UNAVAILABLE: DegradeReason.QUANTUM_UNAVAILABLE,
    ErrorClass.OVER_BUDGET: DegradeReason.QUANTUM_OVER_BUDGET,
}
