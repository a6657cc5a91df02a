"""Size limits enforced at intake, so no service is handed an unbounded problem."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

from qbridge.errors import ProblemTooLargeError
from qbridge.problems.base import Problem
from qbridge.problems.knapsack import Knapsack
from qbridge.problems.maxcut import MaxCut
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.qubo_problem import IsingProblem, QuboProblem
from qbridge.problems.scheduling import JobShop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Hard size limits; ``None`` disables a limit.

    Attributes:
        max_variables: Decision variables of the original problem (nodes, items,
            assets, spins, job-shop operations).
        max_edges: MaxCut edges, QUBO quadratic terms, Ising couplings.
        max_qubits: Variables after QUBO encoding (problem bits plus slack bits) of
            quantum-encodable types. This is a sanity cap on the encoding; whether a
            quantum backend can take the problem is decided by route eligibility.
        max_jobshop_operations: Total operations of a job shop.
        max_jobshop_horizon: Sum of all job-shop durations (keeps CP-SAT domains sane).
        max_knapsack_capacity: Knapsack capacity (also bounds the slack bits).
    """

    max_variables: int | None = 10_000
    max_edges: int | None = 1_000_000
    max_qubits: int | None = 20_000
    max_jobshop_operations: int | None = 5_000
    max_jobshop_horizon: int | None = 1_000_000_000
    max_knapsack_capacity: int | None = 1_000_000_000_000


def _check(value: int, limit: int | None, what: str, field: str) -> None:
    if limit is not None and value > limit:
        raise ProblemTooLargeError(f"{what} {value} exceeds the limit {limit}", field=field)


def _num_terms(problem: Problem) -> tuple[int, str] | None:
    if isinstance(problem, MaxCut):
        return len(problem.edges), "edges"
    if isinstance(problem, QuboProblem):
        return len(problem.qubo.quadratic), "quadratic"
    if isinstance(problem, IsingProblem):
        return len(problem.couplings), "J"
    if isinstance(problem, Portfolio):
        n = problem.num_variables
        return n * (n - 1) // 2, "covariance"
    return None


def check_limits(problem: Problem, limits: Limits) -> None:
    """Reject a problem that exceeds any limit.

    Cheap checks come first; the QUBO encoding is only built (for the qubit
    count) once the problem is known to be of a sane size.

    Raises:
        ProblemTooLargeError: With the field that is too large.
    """
    if isinstance(problem, JobShop):
        _check(problem.num_variables, limits.max_jobshop_operations, "operations", "jobs")
        _check(problem.horizon, limits.max_jobshop_horizon, "total duration", "jobs")
        return
    _check(problem.num_variables, limits.max_variables, "variables", "num_variables")
    terms = _num_terms(problem)
    if terms is not None:
        _check(terms[0], limits.max_edges, "quadratic terms", terms[1])
    if isinstance(problem, Knapsack):
        _check(problem.capacity, limits.max_knapsack_capacity, "capacity", "capacity")
    if problem.quantum_encodable and limits.max_qubits is not None:
        if isinstance(problem, Knapsack):
            # Counted without building the O((n + log C)^2) encoding.
            qubits = problem.num_variables + problem.capacity.bit_length()
        else:
            qubits = problem.num_qubits()
        _check(qubits, limits.max_qubits, "qubits after encoding", "num_qubits")


def _length(data: Mapping[str, Any], key: str) -> int:
    """Length of a list-like field; 0 for anything else (the constructor rejects it)."""
    v = data.get(key)
    return len(v) if isinstance(v, Sized) and not isinstance(v, (str, bytes, Mapping)) else 0


def _declared(data: Mapping[str, Any], key: str) -> int:
    """A declared integer size; 0 if it is not an integer (the constructor rejects it)."""
    v = data.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def check_payload_limits(kind: str, data: Mapping[str, Any], limits: Limits) -> None:
    """Reject a raw problem payload (the ``to_dict`` form) that exceeds a limit.

    Runs before the problem is built: validation loops over every term and some checks
    are expensive (the portfolio PSD check is an O(n^3) eigendecomposition), so a
    payload that is too large must be refused by counting, before any of that work.
    :func:`check_limits` still runs on the built problem (qubits after encoding...).

    Raises:
        ProblemTooLargeError: With the field that is too large.
    """
    if not isinstance(data, Mapping):
        return  # the constructor rejects it with its own message
    if kind == "jobshop":
        jobs = data.get("jobs")
        if isinstance(jobs, Sequence) and not isinstance(jobs, (str, bytes)):
            ops = sum(len(j) for j in jobs if isinstance(j, Sized))
            _check(ops, limits.max_jobshop_operations, "operations", "jobs")
        return
    sizes = {
        "maxcut": (_declared(data, "num_nodes"), _length(data, "edges"), "edges"),
        "qubo": (
            max(_declared(data, "num_variables"), _length(data, "linear")),
            _length(data, "quadratic"),
            "quadratic",
        ),
        "ising": (_length(data, "h"), _length(data, "J"), "J"),
        "knapsack": (_length(data, "values"), 0, ""),
        "portfolio": (
            max(_length(data, "expected_returns"), _length(data, "covariance")),
            0,
            "covariance",
        ),
    }.get(kind)
    if sizes is None:
        return
    variables, terms, term_field = sizes
    # Same fields as check_limits reports, whichever check fires.
    _check(variables, limits.max_variables, "variables", "num_variables")
    if kind == "portfolio":
        terms = variables * (variables - 1) // 2
    _check(terms, limits.max_edges, "quadratic terms", term_field)
    if kind == "knapsack":
        _check(_declared(data, "capacity"), limits.max_knapsack_capacity, "capacity", "capacity")
