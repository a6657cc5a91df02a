"""Lookup of problem types by their wire name (``kind``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qbridge.errors import InvalidProblemError
from qbridge.problems.base import Problem
from qbridge.problems.classification import Classification
from qbridge.problems.knapsack import Knapsack
from qbridge.problems.limits import Limits, check_payload_limits
from qbridge.problems.maxcut import MaxCut
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.qubo_problem import IsingProblem, QuboProblem
from qbridge.problems.scheduling import JobShop

PROBLEM_TYPES: dict[str, type[Problem]] = {
    cls.kind: cls
    for cls in (MaxCut, QuboProblem, IsingProblem, Knapsack, Portfolio, JobShop, Classification)
}
"""Every problem type by ``kind``."""


def problem_from_dict(kind: str, data: Mapping[str, Any], limits: Limits | None = None) -> Problem:
    """Build, validate and normalize a problem of type ``kind`` from its payload.

    Args:
        kind: Wire name of the type (a key of :data:`PROBLEM_TYPES`).
        data: The JSON-compatible payload (the ``to_dict`` form, without ``kind``).
        limits: If given, the payload's sizes are checked against them first, before
            any per-term validation (see :func:`check_payload_limits`).

    Raises:
        InvalidProblemError: Unknown ``kind`` (field ``kind``) or an invalid payload.
        ProblemTooLargeError: The payload exceeds ``limits``.
    """
    cls = PROBLEM_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidProblemError(
            f"unknown problem type {kind!r} (known: {', '.join(sorted(PROBLEM_TYPES))})",
            field="kind",
        )
    if limits is not None:
        check_payload_limits(kind, data, limits)
    return cls.from_dict(data)
