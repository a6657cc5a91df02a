"""Job-shop scheduling: a classical-only problem type (solved by CP-SAT)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from qbridge.errors import InvalidProblemError, NotEligibleError
from qbridge.problems._validation import (
    MAX_DIMENSION,
    MAX_EXACT_INTEGER,
    as_int,
    as_sequence,
    check_payload,
)
from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense

logger = logging.getLogger(__name__)

MAX_REPORTED_VIOLATIONS = 20
"""Cap on violation messages so a garbage schedule cannot produce a huge outcome."""


@dataclass(frozen=True)
class Operation:
    """One step of a job: ``duration`` time units on ``machine``."""

    machine: int
    duration: int


@dataclass(frozen=True)
class JobShop(Problem):
    """Job shop: each job is a chain of operations; machines run one operation at a time.

    The "assignment" of this type is not binary: it is the integer start time
    of every operation, jobs in order and operations in order within a job
    (see :meth:`operations`). The objective is the makespan (minimized).

    Attributes:
        jobs: ``jobs[j][k]`` is the ``k``-th operation of job ``j``.
    """

    kind: ClassVar[str] = "jobshop"
    sense: ClassVar[Sense] = Sense.MINIMIZE
    quantum_encodable: ClassVar[bool] = False

    jobs: tuple[tuple[Operation, ...], ...]

    def __post_init__(self) -> None:
        raw_jobs = as_sequence(self.jobs, "jobs")
        if not raw_jobs:
            raise InvalidProblemError("must have at least one job", field="jobs")
        jobs = []
        for j, raw_job in enumerate(raw_jobs):
            ops_raw = as_sequence(raw_job, f"jobs[{j}]")
            if not ops_raw:
                raise InvalidProblemError("must have at least one operation", f"jobs[{j}]")
            ops = []
            for k, op in enumerate(ops_raw):
                where = f"jobs[{j}][{k}]"
                if isinstance(op, Operation):
                    op = (op.machine, op.duration)
                pair = as_sequence(op, where, length=2)
                machine = as_int(pair[0], f"{where}[0]", minimum=0, maximum=MAX_DIMENSION)
                duration = as_int(pair[1], f"{where}[1]", minimum=1, maximum=MAX_EXACT_INTEGER)
                ops.append(Operation(machine, duration))
            jobs.append(tuple(ops))
        total = sum(op.duration for job in jobs for op in job)
        if total > MAX_EXACT_INTEGER:
            # The solvers' time domains are 0..sum of durations: keep them far from int64.
            raise InvalidProblemError(
                f"durations sum to {total}, at most {MAX_EXACT_INTEGER} (2^53) allowed",
                field="jobs",
            )
        object.__setattr__(self, "jobs", tuple(jobs))

    @property
    def num_variables(self) -> int:
        """One start time per operation."""
        return sum(len(job) for job in self.jobs)

    @property
    def num_machines(self) -> int:
        """Highest machine id plus one."""
        return 1 + max(op.machine for job in self.jobs for op in job)

    @property
    def horizon(self) -> int:
        """Sum of all durations: an upper bound on the optimal makespan."""
        return sum(op.duration for job in self.jobs for op in job)

    def operations(self) -> list[tuple[int, int, Operation]]:
        """``(job, index in job, operation)`` in assignment order."""
        return [(j, k, op) for j, job in enumerate(self.jobs) for k, op in enumerate(job)]

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """Makespan of the schedule; checks start >= 0, precedence and machine overlap."""
        n = self.num_variables
        if len(assignment) != n:
            raise InvalidProblemError(
                f"has {len(assignment)} start times, expected {n}", field="assignment"
            )
        starts = []
        for k, s in enumerate(assignment):
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
                raise InvalidProblemError(f"must be an integer, got {s!r}", f"assignment[{k}]")
            starts.append(int(s))
        ops = self.operations()
        violations: list[str] = []
        by_machine: dict[int, list[tuple[int, int, int, int]]] = {}
        for idx, (j, k, op) in enumerate(ops):
            s = starts[idx]
            if s < 0:
                violations.append(f"job {j} op {k} starts at {s} < 0")
            if k > 0:
                prev_end = starts[idx - 1] + self.jobs[j][k - 1].duration
                if s < prev_end:
                    violations.append(
                        f"job {j} op {k} starts at {s} before op {k - 1} ends at {prev_end}"
                    )
            by_machine.setdefault(op.machine, []).append((s, s + op.duration, j, k))
        for m, slots in sorted(by_machine.items()):
            slots.sort()
            latest = slots[0]
            for cur in slots[1:]:
                if cur[0] < latest[1]:
                    violations.append(
                        f"machine {m}: job {cur[2]} op {cur[3]} at {cur[0]} overlaps "
                        f"job {latest[2]} op {latest[3]} running until {latest[1]}"
                    )
                if cur[1] > latest[1]:
                    latest = cur
        makespan = max(starts[i] + op.duration for i, (_, _, op) in enumerate(ops))
        if len(violations) > MAX_REPORTED_VIOLATIONS:
            extra = len(violations) - MAX_REPORTED_VIOLATIONS
            violations = [*violations[:MAX_REPORTED_VIOLATIONS], f"... and {extra} more"]
        return Evaluation(
            objective=float(makespan), feasible=not violations, violations=tuple(violations)
        )

    def to_qubo(self) -> QuboEncoding:
        """Not available: job shop is classical-only.

        Raises:
            NotEligibleError: Always.
        """
        raise NotEligibleError("jobshop is a classical-only problem type (no QUBO encoding)")

    def num_qubits(self) -> int:
        """Not available: job shop is classical-only.

        Raises:
            NotEligibleError: Always.
        """
        raise NotEligibleError("jobshop is a classical-only problem type (no QUBO encoding)")

    def to_dict(self) -> dict[str, Any]:
        """``{"jobs": [[[machine, duration], ...], ...]}``."""
        return {"jobs": [[[op.machine, op.duration] for op in job] for job in self.jobs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobShop:
        """Build from ``{"jobs": [[[machine, duration], ...], ...]}``.

        Raises:
            InvalidProblemError: With the field path of the first invalid value.
        """
        check_payload(data, required=("jobs",))
        return cls(jobs=data["jobs"])
